"""A small OpenAI-compatible HTTP server for tests: scripted ``/v1/chat/completions`` replies on 127.0.0.1.

The real ``openai`` client talks to it over real sockets, so retries, timeouts, status codes and JSON parsing are
exercised exactly as against a real server. Each test queues the replies it wants, in order; when the queue is
empty the server repeats ``default`` (or answers 500 when there is none)::

    with FakeOpenAI() as server:
        server.add(error_reply(429), plan_reply(plan))
        settings = PlannerSettings(openai_base_url=server.base_url, ...)
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: an HTTP status with either a chat message's content or a raw JSON body."""

    status: int = 200
    content: str | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # wait this long before answering (a hung server: longer than the client waits)
    reject_schema: bool = False  # answer 400 when the request asks for a json_schema response format


def plan_reply(plan: dict[str, Any] | str, **kwargs: Any) -> Reply:
    """A 200 whose message content is ``plan`` (a dict is sent as JSON, a string as is)."""
    content = plan if isinstance(plan, str) else json.dumps(plan)
    return Reply(content=content, **kwargs)


def error_reply(status: int, message: str = "scripted failure", code: str | None = None, **kwargs: Any) -> Reply:
    """An error answer in OpenAI's error format."""
    body = {"error": {"message": message, "type": "scripted_error", "param": None, "code": code}}
    return Reply(status=status, body=body, **kwargs)


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeOpenAI:
    """The server; a context manager that starts it on a free port and stops it (releasing hung replies)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default: Reply | None = None
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def add(self, *replies: Reply) -> None:
        """Queue replies, answered in order."""
        with self._lock:
            self._script.extend(replies)

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests received so far."""
        with self._lock:
            return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.default or error_reply(500, "no scripted reply left")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"unparsed": raw.decode("utf-8", "replace")}
                with fake._lock:
                    fake.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}}, {})
                    return
                reply = fake._next()
                if reply.delay_seconds and fake._stopping.wait(reply.delay_seconds):
                    return  # the server is stopping: drop the hung request
                if reply.reject_schema and body.get("response_format", {}).get("type") == "json_schema":
                    message = "response_format json_schema is not supported by this server"
                    self._send(400, {"error": {"message": message, "type": "invalid_request_error"}}, {})
                    return
                payload = reply.body if reply.body is not None else _completion(body, reply.content)
                self._send(reply.status, payload, reply.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

        return Handler


def _completion(request: dict[str, Any], content: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
