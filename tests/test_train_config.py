"""The run rules live on LoraTrainConfig: a form, a stored run, the CLI and a shell run.yaml are checked alike."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from qwen3arena.config import REPO_ROOT, ConfigError
from qwen3arena.train import LoraTrainConfig, RunRejected


def base(**kw):
    return {"name": "n", "base_model": "m", "dataset": "d.jsonl", "output_dir": "o", **kw}

@pytest.mark.parametrize("overrides, message", [
    ({"method": "ppo"}, "'ppo': choose one of sft, dpo"),
    ({"batching": "rows"}, "'rows': choose one of padded, grouped, packed"),
    ({"method": "dpo", "batching": "grouped"}, "Batching 'grouped' is for SFT"),
    ({"max_steps": 0, "num_train_epochs": 0}, "Set epochs above 0"),
    ({"name": "bad name!"}, "Checkpoint name"),
    ({"learning_rate": 1e9}, r"learning_rate: 1e\+09 is out of range; use a value above 0 and at most 1"),
    ({"rank": 4096}, "rank: 4096 is out of range; use a value from 1 to 1024"),
])
def test_every_way_in_checks_the_same_rules(tmp_path, overrides, message):
    with pytest.raises(RunRejected, match=message):  # built in code (form, API)
        LoraTrainConfig(**base(**overrides))
    key = message.split(":")[0]  # a mapping meets the type check first, in its own words
    with pytest.raises((RunRejected, ConfigError), match=key):  # from a mapping (a stored run, the CLI)
        LoraTrainConfig.from_dict(base(**overrides), "run")
    path = tmp_path / "run.yaml"  # a run.yaml started from a shell
    path.write_text(yaml.safe_dump(base(**overrides)))
    shell = subprocess.run([sys.executable, "-m", "qwen3arena.train", str(path)], capture_output=True, text=True,
                           timeout=120)
    assert shell.returncode == 2 and key in shell.stderr, shell.stderr[-1500:]


@pytest.mark.parametrize("field, bad, allowed", [
    ("learning_rate", 0.0, "above 0 and at most 1"),
    ("learning_rate", float("nan"), "above 0 and at most 1"),
    ("rank", 0, "from 1 to 1024"),
    ("alpha", 0, "above 0"),
    ("dropout", 1.0, "at least 0 and below 1"),
    ("dropout", -0.1, "at least 0 and below 1"),
    ("weight_decay", 2.0, "from 0 to 1"),
    ("num_train_epochs", -1.0, "at least 0"),
    ("per_device_train_batch_size", 0, "at least 1"),
    ("gradient_accumulation_steps", 0, "at least 1"),
    ("max_length", 8, "at least 16"),
    ("warmup_steps", -5, "at least 0"),
    ("seed", -1, "from 0 to 4294967295"),
    ("beta", 0.0, "above 0"),
    ("pad_to_multiple_of", 0, "at least 1"),
])
def test_numbers_out_of_range_are_refused_naming_the_field_and_the_range(field, bad, allowed):
    with pytest.raises(RunRejected) as refused:
        LoraTrainConfig(**base(**{field: bad}))
    assert str(refused.value).startswith(f"{field}: ") and str(refused.value).endswith(f"use a value {allowed}.")


def test_the_edges_of_each_range_are_allowed():
    LoraTrainConfig(**base(learning_rate=1.0, rank=1024, dropout=0.0, max_length=16, seed=0,
                           num_train_epochs=0.0, max_steps=10, pad_to_multiple_of=None))
    LoraTrainConfig(**base(rank=1, seed=2**32 - 1, weight_decay=1.0))


# -- several GPUs (gpus: N | all) -------------------------------------------------------------

CONCISE = str(REPO_ROOT / "data" / "sft" / "kitchen_concise.jsonl")


@pytest.fixture
def gpu_count(monkeypatch):
    """Sets how many CUDA GPUs this machine seems to have (hardware.cuda_device_count)."""
    from qwen3arena import hardware

    def set_count(count: int) -> None:
        monkeypatch.setattr(hardware, "cuda_device_count", lambda: count)

    return set_count


def test_gpus_is_one_by_default_and_takes_a_count_or_all_from_yaml(tmp_path):
    assert LoraTrainConfig(**base()).gpus == 1
    for value in ("all", 2):
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(base(gpus=value)))
        assert LoraTrainConfig.from_yaml(path).gpus == value
        assert LoraTrainConfig.from_dict(base(gpus=value), "run").gpus == value


@pytest.mark.parametrize("bad", [0, -1, "two", True, 1.5])
def test_gpus_other_than_a_positive_count_or_all_are_refused(bad):
    with pytest.raises(RunRejected, match=rf"GPUs {bad!r}: use a whole number of 1 or more, or 'all'"):
        LoraTrainConfig(**base(gpus=bad))
    with pytest.raises((RunRejected, ConfigError), match="gpus|GPUs"):  # a stored run, the CLI, the API
        LoraTrainConfig.from_dict(base(gpus=bad), "run")


@pytest.mark.parametrize("count, gpus, message", [
    (0, 2, "gpus: 2 needs 2 CUDA GPUs; this machine has none (CPU). Use gpus: 1."),
    (1, 2, "gpus: 2 needs 2 CUDA GPUs; this machine has 1. Use gpus: 1."),
    (2, 4, "gpus: 4 needs 4 CUDA GPUs; this machine has 2. Use gpus: 1 to 2, or all."),
    (0, "all", "gpus: all needs CUDA GPUs; this machine has none (CPU). Use gpus: 1."),
])
def test_more_gpus_than_the_machine_has_are_refused_where_runs_are_submitted(tmp_path, gpu_count, count, gpus,
                                                                            message):
    from qwen3arena.store import Store
    from qwen3arena.train import TrainingRunner
    from qwen3arena.train.launch import world_size_of

    gpu_count(count)
    config = LoraTrainConfig(**base(gpus=gpus, dataset=CONCISE))
    with pytest.raises(RunRejected) as refused:
        world_size_of(config)
    assert str(refused.value) == message
    store = Store(tmp_path / "db.duckdb")
    runner = TrainingRunner(store, tmp_path / "runs", env={}, autostart=False)
    with pytest.raises(RunRejected) as refused:
        runner.submit(config)
    assert str(refused.value) == message
    assert runner.runs() == [] and runner.queued() == []  # nothing queued, nothing written
    assert not any((tmp_path / "runs").iterdir())
    store.close()


@pytest.mark.parametrize("count, gpus, world", [(0, 1, 1), (1, 1, 1), (1, "all", 1), (4, 2, 2), (4, "all", 4)])
def test_gpus_resolve_to_the_processes_a_run_trains_with(gpu_count, count, gpus, world):
    from qwen3arena.train.launch import world_size_of

    gpu_count(count)
    assert world_size_of(LoraTrainConfig(**base(gpus=gpus))) == world


def test_the_launcher_runs_torchrun_with_one_process_a_gpu(tmp_path, gpu_count):
    """N=2 and all -> 4 (a machine with 4 GPUs, as the hardware module reports it): the runner's
    command, the one it executes and the page shows, is torchrun's; one GPU stays a plain run."""
    import sys

    from qwen3arena.store import Store
    from qwen3arena.train import TrainingRunner
    from qwen3arena.train.launch import DISTRIBUTED_ENV, training_command, training_env

    gpu_count(4)
    store = Store(tmp_path / "db.duckdb")
    runner = TrainingRunner(store, tmp_path / "runs", env={}, autostart=False)
    commands = {}
    for name, value in (("one", 1), ("two", 2), ("every", "all")):
        run = runner.submit(LoraTrainConfig(**base(name=name, gpus=value, dataset=CONCISE)))
        commands[value] = runner.command(run.run_id)
        run_dir = tmp_path / "runs" / run.run_id
        tail = ["-m", "qwen3arena.train", str(run_dir / "run.yaml"), "--progress", str(run_dir / "progress.jsonl")]
        assert LoraTrainConfig.from_yaml(run_dir / "run.yaml").gpus == value  # "all" stays "all" in the run
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        expected = {1: [sys.executable, *tail], 2: [*torchrun, "2", *tail], "all": [*torchrun, "4", *tail]}[value]
        assert commands[value] == expected
    store.close()
    assert training_command("run.yaml", world_size=2, python="python") == [
        "python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "qwen3arena.train", "run.yaml"]
    # NCCL defaults (NVLink multicast off) and threads shared among the ranks, unless the user set them
    env = training_env(2, {"PATH": "/bin", "OMP_NUM_THREADS": "7"})
    assert env["NCCL_NVLS_ENABLE"] == DISTRIBUTED_ENV["NCCL_NVLS_ENABLE"] == "0" and env["OMP_NUM_THREADS"] == "7"
    assert training_env(2, {"NCCL_NVLS_ENABLE": "1"})["NCCL_NVLS_ENABLE"] == "1"
    assert training_env(1, {"PATH": "/bin"}) == {"PATH": "/bin"}


def test_a_run_yaml_asking_for_gpus_this_machine_lacks_is_refused_from_a_shell(tmp_path):
    import sys

    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has several GPUs")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(base(gpus=2, dataset=CONCISE)))
    shell = subprocess.run([sys.executable, "-m", "qwen3arena.train", str(path)], capture_output=True, text=True,
                           timeout=120)
    assert shell.returncode == 2 and "gpus: 2 needs 2 CUDA GPUs; this machine has" in shell.stderr, shell.stderr[-1500:]


def test_the_global_batch_is_per_gpu_batch_times_gpus_times_accumulation():
    config = LoraTrainConfig(**base(per_device_train_batch_size=8, gradient_accumulation_steps=2))
    assert config.batch_summary(4) == ("data-parallel on 4 GPUs: a global batch of 64 rows a step "
                                       "(8 a GPU x 4 GPUs x 2 accumulation steps)")
    grouped = LoraTrainConfig(**base(per_device_train_batch_size=4, batching="grouped", max_length=512))
    assert grouped.batch_summary(2) == ("data-parallel on 2 GPUs: each step holds 2 GPUs x about 4 x 512 tokens "
                                        "(grouped batches)")
