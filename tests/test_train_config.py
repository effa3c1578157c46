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
