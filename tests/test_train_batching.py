"""How rows become batches: the SFTConfig arguments per choice, length-grouped token budgets,
and dropping attention masks that change nothing (checked through Unsloth itself)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from qwen3arena.config import ConfigError
from qwen3arena.train.batching import (
    GROUPED_CPU_MULTIPLE,
    LengthGroupedBatches,
    batching_args,
    drop_redundant_attention_masks,
    grouping_multiple,
    padded_length,
    token_budget_batches,
)
from qwen3arena.train.config import LoraTrainConfig


def config(**overrides) -> LoraTrainConfig:
    return LoraTrainConfig(name="c", base_model="m", dataset="d.jsonl", output_dir="o", **overrides)


def chat_lengths(n: int = 2000, cap: int = 1024, seed: int = 0) -> list[int]:
    """Log-normal like real chat data, cut at max_length as trl does."""
    rng = random.Random(seed)
    return [min(max(int(rng.lognormvariate(5.5, 0.9)), 8), cap) for _ in range(n)]


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


# -- SFTConfig arguments ----------------------------------------------------------------------

def test_packed_asks_trl_for_bfd_packing():
    assert batching_args(config(batching="packed"), cuda=True) == {
        "packing": True, "packing_strategy": "bfd", "pad_to_multiple_of": None}
    assert batching_args(config(batching="packed", pad_to_multiple_of=64), cuda=False)["pad_to_multiple_of"] == 64


def test_padded_rows_on_a_gpu_stay_padded_and_the_cpu_keeps_unsloths_choice():
    # Unsloth would turn padding-free on by itself; padded ran faster on fixed-length rows
    args = batching_args(config(), cuda=True)
    assert args["packing"] is False and args["padding_free"] is False
    assert batching_args(config(padding_free=True), cuda=True)["padding_free"] is True
    assert "padding_free" not in batching_args(config(), cuda=False)


def test_grouped_batches_are_padded_rectangles_rounded_on_a_cpu():
    # on a CPU every new shape grows oneDNN's kernel cache; a multiple bounds the shapes
    assert batching_args(config(batching="grouped"), cuda=True) == {
        "packing": False, "padding_free": False, "pad_to_multiple_of": None}
    assert batching_args(config(batching="grouped"), cuda=False) == {
        "packing": False, "padding_free": False, "pad_to_multiple_of": GROUPED_CPU_MULTIPLE}
    assert batching_args(config(batching="grouped", pad_to_multiple_of=8), cuda=True)["pad_to_multiple_of"] == 8
    assert grouping_multiple(config(), cuda=False) == GROUPED_CPU_MULTIPLE
    assert grouping_multiple(config(), cuda=True) == 1


def test_run_files_from_before_batching_still_load():
    base = {"name": "a", "base_model": "b", "dataset": "d", "output_dir": "o"}
    assert LoraTrainConfig.from_dict({**base, "packing": True}, "old.yaml").batching == "packed"
    assert LoraTrainConfig.from_dict({**base, "packing": False}, "old.yaml").batching == "padded"
    with pytest.raises(ConfigError, match="'rows' is not one of"):
        LoraTrainConfig.from_dict({**base, "batching": "rows"}, "run.yaml")
    # a stored run (reused from the Train tab) keeps its packing and drops fields no longer known
    stored = {**base, "packing": True, "field_of_an_older_version": 1}
    assert LoraTrainConfig.from_dict(stored, "run r1", drop_unknown=True).batching == "packed"
    with pytest.raises(ConfigError, match="unknown keys"):
        LoraTrainConfig.from_dict(stored, "run.yaml")


# -- length-grouped token budgets -------------------------------------------------------------

def test_grouped_batches_cover_every_row_once_within_the_budget():
    lengths = chat_lengths()
    batches = token_budget_batches(lengths, budget=8 * 1024, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 8 * 1024 for b in batches)
    # steps are full: all but the last batch of each window hold most of a budget
    fill = sorted(len(b) * max(lengths[i] for i in b) / (8 * 1024) for b in batches)
    assert fill[len(fill) // 2] > 0.9, fill[:10]


def test_grouping_removes_most_padding():
    lengths = chat_lengths()
    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    rows_of_8 = [shuffled[i:i + 8] for i in range(0, len(shuffled), 8)]
    grouped = token_budget_batches(lengths, budget=8 * 1024, seed=0)
    assert padding_share(lengths, rows_of_8) > 0.4
    assert padding_share(lengths, grouped) < 0.06
    assert len(grouped) < len(rows_of_8) / 2, "fewer, fuller steps"


def test_grouping_is_seeded_and_batches_are_not_one_corner_of_the_data():
    lengths = chat_lengths()
    assert token_budget_batches(lengths, 4096, seed=1) == token_budget_batches(lengths, 4096, seed=1)
    assert token_budget_batches(lengths, 4096, seed=1) != token_budget_batches(lengths, 4096, seed=2)
    # rows of one length class come from all over the dataset, not from one block of indices
    batch = max(token_budget_batches(lengths, 4096, seed=1), key=len)
    assert max(batch) - min(batch) > len(lengths) / 2


def test_rounded_rows_keep_the_budget_and_bound_the_shapes():
    lengths = chat_lengths()
    batches = token_budget_batches(lengths, budget=8 * 1024, seed=3, multiple=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    shapes = {(len(b), padded_length(max(lengths[i] for i in b), 64)) for b in batches}
    assert all(rows * width <= 8 * 1024 for rows, width in shapes if rows > 1)
    unrounded = {(len(b), max(lengths[i] for i in b)) for b in token_budget_batches(lengths, 8 * 1024, seed=3)}
    assert len(shapes) < len(unrounded) / 3, (len(shapes), len(unrounded))
    assert [padded_length(n, 32) for n in (1, 32, 33, 0)] == [32, 32, 64, 32]
    assert padded_length(33) == 33


def test_a_row_longer_than_the_budget_gets_a_batch_of_its_own():
    assert sorted(map(sorted, token_budget_batches([10, 5000, 10], budget=100, seed=0))) == [[0, 2], [1]]
    assert token_budget_batches([], budget=100, seed=0) == []
    with pytest.raises(ValueError, match="positive"):
        token_budget_batches([1], budget=0, seed=0)


def test_each_epoch_reorders_the_same_batches_biggest_first():
    lengths = chat_lengths(500)
    sampler = LengthGroupedBatches(lengths, budget=2048, seed=7)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(first) == len(second) == len(sampler)
    assert first != second and sorted(map(sorted, first)) == sorted(map(sorted, second))

    def cost(batch):
        return len(batch) * max(lengths[i] for i in batch)

    assert cost(first[0]) == cost(second[0]) == max(cost(b) for b in first)


def test_each_epoch_opens_with_the_shortest_and_the_longest_rows():
    """A GPU compiles for new shapes: the extremes come in the first three steps (the warm-up),
    not at random later."""
    lengths = chat_lengths(2000)
    sampler = LengthGroupedBatches(lengths, budget=4096, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        longest_row = [max(lengths[i] for i in batch) for batch in batches]
        assert min(longest_row) in longest_row[:3] and max(longest_row) in longest_row[:3]
        assert min(longest_row[:3]) <= min(longest_row[3:]) and max(longest_row[:3]) >= max(longest_row[3:])
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    one = LengthGroupedBatches([50, 60], budget=4096, seed=0)
    assert list(one) == [[1, 0]] and len(one) == 1


# -- attention masks --------------------------------------------------------------------------

class Collator:
    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def torch_call(self, examples):
        return {"input_ids": torch.ones_like(self.mask), "attention_mask": self.mask.clone()}


@pytest.mark.parametrize("rows, dropped", [
    ([[1, 1, 1], [1, 1, 1]], True),   # fixed-length rows
    ([[1, 1, 1], [1, 0, 0]], True),   # right padding, trl's
    ([[1, 1, 1], [0, 1, 1]], False),  # left padding: the mask matters
    ([[1, 0, 1], [1, 1, 1]], False),  # a hole in a row
])
def test_only_masks_that_change_nothing_are_dropped(rows, dropped):
    collator = Collator(torch.tensor(rows))
    drop_redundant_attention_masks(collator)
    assert ("attention_mask" not in collator.torch_call([])) is dropped


def test_unsloth_gives_a_right_padded_batch_the_same_loss_without_its_mask(tmp_path, embedded_models):
    """The loss the Trainer sees, through Unsloth's own training forward on the CPU: with the
    mask, without it, and each row on its own (no padding at all) must agree."""
    script = textwrap.dedent("""
        import sys
        import torch
        from qwen3arena.train.isolation import import_unsloth
        FastLanguageModel = import_unsloth().FastLanguageModel
        model, tok = FastLanguageModel.from_pretrained(sys.argv[1], max_seq_length=64, dtype=None,
                                                       load_in_4bit=False)
        model = FastLanguageModel.get_peft_model(model, r=8, lora_alpha=16, lora_dropout=0,
                                                 target_modules=["q_proj", "v_proj"],
                                                 use_gradient_checkpointing="unsloth", random_state=0)
        model.train()
        for module in model.modules():  # make the LoRA active, so the adapter path is checked too
            if hasattr(module, "lora_B"):
                for weight in module.lora_B.values():
                    torch.nn.init.normal_(weight.weight, std=0.02)
        torch.manual_seed(0)
        lengths = [17, 9, 30]
        ids = torch.full((3, 30), tok.pad_token_id)
        mask = torch.zeros(3, 30, dtype=torch.long)
        labels = torch.full((3, 30), -100)
        for row, n in enumerate(lengths):
            ids[row, :n] = torch.randint(10, model.config.vocab_size, (n,))
            mask[row, :n] = 1
            labels[row, :n] = ids[row, :n]
        masked = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
        unmasked = model(input_ids=ids, labels=labels).loss.item()
        rows = [model(input_ids=ids[r:r + 1, :n], labels=labels[r:r + 1, :n]).loss.item() * (n - 1)
                for r, n in enumerate(lengths)]
        alone = sum(rows) / sum(n - 1 for n in lengths)
        # the same rows padded on the left, without a mask: real tokens now see pads (must differ)
        left_ids, left_labels = torch.full_like(ids, tok.pad_token_id), torch.full_like(labels, -100)
        for row, n in enumerate(lengths):
            left_ids[row, 30 - n:], left_labels[row, 30 - n:] = ids[row, :n], labels[row, :n]
        left = model(input_ids=left_ids, labels=left_labels).loss.item()
        print("LOSSES", masked, unmasked, alone, left)
    """)
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script, str(embedded_models.base_dir)], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path,  # Unsloth writes a cache into the cwd
                            env={**os.environ, "PYTHONPATH": str(repo)})
    line = next((l for l in result.stdout.splitlines() if l.startswith("LOSSES")), None)
    assert line, result.stdout[-2000:] + result.stderr[-3000:]
    masked, unmasked, alone, left = map(float, line.split()[1:])
    assert unmasked == pytest.approx(alone, rel=1e-3, abs=1e-3)
    assert masked == pytest.approx(alone, rel=1e-3, abs=1e-3)
    assert abs(left - alone) > 1e-2, "the check can tell a mask that matters"
    print(line)
