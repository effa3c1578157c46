"""The run rules live on LoraTrainConfig: a form, a stored run, the CLI and a shell run.yaml are checked alike."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from qwen3arena.config import ConfigError
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
