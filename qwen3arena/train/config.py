"""The training run's arguments: one typed dataclass, written to YAML next to the run.

The app writes this file and starts `python -m qwen3arena.train run.yaml`; the same file
reproduces the run from a shell.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import yaml

from qwen3arena.errors import Refused
from qwen3arena.hardware import describe_gpu_count
from qwen3arena.config import AT_LEAST_ONE, NOT_NEGATIVE, POSITIVE, Bound, _build, out_of_range

# How rows become batches (train/batching.py): padded rows, length-grouped token budgets, trl packing.
Batching = Literal["padded", "grouped", "packed"]
BATCHINGS: tuple[str, ...] = get_args(Batching)

# transformers' names. Fused AdamW is one multi-tensor kernel per step; Unsloth's own default,
# bitsandbytes' 8-bit AdamW, launches one update per LoRA tensor (392 at Qwen3-1.7B), which
# took ~30 ms of host time a step in an H200 profile and saves only 100-250 MB of LoRA state.
Optim = Literal["adamw_torch_fused", "adamw_torch", "adamw_8bit", "paged_adamw_8bit"]
OPTIMS: tuple[str, ...] = get_args(Optim)

# sft: trl SFTTrainer on conversations; dpo: trl DPOTrainer on preference pairs
Method = Literal["sft", "dpo"]
METHODS: tuple[str, ...] = get_args(Method)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The numbers a run allows, field -> range. Outside them a run "succeeds" with a diverged or
# untrainable adapter (a learning rate of 1e9), or fails minutes later in a model load.
RANGES: dict[str, Bound] = {
    # AdamW on LoRA trains at 1e-5 to 1e-2; above 1 every step overshoots
    "learning_rate": Bound(0, 1, open_low=True),
    # Qwen3's smallest hidden size is 1024: a rank of 1024 is already a full-rank update of its
    # projections, so more only adds memory. vLLM serves ranks up to 512 (vllm.max_lora_rank).
    "rank": Bound(1, 1024),
    "alpha": POSITIVE,
    "dropout": Bound(0, 1, open_high=True),  # 1 would drop every LoRA activation
    "weight_decay": Bound(0, 1),
    "num_train_epochs": NOT_NEGATIVE,        # 0 with max_steps > 0: the steps decide
    "per_device_train_batch_size": AT_LEAST_ONE,
    "gradient_accumulation_steps": AT_LEAST_ONE,
    "max_length": Bound(16),                 # the chat template alone takes about a dozen tokens
    "warmup_steps": NOT_NEGATIVE,
    "seed": Bound(0, 2**32 - 1),             # numpy's seed range (transformers seeds numpy too)
    "beta": POSITIVE,                        # DPO: 0 would let the policy ignore the reference
    "pad_to_multiple_of": AT_LEAST_ONE,
}


class RunRejected(Refused, ValueError):
    """The run cannot be queued or started; the message says why and is safe to show."""


@dataclass
class LoraTrainConfig:
    """One LoRA run (SFT or DPO). Field names follow trl/peft where they exist."""

    name: str                      # the checkpoint name this run registers
    base_model: str                # local directory or hub id
    dataset: str                   # JSONL / JSON / CSV / Parquet in trl's formats
    output_dir: str
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_PROJECTIONS))
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "linear"
    optim: Optim = "adamw_torch_fused"
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    max_steps: int = -1            # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    load_in_4bit: bool = False     # QLoRA; needs a CUDA GPU
    answers_only: bool = True      # loss on the final assistant answer only
    # padded: fixed rows a step; grouped: similar lengths up to batch x max_length tokens a step;
    # packed: conversations share full-length rows (GPU). See train/batching.py.
    batching: Batching = "padded"
    packing_strategy: str = "bfd"  # trl, for "packed": "bfd" keeps conversations whole (padding-free rows)
    padding_free: bool | None = None  # "padded" only; None: padded on a GPU, Unsloth's choice on the CPU
    pad_to_multiple_of: int | None = None  # bounds distinct batch shapes (grouped on a CPU: 32 if unset)
    cudnn_attention: bool = False  # GPU: let SDPA use cuDNN attention (off measured faster on H100)
    gradient_checkpointing: bool = True
    warmup_steps: int = 0
    seed: int = 3407
    wandb: bool = False            # offline (local, syncable) without WANDB_API_KEY
    wandb_project: str = "qwen3arena"
    wandb_run_name: str | None = None
    parent: str | None = None      # checkpoint this round continues from (lineage)
    round: int | None = None
    method: Method = "sft"         # sft: trl SFTTrainer; dpo: trl DPOTrainer on preference pairs
    beta: float = 0.1              # DPO: how far the policy may move from the reference
    init_adapter: str | None = None  # adapter directory whose weights start this run (the parent's)
    # data-parallel LoRA: N processes, one a GPU (torchrun, NCCL), or "all" of this host's GPUs.
    # per_device_train_batch_size is a GPU's: an update sees batch x gpus x accumulation rows.
    gpus: int | Literal["all"] = 1

    def __post_init__(self) -> None:
        """The rules every way in (form, YAML, CLI, API, a stored run) is held to, as trl's
        configs check themselves. An empty name is allowed here (a form previews before it is
        named); check_runnable() demands one."""
        if self.name and not NAME_PATTERN.match(self.name):
            raise RunRejected("Checkpoint name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        if self.round is not None and self.round < 1:
            raise RunRejected("Round: use 1 or more, or leave it empty (a run outside the rounds).")
        for name, bound in RANGES.items():
            error = out_of_range(name, getattr(self, name), bound)
            if error:
                raise RunRejected(error + ".")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise RunRejected("Set epochs above 0 or max steps above 0.")
        if self.method not in METHODS:
            raise RunRejected(f"Method {self.method!r}: choose one of {', '.join(METHODS)}.")
        if self.batching not in BATCHINGS:
            raise RunRejected(f"Batching {self.batching!r}: choose one of {', '.join(BATCHINGS)}.")
        if self.optim not in OPTIMS:
            raise RunRejected(f"Optimizer {self.optim!r}: choose one of {', '.join(OPTIMS)}.")
        if self.method == "dpo" and self.batching != "padded":
            raise RunRejected(f"Batching {self.batching!r} is for SFT; DPO batches preference pairs as padded "
                              "rows: choose Padded rows.")
        if self.gpus != "all" and (isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1):
            raise RunRejected(f"GPUs {self.gpus!r}: use a whole number of 1 or more, or 'all' (every GPU of "
                              "this machine).")
        if self.batching == "grouped" and self.padding_free:
            raise RunRejected("Batching 'grouped' pads its batches; it cannot be combined with padding_free.")

    def check_runnable(self) -> None:
        """What a run needs besides valid fields: a name, and the local files it starts from."""
        if not self.name:
            raise RunRejected("Checkpoint name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        base = Path(self.base_model).expanduser()
        if self.base_model.startswith(("/", ".", "~")) and not (base / "config.json").exists():
            raise RunRejected(f"Base model {self.base_model!r}: no model there (config.json missing).")
        if self.init_adapter and not (Path(self.init_adapter) / "adapter_config.json").exists():
            raise RunRejected(f"Parent adapter {self.init_adapter!r}: no adapter there (adapter_config.json missing).")

    def world_size(self, cuda_gpus: int) -> int:
        """The processes this run trains with on a machine with `cuda_gpus` CUDA GPUs (see
        hardware.cuda_device_count): 1, or one a GPU. Several GPUs the machine lacks are refused
        here, before anything starts; "all" on one GPU is that GPU."""
        if self.gpus == 1:
            return 1
        if self.gpus == "all":
            if cuda_gpus < 1:
                raise RunRejected("gpus: all needs CUDA GPUs; this machine has none (CPU). Use gpus: 1.")
            return cuda_gpus
        if cuda_gpus < self.gpus:
            raise RunRejected(f"gpus: {self.gpus} needs {self.gpus} CUDA GPUs; this machine has "
                              f"{describe_gpu_count(cuda_gpus)}. Use gpus: 1" +
                              (f" to {cuda_gpus}, or all." if cuda_gpus > 1 else "."))
        return self.gpus

    def batch_summary(self, world_size: int) -> str:
        """What one optimizer step takes across the GPUs, in words (the preview and the run's note)."""
        per_gpu = self.per_device_train_batch_size
        accumulation = (f" x {self.gradient_accumulation_steps} accumulation steps"
                        if self.gradient_accumulation_steps > 1 else "")
        if self.batching == "padded":
            rows = per_gpu * self.gradient_accumulation_steps * world_size
            return (f"data-parallel on {world_size} GPUs: a global batch of {rows} rows a step "
                    f"({per_gpu} a GPU x {world_size} GPUs{accumulation})")
        return (f"data-parallel on {world_size} GPUs: each step holds {world_size} GPUs{accumulation} x about "
                f"{per_gpu} x {self.max_length} tokens ({self.batching} batches)")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "LoraTrainConfig":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {}, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str, drop_unknown: bool = False) -> "LoraTrainConfig":
        """Checked against the field types; unknown keys are an error naming `where`, or, with
        `drop_unknown` (a stored run that an older version wrote), left out. Keys an older
        version used are read first either way."""
        data = dict(data)
        if "packing" in data:  # run files written before `batching` replaced `packing: bool`
            if data.pop("packing") is True:
                data.setdefault("batching", "packed")
        if drop_unknown:
            data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return _build(cls, data, where)

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False))
        return path
