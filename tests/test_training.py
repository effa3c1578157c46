"""Real Unsloth LoRA runs on the CPU through the runner the Train tab uses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qwen3arena.config import GenerationParams, REPO_ROOT
from qwen3arena.serve import ChatResult, Endpoint, stream_chat
from qwen3arena.store import RunRecord, Store
from qwen3arena.train import DatasetError, LoraTrainConfig, RunRejected, TrainingRunner

CONCISE = str(REPO_ROOT / "data" / "sft" / "kitchen_concise.jsonl")


def config(runtime, name: str, **overrides) -> LoraTrainConfig:
    values = dict(name=name, base_model=runtime.base_path, dataset=CONCISE, output_dir="",
                  max_steps=30, learning_rate=3e-3, per_device_train_batch_size=16, max_length=256, seed=1)
    values.update(overrides)
    return LoraTrainConfig(**values)


def wait_for_step(runner: TrainingRunner, run_id: str, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = runner.progress(run_id)
        if progress.last and progress.last["step"] >= step:
            return
        if progress.run.status not in ("queued", "running"):
            raise AssertionError(f"run ended early: {progress.run.status} {progress.run.error}")
        time.sleep(0.5)
    raise AssertionError("no progress")


def test_a_run_trains_reports_progress_registers_and_joins_the_arena(runtime):
    runner = runtime.runner
    run = runner.submit(config(runtime, "test-round-1"), join_arena=True)
    finished = runner.wait(run.run_id, timeout=600)
    assert finished.status == "succeeded", finished.error
    progress = runner.progress(run.run_id)
    steps = progress.steps
    assert progress.notes == []  # the default optimizer (fused AdamW) runs as asked, also on the CPU
    assert [e["step"] for e in steps] == list(range(1, 31))
    assert all(e["total"] == 30 and e["remaining_s"] >= 0 and e["tokens_per_s"] > 0 for e in steps)
    losses = [e["loss"] for e in steps]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses  # it learns
    out = Path(finished.output_dir)
    # the run kept vLLM out of its process (train/isolation.py): on a CPU without AVX-512 its
    # compiled `vllm._C` kills the process; here it would be listed
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [e["vllm_loaded"] for e in events if e["event"] == "process"] == [[]]
    # the step count is announced before step 1 (it was null: read before the Trainer set it)
    assert [e["total"] for e in events if e["event"] == "training"] == [30]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "train_config.yaml",
                 "metrics.json"):
        assert (out / name).exists(), name
    model = runtime.store.get_model("test-round-1")
    assert model.kind == "adapter" and model.metadata["dataset_sha"] == finished.dataset_sha
    assert model.metadata["run_id"] == run.run_id
    # joined the running vLLM server without a restart, and answers
    assert "test-round-1" in {c.name for c in runtime.pool.available()}
    answer = None
    for event in stream_chat(Endpoint(runtime.server.base_url, "test-round-1"),
                             [{"role": "user", "content": "Can I freeze milk?"}],
                             GenerationParams(temperature=0, max_tokens=30), False, 60):
        if isinstance(event, ChatResult):
            answer = event.content
    assert answer
    runtime.checkpoints.unpublish("test-round-1")
    assert "test-round-1" not in runtime.pool.names()
    with pytest.raises(RunRejected, match="exists"):
        runner.submit(config(runtime, "test-round-1"), taken_names={m.name for m in runtime.store.list_models()})


def test_stop_keeps_the_adapter_trained_so_far(runtime):
    runner = runtime.runner
    run = runner.submit(config(runtime, "test-stopped", max_steps=5000))
    wait_for_step(runner, run.run_id, 3)
    assert "Stopping" in runner.stop(run.run_id)
    assert "Already stopping" in runner.stop(run.run_id)  # a second press is harmless
    finished = runner.wait(run.run_id, timeout=120)
    assert finished.status == "stopped", finished.error
    assert 3 <= finished.metrics["steps"] < 5000
    assert (Path(finished.output_dir) / "adapter_config.json").exists()
    assert runtime.store.get_model("test-stopped").metadata["status"] == "stopped"


def test_length_grouped_steps_fill_the_token_budget_and_learn(runtime):
    """Batching "grouped": each step holds about batch x max_length tokens of similar-length
    conversations, far more real tokens than `batch` padded rows, and the run still learns."""
    from transformers import AutoTokenizer

    from qwen3arena.train import length_stats, load_conversations

    rows = load_conversations(CONCISE)
    longest = length_stats(rows, AutoTokenizer.from_pretrained(runtime.base_path), 256, 4).longest
    run = runtime.runner.submit(config(runtime, "test-grouped", batching="grouped", per_device_train_batch_size=4,
                                       max_steps=12))
    finished = runtime.runner.wait(run.run_id, timeout=600)
    assert finished.status == "succeeded", finished.error
    steps = runtime.runner.progress(run.run_id).steps
    assert [e["step"] for e in steps] == list(range(1, 13))
    tokens = sorted(e["step_tokens"] for e in steps)
    assert 4 * longest < tokens[len(tokens) // 2] <= 4 * 256, (longest, tokens)
    losses = [e["loss"] for e in steps]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def test_gpu_only_choices_on_a_cpu_fall_back_and_say_so(runtime):
    """Packed batching trains padded, and Unsloth swaps the 8-bit optimizer for fused AdamW."""
    from qwen3arena.train import PACKED_ON_CPU

    run = runtime.runner.submit(config(runtime, "test-packed-cpu", batching="packed", optim="adamw_8bit",
                                       max_steps=2))
    assert runtime.runner.wait(run.run_id, timeout=300).status == "succeeded"
    assert runtime.runner.progress(run.run_id).notes == [
        PACKED_ON_CPU, "optimizer adamw_8bit is not available here; using adamw_torch_fused"]


def test_a_crash_is_reported_and_the_runner_goes_on(runtime, tmp_path):
    runner = runtime.runner
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    bad = runner.submit(config(runtime, "test-crash", base_model=str(broken)))
    good = runner.submit(config(runtime, "test-after-crash", max_steps=3))
    assert runner.store.get_run(good.run_id).status == "queued"  # one run at a time
    crashed = runner.wait(bad.run_id, timeout=300)
    assert crashed.status == "failed" and crashed.error
    assert runtime.store.get_model("test-crash") is None
    assert runner.wait(good.run_id, timeout=300).status == "succeeded"


def test_four_bit_on_a_cpu_fails_with_a_clear_reason(runtime):
    run = runtime.runner.submit(config(runtime, "test-4bit", load_in_4bit=True))
    finished = runtime.runner.wait(run.run_id, timeout=300)
    assert finished.status == "failed" and "needs a CUDA GPU" in finished.error


def test_bad_requests_start_nothing(runtime, tmp_path):
    runner = runtime.runner
    before = len(runner.runs())
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"messages": [{"role": "user", "content": "q"}]}\n' * 3)
    with pytest.raises(DatasetError, match="row 1"):
        runner.submit(config(runtime, "x1", dataset=str(bad_data)))
    with pytest.raises(RunRejected, match="Checkpoint name"):
        runner.submit(config(runtime, "bad name!"))
    with pytest.raises(RunRejected, match="no model there"):
        runner.submit(config(runtime, "x2", base_model=str(tmp_path / "nothing")))
    with pytest.raises(RunRejected, match="Batching 'rows': choose one of padded, grouped, packed"):
        runner.submit(config(runtime, "x3", batching="rows"))
    with pytest.raises(RunRejected, match="Optimizer 'sgd': choose one of adamw_torch_fused, adamw_torch"):
        runner.submit(config(runtime, "x6", optim="sgd"))
    with pytest.raises(RunRejected, match="Batching 'grouped' is for SFT"):
        runner.submit(config(runtime, "x5", batching="grouped", method="dpo"))
    with pytest.raises(RunRejected, match="cannot be combined with padding_free"):
        runner.submit(config(runtime, "x4", batching="grouped", padding_free=True))
    assert len(runner.runs()) == before


def test_runs_orphaned_by_an_app_restart_are_marked(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    store.save_run(RunRecord("r-old", "old", "running", {}, str(tmp_path / "r-old"), pid=999_999_999))
    store.save_run(RunRecord("r-queued", "queued-one", "queued", {}, str(tmp_path / "r-queued")))
    runner = TrainingRunner(store, tmp_path / "runs", env={}, autostart=False)
    old = store.get_run("r-old")
    assert old.status == "interrupted" and "app stopped" in old.error
    assert runner.queued() == ["r-queued"]  # queued work is not lost
    runner.shutdown()
    store.close()


# -- a stopped run's checkpoint (fast: a stand-in for the training process) -------------------

FAKE_TRAINING = """
import json, signal, sys, time
from pathlib import Path
import yaml
config = yaml.safe_load(Path(sys.argv[1]).read_text())
progress = Path(sys.argv[sys.argv.index('--progress') + 1])
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
def event(**fields):
    with open(progress, 'a') as f:
        f.write(json.dumps({'time': time.time(), **fields}) + '\\n')
