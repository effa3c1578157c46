"""A real HTTP server speaking the OpenAI streaming chat protocol with scripted behaviour,
standing in for an external contestant that misbehaves (drops mid-stream, names itself, streams
without end or too slowly, answers with something that is not a chat stream).
The arena's own contestants are real vLLM models; this covers endpoints we do not run."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubEndpoint:
    """`text` streamed word by word, `delay_s` apart. `endless`: the words repeat for ever (until
    the client hangs up). `silent`: headers, then nothing until the client hangs up. `raw`: this
    body (with `status` and `content_type`) instead of a stream."""

    def __init__(self, text: str, drop_after: int | None = None, model: str = "stub", delay_s: float = 0.0,
                 endless: bool = False, silent: bool = False, raw: bytes | None = None, status: int = 200,
                 content_type: str = "text/event-stream"):
        self.text = text
        self.drop_after = drop_after
        self.model = model
        self.delay_s = delay_s
        self.endless = endless
        self.silent = silent
        self.raw = raw
        self.status = status
        self.content_type = content_type
        self.requests = 0
        self.hung_up = threading.Event()  # the client closed an endless or silent stream
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
                if stub.raw is not None:
                    self.send_response(stub.status)
                    self.send_header("content-type", stub.content_type)
                    self.send_header("content-length", str(len(stub.raw)))
                    self.end_headers()
                    self.wfile.write(stub.raw)
                    return
                self.send_response(stub.status)
                self.send_header("content-type", stub.content_type)
                self.end_headers()
                try:
                    if stub.silent:
                        self.wfile.flush()
                        while self.rfile.read(1):  # until the client hangs up
                            pass
                        stub.hung_up.set()
                        return
                    self._stream()
                except (BrokenPipeError, ConnectionResetError):
                    stub.hung_up.set()

            def _stream(self):
                words = stub.text.split(" ")
                i = 0
                while i < len(words) or stub.endless:
                    word = words[i % len(words)]
                    if stub.drop_after is not None and i >= stub.drop_after:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the server dies mid-answer
                        return
                    last = i == len(words) - 1 and not stub.endless
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": stub.model,
                             "choices": [{"index": 0, "delta": {"content": word + ("" if last else " ")},
                                          "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    if stub.delay_s:
                        self.wfile.flush()
                        time.sleep(stub.delay_s)
                    i += 1
                final = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": stub.model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
