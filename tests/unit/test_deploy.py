"""The deployment files, checked against the code they deploy, without Docker or a cluster.

- The compose files are validated against the Compose Specification schema (vendored in deploy/schemas/), each file
  alone and merged the way Compose merges them (``!reset``, replaced commands, appended lists).
- The Kubernetes manifests are rendered from their kustomizations (in Python; compared with ``kubectl kustomize``
  where one is installed) and validated with kubernetes-validate's schemas.
- Every command line in the Dockerfile, the compose files and the manifests is parsed: the module it runs must be a
  service, each flag a field of that service's Settings and its value one those Settings accept; ports, gRPC health
  service names, addresses between services, environment variables, secrets and mounted paths must agree with the
  services. A renamed flag or port breaks this test, not a deployment.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from gateway.spec import ASPECT_SIZES
from storyboard_common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_GPU = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
COMPOSE_SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"
K8S = ROOT / "deploy" / "k8s"
K8S_OVERLAYS = (K8S, K8S / "overlays" / "hpa-cpu")
REQUIREMENTS = ROOT / "deploy" / "requirements"
README = ROOT / "README.md"
K8S_README = K8S / "README.md"
# The oldest Kubernetes the manifests promise to work on (native gRPC probes are GA since 1.27) and the newest
# kubernetes-validate knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


# ---------------------------------------------------------------------------------------------------------------------
# The services, as the code defines them
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One deployable service: the name every deployment file uses for it, and what its code says."""

    name: str  # compose service, Kubernetes Deployment and Service, Dockerfile target
    module: str  # python -m MODULE
    settings_class: str  # in MODULE.settings
    gpu: bool  # runs on a CUDA image and asks for a GPU

    @functools.cached_property
    def settings(self) -> type[ServiceSettings]:
        return getattr(importlib.import_module(f"{self.module}.settings"), self.settings_class)

    @functools.cached_property
    def health_name(self) -> str:
        """The gRPC service the server registers (and reports health for)."""
        return importlib.import_module(f"{self.module}.server").SERVICE_NAME

    @property
    def env_prefix(self) -> str:
        return self.settings.model_config["env_prefix"]

    def default(self, field_name: str) -> Any:
        return self.settings.model_fields[field_name].default


SERVICES = {
    service.name: service
    for service in (
        Service("planner", "services.planner", "PlannerSettings", gpu=False),
        Service("renderer", "services.renderer", "RendererSettings", gpu=True),
        Service("validator", "services.validator", "ValidatorSettings", gpu=True),
        Service("gateway", "gateway", "GatewaySettings", gpu=False),
    )
}
BY_MODULE = {service.module: service for service in SERVICES.values()}
HEALTHCHECK_MODULE = "storyboard_common.healthcheck"

# Variables the deployment files may set that are not Storyboard settings, and why they are there.
EXTERNAL_ENV = {
    "PATH": "the image's virtual environment first",
    "PYTHONUNBUFFERED": "logs reach the container runtime at once",
    "PYTHONDONTWRITEBYTECODE": "the root filesystem is read-only in Kubernetes",
    "SSL_CERT_FILE": "the system CA bundle for the uv-managed Python",
    "HF_HUB_OFFLINE": "weights are mounted; the hub is never asked",
    "HF_HUB_DISABLE_TELEMETRY": "no calls home",
    "HF_HUB_CACHE": "hub ids resolve in the mounted models volume",
    "TRANSFORMERS_VERBOSITY": "the planner uses transformers' tokenizer only; no warning about missing torch",
}
PLANNER_KEY_ENV = importlib.import_module("services.planner.settings").API_KEY_ENV


def check_env_name(name: str, service: Service, where: str) -> None:
    """``name`` is a setting of ``service`` (``<PREFIX><FIELD>``), its OpenAI key, or a known outside variable."""
    if name.startswith("STORYBOARD_"):
        assert name.startswith(service.env_prefix), f"{where}: {name} is not a {service.name} variable"
        field_name = name[len(service.env_prefix) :].lower()
        assert field_name in service.settings.model_fields, (
            f"{where}: {name} sets no setting of {service.name} (it has {sorted(service.settings.model_fields)})"
        )
    elif name == PLANNER_KEY_ENV:
        assert service.name == "planner", f"{where}: only the planner reads {name}"
    else:
        assert name in EXTERNAL_ENV, f"{where}: unknown environment variable {name}; add it to EXTERNAL_ENV with why"


# ---------------------------------------------------------------------------------------------------------------------
# Command lines: python -m MODULE --flag value ...
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """A service's command line as a deployment file gives it."""

    where: str
    service: Service
    flags: dict[str, str | bool] = field(default_factory=dict)  # setting name -> value as written

    def value(self, name: str) -> Any:
        """The flag's value, or the setting's default when the command leaves it out."""
        assert name in self.service.settings.model_fields, f"{self.where}: {self.service.name} has no setting {name}"
        return self.flags.get(name, self.service.default(name))

    def port(self, name: str = "port") -> int:
        return int(self.value(name))


