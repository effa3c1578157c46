"""Cold and warm start of `python app.py`, timed from the process start to the moments a user
cares about: the page answers, the arena can draw a battle (two models up), every model is up.

Cold: an empty data directory (the embedded tiny Qwen3 and its two adapters are built, then
vLLM starts). Warm: the same directory again (the models exist; vLLM starts). Each start runs
in its own process and is read through the app's own HTTP API (/models_status), so any version
of the app can be measured the same way (--repo points at another checkout).

Usage: .venv/bin/python bench/startup.py [--cold N] [--warm N] [--repo DIR] [--home DIR]
Prints one JSON line per start and a markdown table; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"INFO qwen3arena\.runtime: (.*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(repo: Path, home: Path, timeout_s: float) -> dict:
    """Starts the app on `home`, waits until every model is up, stops it; the times in seconds."""
    from gradio_client import Client

    ui_port, vllm_port = free_port(), free_port()
    env = {**os.environ, "QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__PORT": str(vllm_port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(ui_port)], cwd=repo, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    steps: list[tuple[float, str]] = []

    def read_log() -> None:
        for line in app.stdout:  # type: ignore[union-attr]
            match = STEP_LINE.search(line.rstrip())
            if match:
                steps.append((round(time.monotonic() - started, 1), match.group(1)))

    threading.Thread(target=read_log, daemon=True).start()
    marks: dict[str, float] = {}
    client = None
    try:
        while time.monotonic() - started < timeout_s:
            if app.poll() is not None:
                raise RuntimeError(f"the app exited ({app.returncode})")
            if client is None:
                try:
                    client = Client(f"http://127.0.0.1:{ui_port}/", verbose=False, download_files=False)
                    marks["page"] = round(time.monotonic() - started, 1)
                except Exception:
                    time.sleep(1)
                    continue
            status = client.predict(api_name="/models_status")["result"]
            up = sum(c["status"] == "up" for c in status["contestants"])
            now = round(time.monotonic() - started, 1)
            if up >= 2:
                marks.setdefault("arena_open", now)
            if status["vllm_state"] == "ready":
                marks.setdefault("vllm_ready", now)
            if up >= 3:
                marks["all_up"] = now
                break
            time.sleep(2)
        else:
            raise RuntimeError(f"not every model was up after {timeout_s:.0f} s")
    finally:
        app.terminate()
        try:
            app.wait(60)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    return {**marks, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=1, help="cold starts (each on an empty data directory)")
    parser.add_argument("--warm", type=int, default=1, help="warm starts after the last cold one")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose app.py is started")
    parser.add_argument("--home", type=Path, help="data directory for warm starts only (models already built)")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    rows = []
    home = args.home or Path(tempfile.mkdtemp(prefix="q3a-startup-"))
    for i in range(args.cold):
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        result = {"label": args.label, "kind": "cold", **one_start(args.repo, home, args.timeout)}
        print(json.dumps(result), flush=True)
        rows.append(result)
    for i in range(args.warm):
        result = {"label": args.label, "kind": "warm", **one_start(args.repo, home, args.timeout)}
        print(json.dumps(result), flush=True)
        rows.append(result)
    print("\n| start | page (s) | arena open: 2 models up (s) | vLLM ready (s) | all 3 up (s) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['label']} {row['kind']} | {row.get('page')} | {row.get('arena_open')} | "
              f"{row.get('vllm_ready')} | {row.get('all_up')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
