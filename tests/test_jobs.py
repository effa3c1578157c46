"""The one child-process supervisor (procs.ChildProcess) and the jobs table: benchmark jobs that
outlive the app process, judge jobs that outlive the request that started them."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from judge_stub import JudgeStub

from qwen3arena.errors import Refused
from qwen3arena.evals import EvalRunner
from qwen3arena.jobs import JobRecord, JobTable
from qwen3arena.judge import JudgeError, JudgeSettings
from qwen3arena.judge.runs import JudgeRuns
from qwen3arena.procs import ChildProcess, child_env, new_job_id, running_command
from qwen3arena.store import BattleRecord, Store


def child(tmp_path: Path, code: str) -> ChildProcess:
    return ChildProcess(new_job_id(), [sys.executable, "-c", code], tmp_path / "job")


def wait_for_line(process: ChildProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log_tail():
        assert time.monotonic() < deadline, process.log_tail()
        time.sleep(0.05)


# -- the supervisor ---------------------------------------------------------------------------------

def test_a_child_that_exits_0_leaves_its_events_and_log(tmp_path):
    process = child(tmp_path, "import json\n"
                              "print('\\x1b[32mloading\\x1b[0m'); print('10%\\r50%\\r100%')\n"
                              f"open({str(tmp_path / 'job' / 'events.jsonl')!r}, 'w').write("
                              "json.dumps({'event': 'done'}) + '\\n' + '{\"event\": \"half')\n")
    assert process.start() > 0
    assert process.wait(30) == 0
    assert process.events() == [{"event": "done"}]  # a line still being written is skipped
    assert process.log_tail() == "loading\n100%"  # no colour codes, no progress-bar redraws
    assert process.exit_reason().startswith("exit code 0")
    assert not process.stop()  # nothing to stop


def test_a_child_that_exits_1_says_so_with_its_last_lines(tmp_path):
    process = child(tmp_path, "import sys\nprint('step 1')\nsys.exit('boom: no such model')")
    process.start()
    assert process.wait(30) == 1
    assert process.exit_reason() == "exit code 1: step 1 | boom: no such model"


def test_a_child_killed_by_a_signal_is_named_with_its_meaning(tmp_path):
    process = child(tmp_path, "import os, signal\nprint('about to crash', flush=True)\n"
                              "os.kill(os.getpid(), signal.SIGSEGV)")
    process.start()
    assert process.wait(30) == -signal.SIGSEGV
    assert process.exit_reason().startswith("killed by SIGSEGV (segmentation fault: a crash in native code)")
    assert process.exit_reason().endswith("about to crash")


def test_stop_asks_with_sigterm_first(tmp_path):
    process = child(tmp_path, "import signal, sys, time\n"
                              "signal.signal(signal.SIGTERM, lambda *a: (print('saving', flush=True), sys.exit(0)))\n"
                              "print('ready', flush=True)\ntime.sleep(60)")
    process.start()
    wait_for_line(process, "ready")
    assert process.stop(grace_s=30)
    assert process.returncode == 0 and process.stopping
    assert process.log_tail().endswith("saving")


def test_stop_kills_a_child_that_ignores_sigterm_and_what_it_started(tmp_path):
    process = child(tmp_path, "import signal, subprocess, sys, time\n"
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                              "print('ready', helper.pid, flush=True)\ntime.sleep(60)")
    process.start()
    wait_for_line(process, "ready")
    helper = int(process.log_tail().split()[-1])
    started = time.monotonic()
    assert process.stop(grace_s=1.0)
    assert 1.0 <= time.monotonic() - started < 20
    assert process.returncode == -signal.SIGKILL
    assert process.exit_reason().startswith("killed by SIGKILL")
    deadline = time.monotonic() + 10
    while running_command(helper) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_command(helper) is None, "the child's own child was left running"


def test_stop_without_blocking_returns_at_once(tmp_path):
    process = child(tmp_path, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "print('ready', flush=True)\ntime.sleep(60)")
    process.start()
    wait_for_line(process, "ready")
    started = time.monotonic()
    assert process.stop(grace_s=0.5, block=False)
    assert time.monotonic() - started < 0.5 and process.poll() is None
    assert process.wait(20) == -signal.SIGKILL


def test_the_child_environment_is_offline_unless_told_and_finds_the_package(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    env = child_env({"EXTRA": "1"})
    assert env["HF_HUB_OFFLINE"] == "1" and env["EXTRA"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert child_env()["HF_HUB_OFFLINE"] == "0"


# -- benchmark jobs survive the app process ------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_benchmark_job_is_listed_after_a_restart_and_a_running_one_is_interrupted(tmp_path, store_target):
    store = Store(store_target)
    runner = EvalRunner(tmp_path / "evals", store)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    job_id = runner.start("tiny", dead, ["kitchen_mcq"], limit=1)  # preflight fails: no EvalScope started
    finished = runner.wait(job_id, timeout=60)
    assert finished.status == "failed" and "cannot reach the server" in finished.error
    # an app process that died with a job running left this row behind
    JobTable(store).save(JobRecord(new_job_id(), "benchmark", "running", params={
        "model": "tiny", "base_url": dead, "datasets": ["kitchen_qa"], "work_dir": str(tmp_path / "gone")},
        pid=999_999_999))

    again = EvalRunner(tmp_path / "evals", store)  # the app started again
    jobs = again.jobs()
    assert [j.status for j in jobs] == ["interrupted", "failed"]
    assert "app stopped" in jobs[0].error and jobs[0].finished
    shown = again.get(job_id)
    assert (shown.model, shown.datasets, shown.error) == ("tiny", ["kitchen_mcq"], finished.error)
    assert [(s.dataset, s.status) for s in shown.scores] == [("kitchen_mcq", "failed")]
    assert again.latest().job_id == jobs[0].job_id
    store.close()


# -- judge jobs run in the background ---------------------------------------------------------------

def voted_battles(store: Store, count: int) -> None:
    for number in range(count):
        battle_id = f"b{number}"
        store.save_battle(BattleRecord(
            battle_id, "anon:1", "left", "right", status="ready", turns=1,
            conversation_a=[{"role": "user", "content": f"Q{number}"}, {"role": "assistant", "content": "GOOD"}],
            conversation_b=[{"role": "user", "content": f"Q{number}"}, {"role": "assistant", "content": "bad"}]))
        store.record_vote(battle_id, "model_a", "anon:1")


def judge_settings(stub: JudgeStub) -> JudgeSettings:
    return JudgeSettings(base_url=stub.base_url, model="stub-judge", api_key_env=None, concurrency=2,
                         max_retries=1, backoff_s=0.01, max_backoff_s=0.05, request_timeout_s=5.0)


@pytest.fixture
def stub():
    server = JudgeStub()
    yield server
    server.close()


def test_a_judge_job_runs_without_a_request_and_is_listed_after_it_ends(stub, tmp_path, store_target):
    store = Store(store_target)
    voted_battles(store, 10)
    runs = JudgeRuns(store, judge_settings(stub))
    job_id = runs.start_battles()  # returns at once; nobody reads the progress lines
    job = runs.wait(job_id, timeout=60)
    assert job.status == "succeeded", job.error
    assert (job.done, job.total) == (10, 10) and job.started_at <= job.finished_at
    assert job.result["summary"].startswith("Done: 10 of 10 battles have a verdict")
    assert stub.requests == 20  # two games (positions swapped) per battle

    later = JudgeRuns(store, judge_settings(stub))  # the app started again
    assert [j.job_id for j in later.jobs()] == [job_id] and later.latest().status == "succeeded"
    again = later.wait(later.start_battles(), timeout=60)
    assert again.result["summary"] == "Every voted battle is already judged."
    assert later.latest().job_id == again.job_id
    store.close()


def test_a_judge_job_stops_between_chunks_and_at_shutdown(stub, tmp_path, store_target):
    store = Store(store_target)
    voted_battles(store, 20)

    def slow(body):
        time.sleep(0.1)
        return "[[A=B]]"

    stub.reply = slow
    runs = JudgeRuns(store, judge_settings(stub))
    job_id = runs.start_battles()
    with pytest.raises(JudgeError, match="already running") as refused:
        runs.start_battles()  # one at a time: two would pay twice for the same replies
    assert isinstance(refused.value, Refused)
    assert runs.stop(job_id)
    stopped = runs.wait(job_id, timeout=60)
    assert stopped.status == "cancelled" and stopped.done == 8 and stopped.total == 20  # one chunk

    job_id = runs.start_battles()
    runs.shutdown()
    interrupted = runs.get(job_id)
    assert interrupted.status == "interrupted" and "app stopped" in interrupted.error
    with pytest.raises(JudgeError, match="shutting down"):
        runs.start_battles()
    # a row an app process that died left running is interrupted on the next start
    JobTable(store).save(JobRecord("left-behind", "judge", "running"))
    assert JudgeRuns(store, judge_settings(stub)).get("left-behind").status == "interrupted"
    store.close()