def parse_invocation(argv: list[str], where: str) -> Invocation:
    """``argv`` must run a service module; every flag must be one of its settings."""
    argv = [str(arg) for arg in argv]
    assert argv[:2] == ["python", "-m"] and len(argv) >= 3, f"{where}: expected `python -m MODULE ...`, got {argv}"
    assert argv[2] in BY_MODULE, f"{where}: {argv[2]} is not a service module (known: {sorted(BY_MODULE)})"
    invocation = Invocation(where, BY_MODULE[argv[2]])
    fields = invocation.service.settings.model_fields
    args = iter(argv[3:])
    for arg in args:
        assert arg.startswith("--"), f"{where}: {arg!r} is not a flag"
        name, has_value, value = arg[2:].partition("=")
        field_name = name.replace("-", "_")
        if field_name.startswith("no_") and fields.get(field_name[3:]) and fields[field_name[3:]].annotation is bool:
            invocation.flags[field_name[3:]] = False
            continue
        assert field_name in fields, (
            f"{where}: --{name} is not a flag of {invocation.service.module} "
            f"(flags: {', '.join('--' + f.replace('_', '-') for f in sorted(fields))})"
        )
        if fields[field_name].annotation is bool and not has_value:
            invocation.flags[field_name] = True
            continue
        if not has_value:
            value = next(args, None)
            assert value is not None, f"{where}: --{name} has no value"
        invocation.flags[field_name] = value
    return invocation


# Files the deployments mount, made real for the settings' checks (which look at the filesystem).
STAND_IN_CONTENT = {"api_keys_file": "example:" + "0" * 64 + "\n"}
# Settings that name a folder without ending in _dir (the renderer's compile cache arrives with issue 27).
FOLDER_SETTINGS = {"outputs", "compile_cache"}


def check_values(invocation: Invocation, stand_ins: Path) -> None:
    """The service's Settings accept the command line; mounted paths are replaced by stand-ins that exist."""
    values: dict[str, Any] = {}
    for name, value in invocation.flags.items():
        if isinstance(value, str) and value.startswith("/"):
            stand_in = stand_ins / invocation.service.name / value.lstrip("/")
            if name.endswith("_dir") or name in FOLDER_SETTINGS:
                stand_in.mkdir(parents=True, exist_ok=True)
            elif not stand_in.exists():
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.write_text(STAND_IN_CONTENT.get(name, ""))
            value = str(stand_in)
        values[name] = value
    try:
        invocation.service.settings.model_validate(values)
    except ValidationError as error:
        pytest.fail(f"{invocation.where}: {invocation.service.module} would refuse these settings:\n{error}")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: keep this machine's STORYBOARD_* and OpenAI variables out of the checks."""
    for name in list(os.environ):
        if name.startswith("STORYBOARD_") or name.startswith("OPENAI_"):
            monkeypatch.delenv(name)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def check_gateway_addresses(
    gateway: Invocation, listeners: dict[str, tuple[Service, int]], headless: set[str], where: str
) -> None:
    """The gateway's --planner, --renderers and --validator name the right service on the port it listens on.

    ``listeners`` maps a host name (compose service or Kubernetes Service) to the service behind it and its port.
    """
    for setting, target in (("planner", "planner"), ("renderers", "renderer"), ("validator", "validator")):
        address = str(gateway.value(setting))
        if setting == "renderers":
            assert address.startswith("dns:///"), f"{where}: --renderers should be dns:///NAME:PORT, got {address}"
            address = address.removeprefix("dns:///")
        host, port = split_address(address)
        assert host in listeners, f"{where}: --{setting} {address}: no service named {host}"
        service, listen_port = listeners[host]
        assert service.name == target, f"{where}: --{setting} points at {service.name}, not the {target}"
        assert port == listen_port, f"{where}: --{setting} uses port {port}, the {target} listens on {listen_port}"
        if setting == "renderers":
            assert host in headless, f"{where}: {host} must resolve to every replica (a headless Service / compose DNS)"


