"""A stand-in for `python -m vllm.entrypoints.openai.api_server` in fast tests of the server
manager: it answers /health, /v1/models and the LoRA load/unload endpoints, and starts a
"worker" child in its process group that, like vLLM's engine core, does not die with it.

    python tests/fake_vllm.py --port PORT [--served-model-name NAME] [--worker-pid-file PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="base")
    parser.add_argument("--worker-pid-file")
    args = parser.parse_args()
    # the worker: same process group, no parent-death signal (vLLM's engine core after a kill -9)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    if args.worker_pid_file:
        Path(args.worker_pid_file).write_text(str(worker.pid))
    adapters: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {})
            elif self.path == "/v1/models":
                self._reply(200, {"data": [{"id": n} for n in [args.served_model_name, *adapters]]})
            else:
                self._reply(404, {})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/v1/load_lora_adapter":
                adapters[body["lora_name"]] = body["lora_path"]
                self._reply(200, {})
            elif self.path == "/v1/unload_lora_adapter":
                adapters.pop(body["lora_name"], None)
                self._reply(200, {})
            else:
                self._reply(404, {})

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
