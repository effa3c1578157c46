"""A real HTTP server speaking the OpenAI streaming chat protocol with scripted behaviour,
standing in for an external contestant that misbehaves (drops mid-stream, names itself).
The arena's own contestants are real vLLM models; this covers endpoints we do not run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubEndpoint:
    def __init__(self, text: str, drop_after: int | None = None, model: str = "stub"):
        self.text = text
        self.drop_after = drop_after
        self.model = model
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                body = json.dumps({"object": "list", "data": [{"id": stub.model, "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                stub.requests += 1
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                words = stub.text.split(" ")
                for i, word in enumerate(words):
                    if stub.drop_after is not None and i >= stub.drop_after:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the server dies mid-answer
                        return
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": stub.model,
                             "choices": [{"index": 0, "delta": {"content": word + (" " if i < len(words) - 1 else "")},
                                          "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": stub.model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