# ---------------------------------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str  # an image or an earlier stage's name
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, rest of the line)


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        stages = [self.stages[name]]
        while stages[-1].base in self.stages:
            stages.append(self.stages[stages[-1].base])
        return stages

    def base_image(self, name: str) -> str:
        image = self.chain(name)[-1].base
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args[m.group(1)], image)

    def effective(self, name: str, keyword: str) -> list[str]:
        """Every ``keyword`` instruction that applies to the stage, inherited ones first."""
        return [rest for stage in reversed(self.chain(name)) for kw, rest in stage.instructions if kw == keyword]

    def env(self, name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for rest in self.effective(name, "ENV"):
            env.update(parse_env_instruction(rest))
        return env


def parse_env_instruction(rest: str) -> dict[str, str]:
    pairs = re.findall(r'(\w+)=("[^"]*"|\S+)', rest)
    assert pairs, f"ENV {rest!r}: use the KEY=value form"
    return {key: value.strip('"') for key, value in pairs}


@functools.cache
def dockerfile() -> Dockerfile:
    text = DOCKERFILE.read_text()
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match and match.group(2), f"Dockerfile: name every stage (FROM image AS name): {line}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", f"Dockerfile: only ARG may come before the first FROM: {line}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            current.instructions.append((keyword, rest))
    return Dockerfile(args, stages)


def ignore_patterns() -> list[tuple[re.Pattern[str], bool]]:
    """.dockerignore as (regex, is_exception) pairs, in order."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in ("**", "**/"):
                regex += "(?:.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((re.compile(regex + "$"), exception))
    return patterns


def in_build_context(path: str) -> bool:
    """Whether ``path`` (relative to the repository) is sent to the builder, as Docker reads .dockerignore:
    the last pattern that matches the path or one of its parent folders decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for regex, exception in ignore_patterns():
        if any(regex.match(candidate) for candidate in candidates):
            included = exception
    return included


def copy_sources(stage: Stage) -> Iterator[str]:
    """Files a stage takes from the build context: COPY/ADD sources and RUN --mount=type=bind sources."""
    for keyword, rest in stage.instructions:
        if keyword in ("COPY", "ADD"):
            words = json.loads(rest) if rest.startswith("[") else rest.split()
            if any(word.startswith("--from=") for word in words):
                continue
            paths = [word for word in words if not word.startswith("--")]
            yield from paths[:-1]
        elif keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                options = dict(option.partition("=")[::2] for option in mount.split(","))
                if options.get("type") == "bind" and "from" not in options:
                    yield options["source"]


def service_targets() -> dict[str, Stage]:
    stages = dockerfile().stages
    missing = sorted(set(SERVICES) - set(stages))
    assert not missing, f"Dockerfile: no target for {missing}"
    return {name: stages[name] for name in SERVICES}


def test_dockerfile_runs_each_service_as_its_target(clean_env: None, tmp_path: Path) -> None:
    docker = dockerfile()
    for name, stage in service_targets().items():
        service = SERVICES[name]
        commands = [rest for kw, rest in stage.instructions if kw == "CMD"]
        assert len(commands) == 1 and commands[0].startswith("["), f"Dockerfile {name}: one exec-form CMD"
        invocation = parse_invocation(json.loads(commands[0]), f"Dockerfile target {name} CMD")
        assert invocation.service is service, f"Dockerfile target {name} runs {invocation.service.module}"
        if name != "gateway":  # the gateway has required flags only a deployment can give (where the services are)
            check_values(invocation, tmp_path)
        exposed = {int(port) for rest in docker.effective(name, "EXPOSE") for port in rest.split()}
        listens = {invocation.port()} | ({invocation.port("http_port")} if name == "gateway" else set())
        assert listens <= exposed, f"Dockerfile {name}: EXPOSE {sorted(exposed)}, listens on {sorted(listens)}"
        for variable in docker.env(name):
            check_env_name(variable, service, f"Dockerfile target {name} ENV")


def test_dockerfile_images_are_non_root_offline_and_on_the_right_base() -> None:
    docker = dockerfile()
    for name in service_targets():
        users = docker.effective(name, "USER")
        assert users, f"Dockerfile {name}: no USER, so it would run as root"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"Dockerfile {name}: runs as {user}"
        assert docker.env(name).get("HF_HUB_OFFLINE") == "1", f"Dockerfile {name}: HF_HUB_OFFLINE=1 is not set"
        base = docker.base_image(name)
        assert base.startswith("nvidia/cuda:") == SERVICES[name].gpu, f"Dockerfile {name}: base image {base}"
        assert ":" in base and not base.endswith(":latest"), f"Dockerfile {name}: pin the base image tag ({base})"
    make_uv = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert make_uv and docker.args["UV_VERSION"] == make_uv.group(1), "the Dockerfile and the Makefile pin different uv"


def test_dockerfile_copies_only_what_the_context_holds_and_generates_the_stubs() -> None:
    docker = dockerfile()
    for stage in docker.stages.values():
        for source in copy_sources(stage):
            path = ROOT / source
            assert path.exists(), f"Dockerfile stage {stage.name}: {source} does not exist"
            files = (
                [p.relative_to(ROOT).as_posix() for p in path.rglob("*") if p.is_file()] if path.is_dir() else [source]
            )
            assert any(map(in_build_context, files)), (
                f"Dockerfile stage {stage.name}: .dockerignore leaves {source} out"
            )
    for secret_path in ("secrets/openai_api_key", "models/sdxl", "adapters/x", "outputs/x", ".venv/bin/python"):
        assert not in_build_context(secret_path), f".dockerignore lets {secret_path} into the build context"
    assert not in_build_context("sdk/src/storyboard/v1/planner_pb2.py"), "the committed stubs must stay out"
    runs = " ".join(rest for stage in docker.stages.values() for kw, rest in stage.instructions if kw == "RUN")
    assert "tools/gen_protos.py" in runs, "the image must generate its gRPC stubs from protos/"
    for name in SERVICES:
        assert f"deploy/requirements/{name}.txt" in runs, f"Dockerfile: the {name} image does not use its pinned set"


# ---------------------------------------------------------------------------------------------------------------------
# The per-image dependency sets
# ---------------------------------------------------------------------------------------------------------------------


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
        if match:
            found[normalized(match.group(1))] = match.group(2)
    return found


def requirement_names(requirements: list[str]) -> set[str]:
    """Package names of PEP 508 requirement strings (comments and blank lines skipped)."""
    lines = [line.split("#", 1)[0].strip() for line in requirements]
    return {normalized(re.match(r"[A-Za-z0-9_.\-]+", line).group(0)) for line in lines if line}


def direct_dependencies(service: str) -> set[str]:
    """What the service's code asks for: the server's and the SDK's dependencies, its extra, and its .in file."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sdk = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    names = requirement_names(project["dependencies"]) - {"storyboard-sdk"}
    names |= requirement_names(sdk["dependencies"])
    names |= requirement_names(project["optional-dependencies"].get(service, []))
    extra = REQUIREMENTS / f"{service}.in"
    return names | (requirement_names(extra.read_text().splitlines()) if extra.is_file() else set())


def test_image_dependency_sets_are_the_lock_pins_and_keep_torch_out_of_cpu_images() -> None:
    lock = pins(ROOT / "requirements.lock")
    for name in (*SERVICES, "build"):
        path = REQUIREMENTS / f"{name}.txt"
        assert path.is_file(), f"{path} is missing: run deploy/requirements/compile.sh"
        image_pins = pins(path)
        for package, version in image_pins.items():
            assert lock.get(package) == version, (
                f"{path.name}: {package}=={version}, requirements.lock has {lock.get(package)}; "
                "run deploy/requirements/compile.sh"
            )
        needed = direct_dependencies(name) if name in SERVICES else {"grpcio-tools", "setuptools"}
        missing = sorted(needed - set(image_pins))
        assert not missing, f"{path.name} lacks {missing}: run deploy/requirements/compile.sh"
        has_torch = "torch" in image_pins
        assert has_torch == (name in SERVICES and SERVICES[name].gpu), f"{path.name}: torch present: {has_torch}"


# ---------------------------------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reset:
    """``!reset``: drop what earlier files set."""

    value: Any


@dataclass(frozen=True)
class Override:
    """``!override``: replace what earlier files set instead of merging."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: merge keys (from SafeLoader) and the ``!reset`` / ``!override`` tags."""


def _tagged(kind: type) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return kind(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return kind(loader.construct_sequence(node, deep=True))
        return kind(loader.construct_scalar(node))

    return construct


ComposeLoader.add_constructor("!reset", _tagged(Reset))
ComposeLoader.add_constructor("!override", _tagged(Override))

INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^{}]*))?\}|(?P<named>[A-Za-z_]\w*))"
)


