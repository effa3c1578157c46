"""Several GPUs, the parts a CPU can check: only rank 0 writes events and the checkpoint, the ranks
agree on a stop, the first rank's failure names the run's error, and the Train tab's "GPUs" field.
The launcher's command line and the refusals are in test_train_config.py; a real 2-process run
(torchrun, gloo on the CPU) is in test_training.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from qwen3arena.config import REPO_ROOT
from qwen3arena.train import LoraTrainConfig, RunRejected

CONCISE = str(REPO_ROOT / "data" / "sft" / "kitchen_concise.jsonl")


def config(**overrides) -> LoraTrainConfig:
    return LoraTrainConfig(**{"name": "n", "base_model": "m", "dataset": CONCISE, "output_dir": "o",
                              "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, **overrides})


def as_rank(monkeypatch, rank: int, world: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


@pytest.fixture
def stop_request():
    """A StopRequest, with the test process's own SIGTERM handler put back afterwards."""
    from qwen3arena.train.common import StopRequest

    previous = signal.getsignal(signal.SIGTERM)
    yield StopRequest()
    signal.signal(signal.SIGTERM, previous)


def _train_a_little(progress: Path, stop) -> SimpleNamespace:
    """The progress callback through one run's events, as the Trainer calls it on every rank."""
    from qwen3arena.train.common import event_writer, progress_callback

    args = SimpleNamespace(world_size=int(os.environ.get("WORLD_SIZE", "1")), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                           optim="adamw_torch_fused")
    state = SimpleNamespace(max_steps=10, global_step=1, num_input_tokens_seen=100)
    control = SimpleNamespace(should_training_stop=False)
    with event_writer(progress) as emit:
        callback = progress_callback(config(), emit, stop)
        callback.on_train_begin(args, state, control)
        callback.on_log(args, state, control, logs={"loss": 1.5, "learning_rate": 1e-4, "epoch": 0.1})
        callback.on_step_end(args, state, control)
    return control