step, total = 0, config['max_steps']
while step < total and not stopped:
    step += 1
    event(event='step', step=step, total=total, loss=1.0 / step)
    time.sleep(0.02)
(Path(config['output_dir']) / 'adapter_config.json').write_text('{}')
event(event='stopped' if stopped else 'done', final_loss=1.0 / step)
"""


class StandInRunner(TrainingRunner):
    """The real runner and its stop, around a process that writes the training events and an
    adapter in milliseconds (SIGTERM: it stops cleanly, as the real one does)."""

    def command(self, run_id: str) -> list[str]:
        import sys

        real = super().command(run_id)
        return [sys.executable, "-c", FAKE_TRAINING, *real[3:]]


@pytest.fixture
def stand_in(tmp_path):
    from types import SimpleNamespace

    from qwen3arena.checkpoints import Checkpoints
    from qwen3arena.config import Settings
    from qwen3arena.serve import ContestantPool

    loaded: list[str] = []
    server = SimpleNamespace(load_adapter=lambda name, path: loaded.append(name), unload_adapter=lambda name: None)
    store = Store(tmp_path / "db.duckdb")
    checkpoints = Checkpoints(Settings(home=tmp_path), store, server, ContestantPool(None))  # type: ignore[arg-type]
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    checkpoints.register_base(str(base))
    runner = StandInRunner(store, tmp_path / "runs", on_finished=checkpoints.on_run_finished)
    yield SimpleNamespace(runner=runner, checkpoints=checkpoints, pool=checkpoints.pool, store=store, loaded=loaded,
                          base=str(base))
    runner.shutdown()
    store.close()


def _stand_in_config(stand_in, name: str, max_steps: int) -> LoraTrainConfig:
    return LoraTrainConfig(name=name, base_model=stand_in.base, dataset=CONCISE, output_dir="", max_steps=max_steps)


def test_a_stopped_run_is_registered_but_kept_out_of_the_arena_until_published(stand_in):
    from types import SimpleNamespace

    from qwen3arena.api import Actions

    runner = stand_in.runner
    run = runner.submit(_stand_in_config(stand_in, "half-done", 100_000), join_arena=True)
    wait_for_step(runner, run.run_id, 3, timeout=60)
    runner.stop(run.run_id)
    finished = runner.wait(run.run_id, timeout=60)
    assert finished.status == "stopped", finished.error
    steps = finished.metrics["steps"]
    model = stand_in.store.get_model("half-done")  # registered, with its lineage and status
    assert model.kind == "adapter" and model.metadata["status"] == "stopped"
    assert "half-done" not in stand_in.pool.names() and stand_in.loaded == []  # not drawn, not loaded
    assert "half-done" not in stand_in.checkpoints.arena_adapters()  # nor at the next start
    view = Actions(SimpleNamespace(runner=runner)).run_status(run.run_id)  # type: ignore[arg-type]
    assert view.in_arena is False
    assert view.arena_note.startswith(f"the run was stopped after {steps} steps, so its checkpoint stays out of "
                                      "the arena until you publish it")
    assert stand_in.checkpoints.publish("half-done").in_arena  # publishing by hand still works
    assert "half-done" in stand_in.pool.names() and stand_in.loaded == ["half-done"]


def test_a_finished_run_that_asked_to_join_the_arena_does(stand_in):
    from types import SimpleNamespace

    from qwen3arena.api import Actions

    run = stand_in.runner.submit(_stand_in_config(stand_in, "all-done", 3), join_arena=True)
    assert stand_in.runner.wait(run.run_id, timeout=60).status == "succeeded"
    assert "all-done" in stand_in.pool.names() and stand_in.loaded == ["all-done"]
    view = Actions(SimpleNamespace(runner=stand_in.runner)).run_status(run.run_id)  # type: ignore[arg-type]
    assert view.in_arena is True and view.arena_note is None


# -- several GPUs, as a CPU runs them: torchrun, two processes, gloo ----------------------------

@pytest.fixture
def two_process_runner(tmp_path, monkeypatch, embedded_models):
    """The real runner and checkpoints on a machine that seems to have 2 GPUs: a `gpus: 2` run
    starts torchrun with 2 processes, which on the CPU train data-parallel over gloo."""
    from types import SimpleNamespace

    from qwen3arena import hardware
    from qwen3arena.checkpoints import Checkpoints
    from qwen3arena.config import Settings
    from qwen3arena.serve import ContestantPool

    monkeypatch.setattr(hardware, "cuda_device_count", lambda: 2)
    loaded: list[str] = []
    server = SimpleNamespace(load_adapter=lambda name, path: loaded.append(name), unload_adapter=lambda name: None)
    store = Store(tmp_path / "db.duckdb")
    checkpoints = Checkpoints(Settings(home=tmp_path), store, server, ContestantPool(None))  # type: ignore[arg-type]
    checkpoints.register_base(str(embedded_models.base_dir))
    runner = TrainingRunner(store, tmp_path / "runs", on_finished=checkpoints.on_run_finished)
    yield SimpleNamespace(runner=runner, store=store, loaded=loaded, base=str(embedded_models.base_dir))
    runner.shutdown()
    store.close()


def _ddp_config(base: str, name: str, max_steps: int) -> LoraTrainConfig:
    return LoraTrainConfig(name=name, base_model=base, dataset=CONCISE, output_dir="", max_steps=max_steps,
                           learning_rate=3e-3, per_device_train_batch_size=4, max_length=256, seed=1, gpus=2)


def test_two_processes_train_one_adapter_with_rank_0_reporting(two_process_runner):
    runner = two_process_runner.runner
    run = runner.submit(_ddp_config(two_process_runner.base, "ddp-two", 4), join_arena=True)
    assert runner.command(run.run_id)[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    finished = runner.wait(run.run_id, timeout=600)
    assert finished.status == "succeeded", (finished.error, runner.progress(run.run_id).log_tail)
    progress = runner.progress(run.run_id)
    assert [e["step"] for e in progress.steps] == [1, 2, 3, 4]  # once each: rank 1 wrote nothing
    assert progress.notes == ["data-parallel on 2 GPUs: a global batch of 8 rows a step (4 a GPU x 2 GPUs)"]
    events = [json.loads(line) for line in (Path(finished.output_dir) / "progress.jsonl").read_text().splitlines()]
    training = [e for e in events if e["event"] == "training"]
    assert [(e["total"], e["world_size"], e["global_batch"]) for e in training] == [(4, 2, 8)]
    assert [e["event"] for e in events].count("done") == 1
    assert progress.steps[0]["epoch"] == pytest.approx(1 / 16)  # 125 rows: 63 a rank, 16 batches of 4
    assert (Path(finished.output_dir) / "adapter_model.safetensors").exists()
    assert two_process_runner.store.get_model("ddp-two").metadata["run_id"] == run.run_id
    assert two_process_runner.loaded == ["ddp-two"]


def test_stopping_two_processes_stops_both_after_the_same_step_and_saves(two_process_runner):
    runner = two_process_runner.runner
    run = runner.submit(_ddp_config(two_process_runner.base, "ddp-stopped", 5000))
    wait_for_step(runner, run.run_id, 3)
    assert "Stopping" in runner.stop(run.run_id)
    finished = runner.wait(run.run_id, timeout=120)
    assert finished.status == "stopped", (finished.error, runner.progress(run.run_id).log_tail)
    assert 3 <= finished.metrics["steps"] < 5000
    assert (Path(finished.output_dir) / "adapter_config.json").exists()
    assert two_process_runner.store.get_model("ddp-stopped").metadata["status"] == "stopped"
