"""`python app.py` as users start it: it serves the page, starts vLLM, and takes vLLM down
with it even when it is killed outright (no orphan processes holding memory or the port)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of the group do not count: look for a live member
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_killing_the_app_takes_vllm_down_with_it(tmp_path, embedded_models):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(embedded_models.base_dir.parent.parent, target_is_directory=True)
    ui_port, vllm_port = free_port(), free_port()
    env = {**os.environ, "QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__PORT": str(vllm_port)}
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(ui_port)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = home / "logs" / "vllm.pid"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert app.poll() is None, "the app exited"
            try:
                if httpx.get(f"http://127.0.0.1:{vllm_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        else:
            raise AssertionError("vLLM did not come up")
        page = httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=10)
        assert page.status_code == 200 and "qwen3arena" in page.text
        vllm_pid = int(pid_file.read_text())
        assert _group_alive(vllm_pid)
    finally:
        app.send_signal(signal.SIGKILL)  # no clean-up code runs in the app
        app.wait(30)
    deadline = time.monotonic() + 60
    while _group_alive(vllm_pid) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _group_alive(vllm_pid), "vLLM outlived the app"
