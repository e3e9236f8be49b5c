"""TLS and mutual TLS from the gateway to its services, with certificates made for the test.

Certificates are made with the ``openssl`` command (the ``cryptography`` package is not among the project's
dependencies); where the command is missing, the test is skipped and says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.server import create_server as create_gateway
from gateway.settings import GatewaySettings
from services.planner.server import create_server as create_planner
from services.planner.settings import PlannerSettings
from services.renderer.server import create_server as create_renderer
from services.renderer.settings import RendererSettings
from storyboard.v1 import storyboards_pb2, storyboards_pb2_grpc


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command, which makes this test's certificates, is not installed")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign", cwd=folder)  # fmt: skip
    for name, extensions in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{name}.ext").write_text(extensions)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip
    return {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_the_gateway_reaches_its_services_over_mutual_tls(tmp_path):
    certs = _make_certs(tmp_path)
    serve_tls = {
        "serve_tls_cert": certs["server.pem"],
        "serve_tls_key": certs["server.key"],
        "serve_tls_client_ca": certs["ca.pem"],
    }
    planner, planner_port = create_planner(PlannerSettings(port=0, backend="offline", **serve_tls))
    renderer, renderer_port = create_renderer(RendererSettings(port=0, backend="sketch", **serve_tls))
    for service in (planner, renderer):
        service.start()
    try:
        # Without a client certificate the services refuse the connection; in plaintext too.
        anonymous = grpc.ssl_channel_credentials(certs["ca.pem"].read_bytes())
        for channel in (
            grpc.secure_channel(f"127.0.0.1:{planner_port}", anonymous),
            grpc.insecure_channel(f"127.0.0.1:{planner_port}"),
        ):
            with channel, pytest.raises(grpc.RpcError) as caught:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        settings = GatewaySettings(
            port=0,
            rest=False,
            planner=f"127.0.0.1:{planner_port}",
            renderers=f"127.0.0.1:{renderer_port}",
            outputs=tmp_path / "outputs",
            tls_ca=certs["ca.pem"],
            tls_cert=certs["client.pem"],
            tls_key=certs["client.key"],
        )
        gateway, port = create_gateway(settings)
        gateway.start()
        try:
            assert gateway.ready.wait(30), gateway.not_ready_reason
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                spec = storyboards_pb2.StoryboardSpec(story="A fox at dawn", num_frames=6, width=256, height=256)
                events = list(
                    storyboards_pb2_grpc.StoryboardsStub(channel).Generate(
                        storyboards_pb2.GenerateRequest(spec=spec), timeout=60
                    )
                )
            assert events[-1].HasField("completed"), events[-1]
            assert len(events[-1].completed.storyboard.frames) == 6
        finally:
            gateway.stop(0)
    finally:
        planner.stop(0)
        renderer.stop(0)


def test_tls_settings_must_come_in_pairs(tmp_path):
    certs = _make_certs(tmp_path)
    with pytest.raises(ValueError, match="go together"):
        PlannerSettings(port=0, serve_tls_cert=certs["server.pem"])
