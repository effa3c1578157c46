"""What the application layer's actions take and give back: plain dataclasses, one per result.

Every field is JSON-friendly after `codec.plain` (str, numbers, bools, lists, dicts, dates), so the
same value reaches a tab (local call), the CLI (local or through `--app`) and any HTTP client.
Each result carries the facts; the faces word them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qwen3arena.hardware import GpuState
from qwen3arena.train import LengthStats


@dataclass(frozen=True)
class RunPreview:
    """What a run would train on: the rows checked, samples as the model sees them."""

    rows: int
    method: str
    samples: list[list[str]]            # sft: [masked, trained]; dpo: [prompt, chosen, rejected]
    command: str                        # the equivalent shell command (run.yaml + python -m ...)
    lengths: LengthStats | None = None  # sft only
    warnings: list[str] = field(default_factory=list)
    gpus: list[GpuState] = field(default_factory=list)  # free memory now (a vLLM server may share a GPU)
    world_size: int = 1                 # training processes, one a GPU (LoraTrainConfig.gpus resolved here)


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    name: str
    queued_ahead: int = 0               # runs queued before this one


@dataclass(frozen=True)
class RunView:
    """A run as a page or the CLI follows it."""

    run_id: str
    name: str
    status: str
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    fraction: float = 0.0
    stopping: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    last: dict[str, Any] | None = None   # the last step event (lr, tokens/s, DPO margins, ...)
    losses: list[list[float]] = field(default_factory=list)  # [step, loss] pairs
    log_tail: str = ""
    wandb: str | None = None
    adapter: str | None = None           # the adapter directory, once written
    in_arena: bool | None = None         # when registered: published (in the arena, or joins it at the app's start)
    arena_note: str | None = None        # why it did not though the run asked to (a stopped run waits to be published)
    started_at: str | None = None
    final_loss: float | None = None
    steps_done: int | None = None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


@dataclass(frozen=True)
class RunStopped:
    run_id: str
    status: str                          # the run's status now ("cancelled" when it was queued)
    stopping: bool                       # a running run finishing its step and saving its adapter
    message: str                         # the runner's words for it, to show


@dataclass(frozen=True)
class ReusedSettings:
    """An earlier run's settings under the next free checkpoint name."""

    run_id: str
    config: dict[str, Any]               # LoraTrainConfig fields (parent blanked when it is gone)


@dataclass(frozen=True)
class DatasetUploaded:
    path: str
    rows: int
    original_name: str


@dataclass(frozen=True)
class CheckpointView:
    name: str
    in_arena: bool
    base_model: str | None
    dataset: str | None
    round: int | None
    parent: str | None
    final_loss: float | None
    registered: str


@dataclass(frozen=True)
class Exported:
    name: str
    path: str


@dataclass(frozen=True)
class RoundPlan:
    """What "Build round N" would write."""

    round: int
    counts: dict[str, int]
    new_votes: int
    sft_sample: list[dict[str, Any]]
    preference_sample: list[dict[str, Any]]


@dataclass(frozen=True)
class RoundBuilt:
    round: int
    votes: int
    sft_rows: int
    preference_pairs: int
    directory: str


@dataclass(frozen=True)
class BattleExcluded:
    battle_id: str
    excluded: bool


@dataclass(frozen=True)
class FilterChoices:
    models: list[str]
    voters: list[str]
    categories: list[str]
    campaigns: list[tuple[str, str]]     # (name, campaign id)
    checkpoints: list[str]
    criteria: list[str] = field(default_factory=list)  # rubric criteria with a board of their own


@dataclass(frozen=True)
class BoardView:
    """The Scoreboard's table as data: what the API and the CLI get (the tab also draws plots)."""

    votes: int
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str]
    csv: str                             # the same table as a CSV file on the server


@dataclass(frozen=True)
class ScoreboardExport:
    path: str
    votes: int
    models: int


@dataclass(frozen=True)
class DatasetText:
    """A dataset sent as text (JSONL, JSON or CSV) through the API, where no browser upload exists."""

    filename: str
    content: str


@dataclass(frozen=True)
class CampaignDraft:
    """A campaign as the Campaigns form (or an API caller) describes it."""

    name: str
    contestants: list[str]
    source: Literal["shipped", "upload"] = "shipped"
    shipped: str | None = None           # a prompt set in data/prompts
    prompts_jsonl: str | None = None     # uploaded text: one {"prompt", "id"} per line
    upload_name: str | None = None       # the uploaded file's name (recorded as the campaign's source)
    votes_per_prompt: int = 1
    overlap: int = 1
    limit: int | None = None             # use the first N prompts
    rubric: str = ""
    reasons: list[str] = field(default_factory=list)
    criteria: list[str] = field(default_factory=list)   # rubric criteria (slugs) judged A / B / tie besides the vote
    criteria_required: bool = False                     # refuse a vote without every criterion's verdict
    reviewers: list[str] = field(default_factory=list)  # logins it is open to; empty: every labeller


@dataclass(frozen=True)
class CampaignRow:
    campaign_id: str
    name: str
    status: str
    prompts: int
    done: int
    slots: int
    contestants: list[str]
    criteria: list[str] = field(default_factory=list)
    criteria_required: bool = False
    reviewers: list[str] = field(default_factory=list)  # empty: open to every labeller


@dataclass(frozen=True)
class ContestantHealth:
    name: str
    kind: str
    status: str                          # "up", "down: why", "not served"
    endpoint: str


@dataclass(frozen=True)
class ServingStatus:
    """What the Models tab shows: start-up, the CPU, the vLLM server and every contestant's health."""

    startup: str
    cpu: str
    vllm_state: str                      # "disabled" when serving is off in the configuration
    vllm_message: str = ""
    vllm_url: str | None = None
    vllm_pid: int | None = None
    kernels: list[str] = field(default_factory=list)
    log_tail: str = ""
    contestants: list[ContestantHealth] = field(default_factory=list)

    @property
    def contestants_up(self) -> int:
        return sum(c.status == "up" for c in self.contestants)