def interpolate(value: Any, used: set[str]) -> Any:
    """Compose's ``${VAR:-default}`` interpolation with every variable unset, so defaults are what gets checked."""
    if isinstance(value, (Reset, Override)):
        return type(value)(interpolate(value.value, used))
    if isinstance(value, dict):
        return {key: interpolate(item, used) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, used) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        used.add(match.group("braced") or match.group("named"))
        op = match.group("op") or ""
        assert "?" not in op, f"${{{match.group('braced')}{op}...}} makes a variable required; give a default"
        return match.group("arg") or "" if op in (":-", "-") else ""

    return INTERPOLATION.sub(replace, value)


def without_tags(value: Any) -> Any:
    if isinstance(value, (Reset, Override)):
        return without_tags(value.value)
    if isinstance(value, dict):
        return {key: without_tags(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_tags(item) for item in value]
    return value


REPLACED_LISTS = {("command",), ("entrypoint",), ("healthcheck", "test")}


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """Compose's merge of a later file into an earlier one (https://docs.docker.com/reference/compose-file/merge/)."""
    if isinstance(override, Override):
        return without_tags(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, (*path, key))
            else:
                merged[key] = without_tags(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and not any(path[-len(r) :] == r for r in REPLACED_LISTS):
        return base + [item for item in without_tags(override) if item not in base]
    return without_tags(override)


def cast_types(config: dict[str, Any]) -> dict[str, Any]:
    """Compose turns interpolated numbers back into numbers where the schema wants them."""
    for service in config.get("services", {}).values():
        deploy = service.get("deploy") or {}
        if isinstance(deploy.get("replicas"), str):
            deploy["replicas"] = int(deploy["replicas"])
    return config


@functools.cache
def compose_files() -> dict[str, tuple[dict[str, Any], frozenset[str]]]:
    """Each compose file, interpolated (still tagged), with the variables it uses."""
    loaded = {}
    for path in (COMPOSE_GPU, COMPOSE_CPU):
        used: set[str] = set()
        loaded[path.name] = (interpolate(yaml.load(path.read_text(), Loader=ComposeLoader), used), frozenset(used))
    return loaded


def compose_config(*names: str) -> dict[str, Any]:
    config: Any = {}
    for name in names:
        config = merge(config, compose_files()[name][0])
    return cast_types(copy.deepcopy(config))


GPU_STACK = ("docker-compose.yml",)
CPU_STACK = ("docker-compose.yml", "docker-compose.cpu.yml")


def test_vendored_compose_schema_is_the_published_one() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == COMPOSE_SCHEMA_SHA256, "deploy/schemas/compose-spec.json differs from the published schema"


@pytest.mark.parametrize("config_name", ["docker-compose.yml", "docker-compose.cpu.yml", "gpu stack", "cpu stack"])
def test_compose_files_follow_the_compose_specification(config_name: str) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    if config_name.endswith("stack"):
        config = compose_config(*(GPU_STACK if config_name == "gpu stack" else CPU_STACK))
    else:
        config = cast_types(without_tags(copy.deepcopy(compose_files()[config_name][0])))
    validator = jsonschema.Draft7Validator(schema)  # what compose-go validates with
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(f"{config_name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def compose_invocations(config: dict[str, Any], label: str) -> dict[str, Invocation]:
    invocations = {}
    for name, spec in config["services"].items():
        assert name in SERVICES, f"{label}: unknown service {name}"
        invocation = parse_invocation(spec["command"], f"{label} services.{name}.command")
        assert invocation.service.name == name, f"{label}: service {name} runs {invocation.service.module}"
        invocations[name] = invocation
    assert set(invocations) == set(SERVICES), f"{label}: services {sorted(invocations)}"
    return invocations


@pytest.mark.parametrize("stack", [GPU_STACK, CPU_STACK], ids=["gpu", "cpu"])
def test_compose_commands_flags_ports_and_health_match_the_services(
    stack: tuple[str, ...], clean_env: None, tmp_path: Path
) -> None:
    config = compose_config(*stack)
    label = " + ".join(stack)
    invocations = compose_invocations(config, label)
    targets = service_targets()
    for name, invocation in invocations.items():
        spec, service = config["services"][name], SERVICES[name]
        where = f"{label} services.{name}"
        check_values(invocation, tmp_path)
        assert spec["build"]["target"] in targets, (
            f"{where}: build target {spec['build']['target']} is not in Dockerfile"
        )
        assert spec["build"]["target"] == name, f"{where}: builds the {spec['build']['target']} image"
        test = spec["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", HEALTHCHECK_MODULE], f"{where}: healthcheck must use grpc.health.v1"
        assert importlib.util.find_spec(HEALTHCHECK_MODULE), f"{HEALTHCHECK_MODULE} is gone"
        host, port = split_address(test[4])
        assert host == "127.0.0.1" and port == invocation.port(), f"{where}: healthcheck asks {test[4]}"
        assert test[5] == service.health_name, f"{where}: healthcheck asks for {test[5]}, not {service.health_name}"
        for variable in spec.get("environment", {}):
            check_env_name(variable, service, f"{where}.environment")
    listeners = {name: (SERVICES[name], invocation.port()) for name, invocation in invocations.items()}
    check_gateway_addresses(invocations["gateway"], listeners, {"renderer"}, label)


@pytest.mark.parametrize("stack", [GPU_STACK, CPU_STACK], ids=["gpu", "cpu"])
def test_compose_publishes_only_the_gateway_and_keeps_the_rest_internal(stack: tuple[str, ...]) -> None:
    config = compose_config(*stack)
    gateway = compose_invocations(config, "compose")["gateway"]
    networks = config["networks"]
    assert networks["internal"].get("internal") is True, "the services' network must be internal"
    for name, spec in config["services"].items():
        assert "internal" in spec["networks"], f"services.{name} is not on the internal network"
        if name != "gateway":
            assert not spec.get("ports"), f"services.{name} publishes ports; only the gateway may"
    published = {int(str(port).rsplit(":", 1)[1]) for port in config["services"]["gateway"]["ports"]}
    assert published == {gateway.port(), gateway.port("http_port")}, f"the gateway publishes {sorted(published)}"


def mounted(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a compose service's volumes."""
    found = []
    for volume in spec.get("volumes", []):
        if isinstance(volume, dict):
            found.append((volume.get("source", ""), volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            found.append((source, target))
    return found


@pytest.mark.parametrize("stack", [GPU_STACK, CPU_STACK], ids=["gpu", "cpu"])
def test_compose_paths_given_to_the_services_are_mounted(stack: tuple[str, ...]) -> None:
    config = compose_config(*stack)
    for name, invocation in compose_invocations(config, "compose").items():
        spec = config["services"][name]
        secrets = {secret if isinstance(secret, str) else secret["source"] for secret in spec.get("secrets", [])}
        for secret in secrets:
            assert secret in config.get("secrets", {}), f"services.{name} uses undefined secret {secret}"
        for setting, value in invocation.flags.items():
            if not (isinstance(value, str) and value.startswith("/")):
                continue
            if value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in secrets, f"services.{name} --{setting}: no such secret"
                continue
            mounts = [
                (source, target) for source, target in mounted(spec) if PurePosixPath(value).is_relative_to(target)
            ]
            assert mounts, f"services.{name} --{setting} {value} is not on a mounted volume"
            source, target = mounts[-1]
            if (
                source.startswith(".") and (ROOT / source).is_dir()
            ):  # a folder of this repository: the file must be there
                inside = PurePosixPath(value).relative_to(target)
                assert (ROOT / source / inside).exists(), f"services.{name} --{setting}: {source}/{inside} is missing"


def test_compose_gpu_stack_reserves_gpus_replicates_renderers_and_waits_for_health() -> None:
    config = compose_config(*GPU_STACK)
    services = config["services"]
    for name, service in SERVICES.items():
        devices = services[name].get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert any("gpu" in device.get("capabilities", []) for device in devices) == service.gpu, (
            f"services.{name}: GPU reservation should be {service.gpu}"
        )
    assert services["renderer"]["deploy"]["replicas"] >= 2, "run several renderer replicas behind one DNS name"
    for name, condition in services["gateway"]["depends_on"].items():
        assert condition == {"condition": "service_healthy"}, f"gateway waits for {name} to be {condition}"
    assert set(services["gateway"]["depends_on"]) == set(SERVICES) - {"gateway"}
    key_file = compose_invocations(config, "compose")["planner"].flags.get("openai_api_key_file")
    assert key_file == "/run/secrets/openai_api_key", "the planner reads the OpenAI key from its compose secret"
    volumes = {target for spec in services.values() for _, target in mounted(spec)}
    assert {"/models", "/adapters", "/data/outputs", "/data/jobs"} <= volumes, f"mounted: {sorted(volumes)}"


# ---------------------------------------------------------------------------------------------------------------------
# The GPU renderers' defaults: fast and safe (issue 27)
# ---------------------------------------------------------------------------------------------------------------------

FP16_FIX_VAE = "madebyollin/sdxl-vae-fp16-fix"
COMPILE_CACHE = "/data/compile-cache"


def gpu_renderer_deployments() -> dict[str, tuple[Invocation, set[str]]]:
    """The GPU renderer's command line and its writable mount points, in the compose GPU stack and in Kubernetes."""
    config = compose_config(*GPU_STACK)
    compose = compose_invocations(config, "compose gpu stack")["renderer"]
    volumes = [volume.split(":") for volume in config["services"]["renderer"]["volumes"]]  # SOURCE:TARGET[:MODE]
    writable = {parts[1] for parts in volumes if "ro" not in parts[2:]}
    _, container = containers_by_service(manifests())["renderer"]
    k8s_mounts = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    return {"compose": (compose, writable), "k8s": (k8s_invocation("renderer", container), k8s_mounts)}


def test_gpu_renderers_decode_safely_in_half_precision_with_channels_last_and_the_default_scheduler() -> None:
    for where, (invocation, writable) in gpu_renderer_deployments().items():
        dtype, vae = invocation.value("dtype"), invocation.value("vae")
        assert dtype in ("float16", "bfloat16"), f"{where}: the renderer computes in {dtype}"
        if dtype == "float16":  # SDXL's own VAE overflows in float16: the fp16-fix one, or bfloat16
            assert vae == FP16_FIX_VAE, f"{where}: float16 needs --vae {FP16_FIX_VAE}, got {vae!r}"
            assert invocation.value("vae_upcast") == "auto", f"{where}: --vae-upcast would undo the fp16-fix VAE"
        assert invocation.value("channels_last") is True, f"{where}: --channels-last is off"
        assert "scheduler" not in invocation.flags, f"{where}: --scheduler is left at its default"
        assert COMPILE_CACHE in writable, f"{where}: no writable volume at {COMPILE_CACHE} for the compile cache"
    assert FP16_FIX_VAE in README.read_text(), "README's deployment section must say how to download the VAE"


def test_gpu_renderers_compile_regionally_into_the_shared_cache() -> None:
    fields = SERVICES["renderer"].settings.model_fields
    if "compile" not in fields or "compile_cache" not in fields:
        pytest.skip(
            "this renderer has no --compile / --compile-cache yet; once it has, add `--compile regional "
            f"--compile-cache {COMPILE_CACHE}` to docker-compose.yml and deploy/k8s/base/renderer.yaml"
        )
    for where, (invocation, _) in gpu_renderer_deployments().items():
        assert invocation.value("compile") == "regional", f"{where}: --compile {invocation.value('compile')}"
        assert invocation.value("compile_cache") == COMPILE_CACHE, f"{where}: --compile-cache is not {COMPILE_CACHE}"
        warmed = set(str(invocation.value("warm_up_sizes")).split(","))
        asked = {f"{width}x{height}" for width, height in ASPECT_SIZES.values()}
        assert asked <= warmed, f"{where}: --warm-up-sizes misses {sorted(asked - warmed)}, which requests ask for"


def test_compose_cpu_stack_needs_no_gpu_and_no_openai_key() -> None:
    config = compose_config(*CPU_STACK)
    invocations = compose_invocations(config, "cpu stack")
    for name, spec in config["services"].items():
        devices = spec.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert not devices, f"cpu stack: services.{name} still reserves a device"
        if "device" in invocations[name].service.settings.model_fields:
            assert invocations[name].value("device") == "cpu", f"cpu stack: services.{name} is not told --device cpu"
    assert invocations["renderer"].value("backend") == "sketch"
    assert invocations["planner"].value("backend") == "offline"
    assert not config["services"]["planner"].get("secrets"), "cpu stack: the planner still needs the OpenAI key"
    assert "openai_api_key_file" not in invocations["planner"].flags


def test_compose_variables_are_documented_in_the_readme() -> None:
    section = deployment_section()
    for name, (_, used) in compose_files().items():
        for variable in sorted(used):
            assert f"`{variable}`" in section, f"{name} uses ${variable}; README.md's Deployment section must list it"


def deployment_section() -> str:
    text = README.read_text()
    match = re.search(r"^## Deployment\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Deployment' section"
    return match.group(1)


# ---------------------------------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------------------------------

KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def json_pointer(document: Any, pointer: str) -> tuple[Any, str | int]:
    parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("/").split("/")]
    for part in parts[:-1]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    last: str | int = parts[-1]
    if isinstance(document, list):
        last = len(document) if last == "-" else int(last)
    return document, last


def apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    for operation in operations:
        parent, key = json_pointer(document, operation["path"])
        op = operation["op"]
        assert op in ("add", "replace", "remove"), f"JSON patch op {op} is not supported by this test's renderer"
        if op == "remove":
            del parent[key]
        elif op == "add" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(operation["value"]))
        else:
            assert op == "add" or (key in parent if isinstance(parent, dict) else key < len(parent)), operation
            parent[key] = copy.deepcopy(operation["value"])


def matches_target(document: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = document["apiVersion"].rpartition("/")
    return (
        target.get("kind", document["kind"]) == document["kind"]
        and target.get("name", document["metadata"]["name"]) == document["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    template = document.get("spec", {}).get("template")
    return template["spec"] if template else None


def render_kustomization(folder: Path) -> list[dict[str, Any]]:
    """What ``kustomize build folder`` gives for the features these kustomizations use (others fail the test)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_KEYS
    assert not unknown, f"{folder}/kustomization.yaml uses {unknown}: teach render_kustomization in this test"
    documents: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():
            documents += render_kustomization(path)
        else:
            documents += [document for document in yaml.safe_load_all(path.read_text()) if document]
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load(patch["patch"] if "patch" in patch else (folder / patch["path"]).read_text())
        targets = [document for document in documents if matches_target(document, patch["target"])]
        assert targets, f"{folder}: a patch matches nothing: {patch['target']}"
        for document in targets:
            apply_json_patch(document, operations)
    for entry in kustomization.get("labels", []):
        assert not entry.get("includeSelectors") and not entry.get("includeTemplates"), "only metadata labels"
        for document in documents:
            document["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for image in kustomization.get("images", []):
        for document in documents:
            spec = pod_spec(document)
            for container in (spec or {}).get("containers", []):
                name = container["image"].split("@")[0].rsplit(":", 1)[0] if ":" in container["image"] else None
                name = name or container["image"]
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if "namespace" in kustomization:
        for document in documents:
            if document["kind"] not in CLUSTER_SCOPED:
                document["metadata"]["namespace"] = kustomization["namespace"]
    return documents


@functools.cache
def rendered(folder: Path) -> tuple[dict[str, Any], ...]:
    return tuple(render_kustomization(folder))


def manifests(folder: Path = K8S) -> list[dict[str, Any]]:
    return copy.deepcopy(list(rendered(folder)))


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def keyed(documents: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in documents}


@pytest.mark.parametrize("folder", K8S_OVERLAYS, ids=lambda folder: str(folder.relative_to(ROOT)))
def test_kustomize_renders_the_same_as_kubectl(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the Python rendering is validated on its own")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = keyed([document for document in yaml.safe_load_all(result.stdout) if document])
    assert keyed(manifests(folder)) == expected


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("folder", K8S_OVERLAYS, ids=lambda folder: str(folder.relative_to(ROOT)))
def test_manifests_follow_the_kubernetes_schemas(folder: Path, version: str) -> None:
    problems = []
    for document in manifests(folder):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{document['kind']}/{document['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(error.message)
    assert not problems, "\n".join(problems)


def containers_by_service(documents: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Service name -> (its Deployment, its one container)."""
    found = {}
    for document in documents:
        if document["kind"] == "Deployment":
            name = document["metadata"]["name"]
            assert name in SERVICES, f"Deployment {name} is not a Storyboard service"
            containers = pod_spec(document)["containers"]
            assert len(containers) == 1, f"Deployment {name}: one container"
            found[name] = (document, containers[0])
    assert set(found) == set(SERVICES), f"Deployments: {sorted(found)}"
    return found


def k8s_invocation(name: str, container: dict[str, Any]) -> Invocation:
    invocation = parse_invocation(
        [*container.get("command", []), *container.get("args", [])], f"deploy/k8s Deployment {name}"
    )
    assert invocation.service.name == name, f"Deployment {name} runs {invocation.service.module}"
    return invocation


# Container port names and the setting that opens each listener.
PORT_SETTINGS = {"grpc": "port", "http": "http_port", "metrics": "metrics_port"}


def test_manifests_commands_flags_ports_probes_and_env_match_the_services(clean_env: None, tmp_path: Path) -> None:
    documents = manifests()
    listeners: dict[str, tuple[Service, int]] = {}
    headless = set()
    invocations = {}
    for name, (deployment, container) in containers_by_service(documents).items():
        service, where = SERVICES[name], f"deploy/k8s Deployment {name}"
        invocation = invocations[name] = k8s_invocation(name, container)
        check_values(invocation, tmp_path)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert "grpc" in ports, f"{where}: no containerPort named grpc"
        for port_name, number in ports.items():
            assert port_name in PORT_SETTINGS, f"{where}: containerPort {port_name} is no listener the service has"
            listens = invocation.port(PORT_SETTINGS[port_name])
            assert number == listens, f"{where}: containerPort {port_name} {number}, the service listens on {listens}"
        if name == "gateway":
            assert "http" in ports, f"{where}: no containerPort named http"
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in annotations:
            scraped = int(annotations["prometheus.io/port"])
            assert scraped in ports.values(), f"{where}: Prometheus would scrape port {scraped}, which nothing serves"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe == "startupProbe" and probe not in container:
                continue
            grpc_probe = container.get(probe, {}).get("grpc")
            assert grpc_probe, f"{where}: {probe} must be a native gRPC probe"
            assert grpc_probe["port"] == invocation.port(), f"{where}: {probe} port {grpc_probe['port']}"
            assert grpc_probe.get("service") == service.health_name, (
                f"{where}: {probe} asks {grpc_probe.get('service')}"
            )
        for variable in container.get("env", []):
            check_env_name(variable["name"], service, f"{where} env")
        assert container["image"].split(":")[0] == f"storyboard-{name}", f"{where}: image {container['image']}"
    deployments = containers_by_service(documents)
    for document in documents:
        if document["kind"] != "Service":
            continue
        name = document["metadata"]["name"]
        selector = document["spec"]["selector"].items()
        backing = [
            n for n, (d, _) in deployments.items() if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(backing) == 1, f"Service {name} selects {backing}"
        container = deployments[backing[0]][1]
        container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for port in document["spec"]["ports"]:
            target = port["targetPort"]
            target_port = container_ports.get(target) if isinstance(target, str) else target
            assert target_port in container_ports.values(), (
                f"Service {name}: targetPort {target} is not a container port"
            )
            assert port["port"] == target_port, f"Service {name}: port {port['port']} differs from {target_port}"
            if port["name"] == "grpc":
                listeners[name] = (SERVICES[backing[0]], port["port"])
        if document["spec"].get("clusterIP") == "None":
            headless.add(name)
    assert "renderer" in headless, "the renderers need a headless Service (client-side load balancing)"
    check_gateway_addresses(invocations["gateway"], listeners, headless, "deploy/k8s gateway")


def test_manifests_mount_what_the_services_are_given_and_reference_what_exists() -> None:
    documents = manifests()
    names = {(d["kind"], d["metadata"]["name"]) for d in documents}
    user_secrets = set(re.findall(r"`(storyboard-[a-z-]+)`", K8S_README.read_text()))
    for name, (deployment, container) in containers_by_service(documents).items():
        where = f"deploy/k8s Deployment {name}"
        volumes = {volume["name"]: volume for volume in pod_spec(deployment).get("volumes", [])}
        mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
        for mount_name in mounts.values():
            assert mount_name in volumes, f"{where}: volumeMount {mount_name} has no volume"
        for setting, value in k8s_invocation(name, container).flags.items():
            if isinstance(value, str) and value.startswith("/"):
                assert any(PurePosixPath(value).is_relative_to(path) for path in mounts), (
                    f"{where}: --{setting} {value} is not on a mounted volume"
                )
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, f"{where}: no PersistentVolumeClaim {claim}"
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, f"{where}: no ConfigMap"
            if "secret" in volume:
                secret = volume["secret"]["secretName"]
                assert secret in user_secrets, f"{where}: Secret {secret} is not explained in deploy/k8s/README.md"
        for variable in container.get("env", []):
            secret_ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if secret_ref:
                assert secret_ref["name"] in user_secrets, f"{where}: Secret {secret_ref['name']} is not explained"


def test_manifests_run_non_root_with_resources_and_gpus_for_the_gpu_services() -> None:
    for name, (deployment, container) in containers_by_service(manifests()).items():
        where = f"deploy/k8s Deployment {name}"
        pod_security = pod_spec(deployment)["securityContext"]
        assert pod_security.get("runAsNonRoot") is True and pod_security.get("runAsUser", 0) != 0, where
        security = container["securityContext"]
        assert security.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        assert security.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
        assert security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL capabilities"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), f"{where}: cpu and memory requests"
        assert "memory" in resources["limits"], f"{where}: a memory limit"
        gpus = resources["requests"].get("nvidia.com/gpu"), resources["limits"].get("nvidia.com/gpu")
        assert (gpus == ("1", "1")) == SERVICES[name].gpu, f"{where}: nvidia.com/gpu requests/limits {gpus}"


def renderer_metric_names() -> set[str]:
    """The Prometheus series the renderer exports, read from its metrics registry."""
    metrics = importlib.import_module("services.renderer.metrics").RendererMetrics()
    return {sample.name for family in metrics.registry.collect() for sample in family.samples} | {
        family.name for family in metrics.registry.collect()
    }


def test_renderers_autoscale_on_their_queue_and_keep_a_disruption_budget() -> None:
    documents = manifests()
    deployment = find(documents, "Deployment", "renderer")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = find(documents, "HorizontalPodAutoscaler", "renderer")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "renderer"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pods_metrics = [metric["pods"]["metric"]["name"] for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    assert pods_metrics, "the renderer HPA must scale on the renderers' own in-flight/queue metric"
    pdb = find(documents, "PodDisruptionBudget", "renderer")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "the PDB must select the renderers"
    fallback = find(manifests(K8S / "overlays" / "hpa-cpu"), "HorizontalPodAutoscaler", "renderer")
    assert [metric["type"] for metric in fallback["spec"]["metrics"]] == ["Resource"], "the fallback scales on CPU"
    defined = renderer_metric_names()
    for metric in pods_metrics:
        assert metric in defined, f"the HPA scales on {metric}, the renderer exports {sorted(defined)}"


def test_characters_config_map_is_a_valid_registry(tmp_path: Path) -> None:
    from services.planner.characters import CharacterRegistry

    config_map = find(manifests(), "ConfigMap", "storyboard-characters")
    path = tmp_path / "characters.toml"
    path.write_text(config_map["data"]["characters.toml"])
    assert len(CharacterRegistry.load(path)) >= 1