def test_only_rank_0_writes_progress_events(tmp_path, monkeypatch, stop_request):
    as_rank(monkeypatch, 1)
    _train_a_little(tmp_path / "rank1.jsonl", stop_request)
    assert not (tmp_path / "rank1.jsonl").exists()  # rank 1 trains silently
    as_rank(monkeypatch, 0)
    _train_a_little(tmp_path / "rank0.jsonl", stop_request)
    events = [json.loads(line) for line in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["training", "note", "step"]
    # the world and the global batch: 4 rows a GPU x 2 accumulation steps x 2 GPUs
    assert (events[0]["world_size"], events[0]["global_batch"]) == (2, 16)
    assert events[1]["message"] == ("data-parallel on 2 GPUs: a global batch of 16 rows a step "
                                    "(4 a GPU x 2 GPUs x 2 accumulation steps)")


def test_one_process_writes_as_before(tmp_path, monkeypatch, stop_request):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    _train_a_little(tmp_path / "p.jsonl", stop_request)
    events = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["training", "step"]  # no note: one device


def test_a_stop_request_stops_the_step_outside_a_process_group(tmp_path, monkeypatch, stop_request):
    as_rank(monkeypatch, 1)
    stop_request.requested = True
    assert _train_a_little(tmp_path / "p.jsonl", stop_request).should_training_stop is True


def test_only_rank_0_saves_the_checkpoint(tmp_path, monkeypatch, stop_request):
    from qwen3arena.train.common import save_checkpoint

    class Model:
        peft_config = {"default": None}

        def save_pretrained(self, out, **kwargs):
            (Path(out) / "adapter_config.json").write_text("{}")

    tokenizer = SimpleNamespace(save_pretrained=lambda out: (Path(out) / "tokenizer.json").write_text("{}"))
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=[{"loss": 2.0}, {"loss": 1.0}]))
    result = SimpleNamespace(training_loss=1.5, global_step=2)
    written: list[dict] = []
    for rank in (1, 0):
        as_rank(monkeypatch, rank)
        out = tmp_path / f"rank{rank}"
        out.mkdir()
        metrics = save_checkpoint(Model(), tokenizer, config(), out, trainer, result, stop_request,
                                  lambda kind, **data: written.append({"event": kind, "rank": rank}))
        assert metrics["saved"] is (rank == 0) and metrics["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == []
    assert {"adapter_config.json", "tokenizer.json", "train_config.yaml", "metrics.json"} <= {
        p.name for p in (tmp_path / "rank0").iterdir()}
    assert written == [{"event": "process", "rank": 0}, {"event": "done", "rank": 0}]


def test_a_failing_rank_writes_its_own_failure_naming_the_rank(tmp_path, monkeypatch):
    from qwen3arena.train.__main__ import _fail

    as_rank(monkeypatch, 1)
    _fail(tmp_path / "p.jsonl", "RuntimeError: boom")
    event = json.loads((tmp_path / "p.jsonl").read_text())
    assert (event["event"], event["rank"], event["reason"]) == ("failed", 1, "rank 1: RuntimeError: boom")


def test_the_first_failed_rank_is_the_runs_error_even_if_rank_0_stopped_after(tmp_path):
    """torchrun ends the other ranks when one fails: rank 0 may then fail in a collective or stop
    cleanly, but the run's error is the rank that failed first."""
    from qwen3arena.store import RunRecord, Store
    from qwen3arena.train import TrainingRunner

    store = Store(tmp_path / "db.duckdb")
    runner = TrainingRunner(store, tmp_path / "runs", env={}, autostart=False)
    run = RunRecord("r1", "n", "running", {}, str(tmp_path / "r1"))
    store.save_run(run)
    events = [{"event": "step", "step": 1, "loss": 1.0}, {"event": "failed", "rank": 1, "reason": "rank 1: OOM"},
              {"event": "failed", "rank": 0, "reason": "rank 0: NCCL error"}, {"event": "stopped", "steps": 1}]
    child = SimpleNamespace(returncode=1, events=lambda: events, stopping=False, exit_reason=lambda: "exit 1")
    runner._finish(run, child)  # type: ignore[arg-type]
    finished = store.get_run("r1")
    assert (finished.status, finished.error) == ("failed", "rank 1: OOM")
    store.close()


# -- the Train tab's "GPUs" field ------------------------------------------------------------

@pytest.fixture
def gpu_count(monkeypatch):
    from qwen3arena import hardware

    def set_count(count: int) -> None:
        monkeypatch.setattr(hardware, "cuda_device_count", lambda: count)

    return set_count


def _train_form():
    import gradio as gr

    from qwen3arena.api import Actions
    from qwen3arena.ui.train_tab import build_train_tab

    with gr.Blocks():
        return build_train_tab(Actions(SimpleNamespace())).form  # type: ignore[arg-type]


def test_the_gpus_field_offers_every_gpu_and_all_on_a_machine_with_several(gpu_count):
    from qwen3arena.api import Actions
    from qwen3arena.api.codec import typed
    from qwen3arena.ui.train_tab import _gpus_value

    gpu_count(4)
    form = _train_form()
    field = form["gpus"]
    assert [value for _, value in field.choices] == [1, 2, 3, 4, "all"] and field.value == 1
    assert field.interactive is not False
    # bound by name: the form's value is the config's field, through the same path as a Start
    values = form.values({field: "all", form["name"]: "x", form["base_model"]: "m", form["dataset"]: CONCISE})
    assert values["gpus"] == "all" and typed(LoraTrainConfig, {**values, "output_dir": ""}).gpus == "all"
    assert [_gpus_value(v) for v in ("2", 2, "all", " All ")] == [2, 2, "all", "all"]
    runtime = SimpleNamespace(checkpoints=SimpleNamespace(adapter_path=lambda name: None))
    made = Actions(runtime).run_config({"name": "x", "base_model": "m", "dataset": CONCISE, "gpus": 2})  # type: ignore[arg-type]
    assert made.gpus == 2


@pytest.mark.parametrize("count, reason", [(0, "no CUDA GPU (CPU)"), (1, "one GPU")])
def test_the_gpus_field_is_fixed_at_one_without_several_gpus(gpu_count, count, reason):
    gpu_count(count)
    field = _train_form()["gpus"]
    assert [value for _, value in field.choices] == [1] and field.value == 1
    assert field.interactive is False and reason in field.info


def test_the_preview_refuses_gpus_the_machine_lacks_before_reading_anything(gpu_count):
    from qwen3arena.api import Actions

    gpu_count(1)
    with pytest.raises(RunRejected, match="gpus: 2 needs 2 CUDA GPUs; this machine has 1"):
        Actions(SimpleNamespace()).preview_run(config(gpus=2, dataset="/no/such.jsonl"))  # type: ignore[arg-type]
