"""How conversations become batches (docs/training.md, "Batching").

Three choices, `LoraTrainConfig.batching`:
  padded   a fixed number of rows a step, shuffled, each batch padded to its longest row
  grouped  rows of similar length batched together, as many as fit batch x max_length tokens
           (padded, so every step runs the same kernels as fixed-length rows; CPU and GPU)
  packed   trl packing: whole conversations share rows of max_length (GPU varlen kernel)

Grouped and packed both fill a step with about batch x max_length tokens, so on conversations of
mixed lengths an epoch has fewer, larger steps than with padded rows.

Plain Python with no heavy imports: the app uses it too (the preview's padding figures, the
messages), not only the training process.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

from qwen3arena.train.config import LoraTrainConfig

PACKED_ON_CPU = ("Packed batching needs a GPU: on a CPU Unsloth cannot keep packed conversations apart, "
                 "so the run trains padded rows, a fixed number a step. \"Grouped by length\" fills each "
                 "step on a CPU.")

# Rows are sorted by length within windows of this many steps' worth of tokens: wide enough that
# batches come out nearly padding-free, narrow enough that a batch is not made of one corner of
# the dataset (the order within the dataset still decides which window a row lands in).
GROUPING_WINDOW_STEPS = 32

# Grouped batches on a CPU are padded to a multiple of this many tokens. Every new batch shape
# adds oneDNN kernels to a per-shape cache: unrounded, a run's memory grew with its steps (peak
# RSS 1.0, 1.7, 2.3 and 2.8 GiB after 8, 40, 120 and 300 steps at the tiny shape); rounded to 32
# it held at 1.1 GiB over 120 steps at the same tokens/s (docs/benchmarks.md). On a GPU the
# rows stay unrounded: the padding would cost compute there, and the 8B runs kept 0.99x of
# fixed-length steps.
GROUPED_CPU_MULTIPLE = 32


def grouping_multiple(config: LoraTrainConfig, cuda: bool) -> int:
    """The multiple that grouped batches are padded to on this device (1: not rounded)."""
    return config.pad_to_multiple_of or (1 if cuda else GROUPED_CPU_MULTIPLE)


def batching_args(config: LoraTrainConfig, cuda: bool) -> dict[str, Any]:
    """SFTConfig arguments for how rows become batches."""
    if config.batching == "packed":
        # "bfd" packs whole conversations into rows of max_length and runs them padding-free
        # (position_ids restart per conversation; attention never crosses one). On a CPU Unsloth
        # has no kernel that keeps packed conversations apart and turns packing off.
        return {"packing": True, "packing_strategy": config.packing_strategy,
                "pad_to_multiple_of": config.pad_to_multiple_of}
    args: dict[str, Any] = {"packing": False, "pad_to_multiple_of": config.pad_to_multiple_of}
    if config.batching == "grouped":
        multiple = grouping_multiple(config, cuda)
        args["pad_to_multiple_of"] = multiple if multiple > 1 else None
    padding_free = config.padding_free
    if config.batching == "grouped" or (padding_free is None and cuda):
        # Grouped batches are padded rectangles by design. On a GPU Unsloth would turn
        # padding-free on by itself; its varlen batches skip the per-block compile and ran 0.78x
        # of a bare Unsloth loop on fixed-length rows, against 1.03x padded (docs/benchmarks.md).
        padding_free = False
    if padding_free is not None:
        args["padding_free"] = padding_free
    return args


def padded_length(length: int, multiple: int = 1) -> int:
    """A row's length once the collator pads it to a multiple."""
    length = max(int(length), 1)
    return -(-length // multiple) * multiple if multiple > 1 else length


def token_budget_batches(lengths: Sequence[int], budget: int, seed: int,
                         window_steps: int = GROUPING_WINDOW_STEPS, multiple: int = 1) -> list[list[int]]:
    """Row indices in batches of similar length whose padded size (rows x longest row, rounded
    up to `multiple`) stays within `budget` tokens; a row longer than the budget gets a batch of
    its own.

    The rows are shuffled, cut into windows of about `window_steps` budgets of tokens, and
    sorted by length within each window before the batches are cut, longest first."""
    if budget < 1:
        raise ValueError(f"token budget must be positive, got {budget}")
    sizes = [padded_length(n, multiple) for n in lengths]
    order = list(range(len(sizes)))
    random.Random(seed).shuffle(order)
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        end, tokens = start, 0
        while end < len(order) and (end == start or tokens < window_steps * budget):
            tokens += sizes[order[end]]
            end += 1
        batch: list[int] = []
        for index in sorted(order[start:end], key=lambda i: -sizes[i]):
            # sorted: a batch's first row is its longest
            if batch and (len(batch) + 1) * sizes[batch[0]] > budget:
                batches.append(batch)
                batch = []
            batch.append(index)
        batches.append(batch)
        start = end
    return batches


class LengthGroupedBatches:
    """A DataLoader `batch_sampler` over `token_budget_batches`.

    The grouping is made once, so the Trainer knows the steps per epoch before it starts;
    each epoch then shuffles the order of the batches (`set_epoch`, called by the Trainer
    through accelerate). Every epoch opens with the batches at the edges of the shapes: the one
    with the most padded tokens (a batch that does not fit in memory fails at step 1 rather than
    hours in), then the one with the shortest rows and the one with the longest. On a GPU a new
    shape can compile: torch.compile recompiles a graph for symbolic sizes on the second shape it
    sees, and Triton compiles a kernel again for a length past a threshold; meeting the extremes
    first puts that work in the warm-up instead of stalling a step at random later (a 1.7B run
    stalled 8 s at step 12 and 1.7 s at step 15: docs/benchmarks.md)."""

    def __init__(self, lengths: Sequence[int], budget: int, seed: int, multiple: int = 1) -> None:
        self.batches = token_budget_batches(lengths, budget, seed, multiple=multiple)
        # a batch's first row is its longest
        self._length = [padded_length(lengths[batch[0]], multiple) for batch in self.batches]
        self._cost = [len(batch) * length for batch, length in zip(self.batches, self._length)]
        self.seed = seed
        self.epoch = 0

    def _opening(self) -> list[int]:
        """The batches each epoch starts with: most padded tokens, shortest rows, longest rows."""
        if not self.batches:
            return []
        positions = range(len(self.batches))
        opening = [max(positions, key=self._cost.__getitem__),
                   min(positions, key=self._length.__getitem__),
                   max(positions, key=self._length.__getitem__)]
        return list(dict.fromkeys(opening))  # the same batch can be two of them

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        opening = self._opening()
        order = [position for position in range(len(self.batches)) if position not in opening]
        random.Random(self.seed + 1 + self.epoch).shuffle(order)
        for position in opening + order:
            yield list(self.batches[position])


def drop_redundant_attention_masks(collator: Any) -> None:
    """Removes the attention mask from right-padded batches (trl pads on the right).

    In a causal model a real token attends only to the positions before it, which in a
    right-padded row are all real, and padded positions carry the label -100: the mask changes
    nothing the loss sees. Without it the model runs the plain causal kernel, as for
    fixed-length rows, instead of a masked path. The check runs on the host, before the batch
    moves to the device. Real tokens are then counted as those that are not the pad token."""
    original = getattr(collator, "torch_call", None)
    if original is None:
        return

    def torch_call(examples):
        batch = original(examples)
        mask = batch.get("attention_mask")
        if mask is not None and not mask.is_cuda and mask.dim() == 2 and bool((mask[:, 1:] <= mask[:, :-1]).all()):
            del batch["attention_mask"]
        return batch

    collator.torch_call = torch_call
