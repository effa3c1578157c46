"""A real HTTP server speaking the OpenAI chat protocol (non-streaming, with usage), standing
in for the judge model: scripted replies and scripted failures (429, 5xx, 400), and a count of
the requests it received so tests can prove the cache and the retries."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Reply = str | Callable[[dict[str, Any]], str]


class JudgeStub:
    """`reply`: the judge's text, or a function of the request body. `failures`: HTTP statuses
    answered, in order, before any reply (e.g. [429, 500])."""

    def __init__(self, reply: Reply = "My final verdict is: [[A=B]]",
                 failures: list[int] | None = None, model: str = "stub-judge"):
        self.reply = reply
        self.failures = list(failures or [])
        self.model = model
        self.bodies: list[dict[str, Any]] = []  # every request received, failures included
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with stub._lock:
                    stub.bodies.append(body)
                    status = stub.failures.pop(0) if stub.failures else 200
                    stub.statuses.append(status)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status = 404
                if status != 200:
                    self._send(status, {"error": {"message": f"scripted HTTP {status}",
                                                  "type": "stub", "code": None}},
                               {"retry-after": "0"} if status == 429 else {})
                    return
                text = stub.reply(body) if callable(stub.reply) else stub.reply
                prompt_chars = sum(len(m.get("content") or "") for m in body["messages"])
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
                    "model": body.get("model", stub.model),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt_chars // 4,
                              "completion_tokens": len(text) // 4 + 1,
                              "total_tokens": prompt_chars // 4 + len(text) // 4 + 1},
                })

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def requests(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shown_as(body: dict[str, Any], marker: str) -> str | None:
    """'A' or 'B': the position the answer containing `marker` was shown in, from a judge
    request in either layout (single answer sections or whole conversations)."""
    text = body["messages"][-1]["content"]
    for letter in "AB":
        for section in ("Answer", "Conversation with User"):
            start = text.find(f"<|The Start of Assistant {letter}'s {section}|>")
            end = text.find(f"<|The End of Assistant {letter}'s {section}|>")
            if start >= 0 and marker in text[start:end]:
                return letter
    return None
