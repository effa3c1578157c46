"""The application layer: one method per thing a person can do, typed in and out.

The faces (Gradio tabs, `gr.api`, the CLI) call these and only format the results; they never
decide anything from a message's wording. Every refusal is a `Refused` (qwen3arena.errors), whose
message is safe to show and whose `kind` is stable, so the CLI through `--app` sees the very
error a local call raises (api.remote). Rules live on the configs and services below; this layer
composes them (a round's run needs the harvester and the checkpoints) and turns their records
into results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from qwen3arena.api.types import (
    BattleExcluded, BoardView, CampaignDraft, CampaignRow, CheckpointView, ContestantHealth, DatasetText,
    DatasetUploaded, FilterChoices, ServingStatus, Exported, ReusedSettings, RoundBuilt, RoundPlan, RunPreview,
    RunStarted, RunStopped, RunView, ScoreboardExport,
)
from qwen3arena.campaigns import Progress as CampaignProgress
from qwen3arena.campaigns import PromptFileError, load_shipped, parse_prompt_jsonl
from qwen3arena.checkpoints import Registered
from qwen3arena.config import REPO_ROOT
from qwen3arena import hardware
from qwen3arena.hardware import cpu_info, gpu_states
from qwen3arena.harvest import (
    BattleFilters, BattleRow, HarvestError, HarvestRules, LineageEntry, RoundExport, RoundRecord, lineage,
)
from qwen3arena.evals import EvalJob, EvalRejected
from qwen3arena.jobs import JobRecord
from qwen3arena.judge import JudgeError
from qwen3arena.runtime import Runtime
from qwen3arena.serve import AdapterError
from qwen3arena.store import RunRecord
from qwen3arena.scoreboard import BoardFilters, Scoreboard, build_scoreboard
from qwen3arena.train import (
    PACKED_ON_CPU, LoraTrainConfig, RunRejected, accept_upload, grouping_multiple, length_stats, load_conversations,
    load_preferences, render_preference_preview, render_preview,
)
from qwen3arena.train.launch import training_command, world_size_of

SHIPPED_DATA = REPO_ROOT / "data" / "sft"
PROMPT_SET = REPO_ROOT / "data" / "prompts" / "kitchen.txt"  # what "Judge the prompt set" asks both models
DPO_LEARNING_RATE = 5e-5  # a round's DPO run starts lower than SFT's 2e-4: it only nudges the policy


def cuda_available() -> bool:
    """Whether a CUDA GPU is visible (hardware.cuda_device_count asks once)."""
    return hardware.cuda_device_count() > 0


class Actions:
    """What an admin (or the CLI) can do with a running app's services."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._export_lock = threading.Lock()

    # -- datasets ----------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Shipped sets, uploads and every round's files, as paths a run accepts."""
        files = sorted(SHIPPED_DATA.glob("*.jsonl"))
        uploads = self._uploads_dir()
        if uploads.exists():
            files += sorted(p for p in uploads.iterdir() if p.is_file())
        files += self.runtime.harvester.round_files()
        return [str(p) for p in files]

    def shipped_datasets(self) -> list[str]:
        return [str(p) for p in sorted(SHIPPED_DATA.glob("*.jsonl"))]

    def upload_dataset(self, path: str) -> DatasetUploaded:
        """Keeps an uploaded file among the datasets if it is trainable (SFT or DPO); else nothing
        is kept and DatasetError names the bad row."""
        upload = accept_upload(path, self._uploads_dir(), time.strftime("%Y%m%d-%H%M%S"))
        return DatasetUploaded(str(upload.path), upload.rows, Path(path).name)

    def add_dataset(self, dataset: DatasetText) -> DatasetUploaded:
        """A dataset sent as text (the HTTP API's upload), kept under the same rules as a file."""
        name = Path(dataset.filename or "dataset.jsonl").name
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / name
            source.write_text(dataset.content, encoding="utf-8")
            return self.upload_dataset(str(source))

    def _uploads_dir(self) -> Path:
        return self.runtime.settings.home / "datasets"

    # -- training runs -----------------------------------------------------------------------

    def run_config(self, fields: dict[str, Any]) -> LoraTrainConfig:
        """A run's settings from a form or a payload: LoraTrainConfig checks every field; a
        parent must be a registered checkpoint, whose adapter then starts the run."""
        from qwen3arena.api.codec import typed

        fields = {"output_dir": "", **fields}
        parent = fields.get("parent") or None
        if parent and self.runtime.checkpoints.adapter_path(parent) is None:
            raise RunRejected(f"Continue from checkpoint: {parent!r} is not a registered LoRA checkpoint.")
        if not fields.get("base_model"):
            raise RunRejected("Choose a base model.")
        if not fields.get("dataset"):
            raise RunRejected("Choose or upload a dataset.")
        if "target_modules" in fields and not fields["target_modules"]:
            raise RunRejected("Choose at least one target module.")
        fields["init_adapter"] = self.runtime.checkpoints.adapter_path(parent)
        return typed(LoraTrainConfig, fields, "run")

    def preview_run(self, config: LoraTrainConfig) -> RunPreview:
        """Checks the dataset and shows rows as the model will see them, before a run starts."""
        world = world_size_of(config)  # several GPUs on a machine without them: refused as Start would
        dpo = config.method == "dpo"
        rows = load_preferences(config.dataset) if dpo else load_conversations(config.dataset)
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(config.base_model)
        except OSError as exc:
            raise RunRejected(f"Base model {config.base_model!r} cannot be loaded here: {exc}") from None
        if dpo:
            samples = [list(s) for s in render_preference_preview(rows, tokenizer)]
        else:
            samples = [list(s) for s in render_preview(rows, tokenizer, config.answers_only)]
        cuda = cuda_available()
        warnings = [PACKED_ON_CPU] if config.batching == "packed" and not cuda else []
        lengths = None if dpo else length_stats(rows, tokenizer, config.max_length,
                                                config.per_device_train_batch_size,
                                                grouped_multiple=grouping_multiple(config, cuda))
        settings = yaml.safe_dump({k: v for k, v in dataclasses.asdict(config).items() if k != "output_dir"},
                                  sort_keys=False)
        command = (f"cat > run.yaml <<'EOF'\n{settings}output_dir: runs/{config.name or 'NAME'}\nEOF\n"
                   + shlex.join(training_command("run.yaml", world_size=world, python="python")))
        gpus = gpu_states(self.runtime.server.status().pid) if cuda else []
        return RunPreview(len(rows), config.method, samples, command, lengths, warnings, gpus, world)

    def start_run(self, config: LoraTrainConfig, join_arena: bool = True) -> RunStarted:
        """Queues a run; RunRejected or DatasetError say why nothing was queued."""
        runner = self.runtime.runner
        run = runner.submit(config, join_arena=join_arena, taken_names=self._model_names())
        return RunStarted(run.run_id, run.name, queued_ahead=max(len(runner.queued()) - 1, 0))

    def stop_run(self, run_id: str) -> RunStopped:
        """Cancels a queued run or stops a running one cleanly (its adapter so far is saved)."""
        message = self.runtime.runner.stop(run_id)
        view = self.run_status(run_id)
        return RunStopped(run_id, view.status, view.stopping, message)

    def reuse_run(self, run_id: str) -> ReusedSettings:
        """An earlier run's settings under a new checkpoint name, ready to change and start."""
        config = self.runtime.runner.settings_of(run_id, self._model_names())
        if config.parent and self.runtime.store.get_model(config.parent) is None:
            config = dataclasses.replace(config, parent=None, init_adapter=None)
        fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("output_dir", "init_adapter")}
        return ReusedSettings(run_id, fields)

    def run_status(self, run_id: str) -> RunView:
        progress = self.runtime.runner.progress(run_id)
        if progress is None:
            raise RunRejected(f"No run {run_id!r}.")
        run, last = progress.run, progress.last or {}
        adapter = run.output_dir if (run.status in ("succeeded", "stopped")
                                     and (Path(run.output_dir) / "adapter_config.json").exists()) else None
        return dataclasses.replace(
            _run_view(run), step=last.get("step"), total=last.get("total"), loss=last.get("loss"),
            fraction=progress.fraction, stopping=progress.stopping, notes=list(progress.notes), last=progress.last,
            losses=[[e["step"], e["loss"]] for e in progress.steps], log_tail=progress.log_tail, adapter=adapter)

    def runs(self, limit: int = 30) -> list[RunView]:
        """The latest runs, newest first, without their step events (a table's worth)."""
        return [_run_view(r) for r in self.runtime.runner.runs(limit)]

    def _model_names(self) -> set[str]:
        return {m.name for m in self.runtime.store.list_models()}

    # -- checkpoints -------------------------------------------------------------------------

    def served_bases(self) -> list[str]:
        return [p for p in [self.runtime.checkpoints.served_base] if p]

    def checkpoints(self) -> list[CheckpointView]:
        in_arena = set(self.runtime.pool.names())
        views = []
        for m in self.runtime.checkpoints.adapters():
            meta = m.metadata
            loss = meta.get("final_loss")
            views.append(CheckpointView(
                name=m.name, in_arena=m.name in in_arena, base_model=m.base_model, dataset=meta.get("dataset"),
                round=meta.get("round"), parent=meta.get("parent"),
                final_loss=loss if isinstance(loss, float) else None,
                registered=m.created_at.strftime("%Y-%m-%d %H:%M")))
        return views

    def publish(self, name: str) -> Registered:
        return self.runtime.checkpoints.publish(name)

    def unpublish(self, name: str) -> Registered:
        self.runtime.checkpoints.unpublish(name)
        return Registered(name, in_arena=False)

    def export_checkpoint(self, name: str) -> Exported:
        return Exported(name, str(self.runtime.checkpoints.export(name)))

    # -- harvest and rounds ------------------------------------------------------------------

    def battles(self, filters: BattleFilters = BattleFilters()) -> list[BattleRow]:
        """Voted battles, newest last (admins only: the models are revealed)."""
        return self.runtime.harvester.browse(filters)

    def battle(self, battle_id: str) -> BattleRow | None:
        return self.runtime.harvester.battle(battle_id.strip()) if battle_id and battle_id.strip() else None

    def rounds(self) -> list[RoundRecord]:
        return self.runtime.harvester.rounds()

    def next_round(self) -> int:
        return self.runtime.harvester.next_round()

    def lineage(self) -> list[LineageEntry]:
        """Each round's checkpoint with its rating and interval, against its parent's."""
        return lineage(self.runtime.store)

    def filter_choices(self) -> FilterChoices:
        """What the Data and Scoreboard tabs' filters offer."""
        runtime = self.runtime
        return FilterChoices(
            models=[m.name for m in runtime.store.list_models()], voters=runtime.harvester.voters(),
            categories=runtime.harvester.category_names(),
            campaigns=[(c.name, c.campaign_id) for c in runtime.campaigns.list_campaigns()],
            checkpoints=[c.name for c in self.runtime.checkpoints.adapters()],
            criteria=runtime.campaigns.criteria_names())

    def preview_round(self, rules: HarvestRules = HarvestRules(),
                      filters: BattleFilters = BattleFilters()) -> RoundPlan:
        plan = self.runtime.harvester.preview(rules, filters)
        return RoundPlan(plan.round, dict(plan.counts), plan.new_votes, plan.sft_rows[:2], plan.preference_rows[:2])

    def build_round(self, rules: HarvestRules = HarvestRules(), filters: BattleFilters = BattleFilters(),
                    parent: str | None = None, created_by: str = "admin") -> RoundBuilt:
        record = self.runtime.harvester.build_round(rules, filters, created_by=created_by, parent=parent or None)
        return RoundBuilt(record.round, len(record.vote_ids), record.counts.get("sft", 0),
                          record.counts.get("preference", 0), record.directory)

    def round_run_config(self, number: int, method: str = "sft", parent: str | None = None,
                         name: str | None = None, **overrides: Any) -> LoraTrainConfig:
        """The training run of round N: its data, the parent checkpoint to go on from (its
        adapter's weights), the served base. `overrides` are LoraTrainConfig fields."""
        record = self.runtime.harvester.get_round(number)
        parent = parent if parent is not None else record.parent
        if parent and self.runtime.store.get_model(parent) is None:
            raise HarvestError(f"Parent checkpoint {parent!r} is not registered.")
        data = record.preference_path if method == "dpo" else record.sft_path
        if not data.exists() or not data.read_text().strip():
            kind = "preference pairs" if method == "dpo" else "SFT rows"
            raise HarvestError(f"Round {number} has no {kind}; choose the other method.")
        base = overrides.pop("base_model", None) or self.runtime.checkpoints.served_base
        if not base:
            raise HarvestError("The base model is not ready yet; wait until the models have started.")
        defaults: dict[str, Any] = {"learning_rate": DPO_LEARNING_RATE} if method == "dpo" else {}
        return self.run_config({
            **defaults, **overrides, "name": name or f"round{number}-{method}", "base_model": base,
            "dataset": str(data), "method": method, "parent": parent or None, "round": number})

    def train_round(self, number: int, method: str = "sft", parent: str | None = None, name: str | None = None,
                    overrides: dict[str, Any] | None = None, publish: bool = True) -> RunStarted:
        """Queues round N's training run (the CLI's `train-round`, locally or through the app)."""
        return self.start_run(self.round_run_config(number, method, parent, name, **(overrides or {})),
                              join_arena=publish)

    def export_round(self, number: int, repo_id: str | None = None) -> RoundExport:
        out = self.runtime.settings.home / "exports" / f"round-{int(number):03d}-hf"
        return self.runtime.harvester.export_hf(int(number), out, repo_id=repo_id or None)

    def exclude_battle(self, battle_id: str, reason: str = "excluded", by: str = "admin") -> BattleExcluded:
        self.runtime.harvester.exclude(battle_id.strip(), reason or "excluded", by=by)
        return BattleExcluded(battle_id.strip(), True)

    def include_battle(self, battle_id: str) -> BattleExcluded:
        self.runtime.harvester.include(battle_id.strip())
        return BattleExcluded(battle_id.strip(), False)

    # -- judge and benchmarks (background jobs: they outlive the request that starts them) ----

    def judge_battles(self) -> JobRecord:
        """Judges the voted battles the current judge has not judged yet; JudgeError if a judge
        job is already running or the judge is not configured."""
        runs = self.runtime.judge_runs
        return runs.get(runs.start_battles())

    def judge_prompt_set(self, candidate: str, baseline: str) -> JobRecord:
        """Both models answer the shipped prompt set; the judge compares them."""
        if not candidate or not baseline or candidate == baseline:
            raise JudgeError("Choose two different models.")
        runs = self.runtime.judge_runs
        return runs.get(runs.start_prompt_set(self._contestant(candidate), self._contestant(baseline), PROMPT_SET))

    def judge_job(self, job_id: str | None = None) -> JobRecord | None:
        """A judge job by id, or the newest one (a page re-attaching after it was closed)."""
        runs = self.runtime.judge_runs
        return runs.get(job_id) if job_id else runs.latest()

    def start_benchmark(self, model: str, limit: int | None = None) -> EvalJob:
        """Benchmarks an arena model with EvalScope on the shipped datasets (EvalRejected: nothing queued)."""
        if not model:
            raise EvalRejected("Choose a model.")
        contestant = self._contestant(model)
        evals = self.runtime.evals
        job_id = evals.start(model, contestant.endpoint.base_url, limit=limit or None,
                             api_key=contestant.endpoint.api_key)
        return evals.get(job_id)

    def benchmark(self, job_id: str | None = None) -> EvalJob | None:
        """A benchmark job by id, or the newest one, running or finished (also of an earlier app)."""
        evals = self.runtime.evals
        return evals.get(job_id) if job_id else evals.latest()

    def benchmark_log(self, job_id: str) -> str:
        return self.runtime.evals.log_tail(job_id)

    def arena_models(self) -> list[str]:
        return self.runtime.pool.names()

    def _contestant(self, name: str):
        try:
            return self.runtime.pool.get(name)
        except KeyError:
            raise AdapterError(f"No model {name!r} in the arena.") from None

    # -- labelling campaigns -----------------------------------------------------------------

    def campaigns(self) -> list[CampaignRow]:
        service = self.runtime.campaigns
        rows = []
        for c in service.list_campaigns():
            p = service.progress(c.campaign_id)
            rows.append(CampaignRow(c.campaign_id, c.name, c.status, c.prompts, p.done, p.slots, list(c.contestants),
                                    list(c.criteria), c.criteria_required, list(c.reviewers)))
        return rows

    def create_campaign(self, draft: CampaignDraft, created_by: str | None = None) -> CampaignRow:
        """Reads the draft's prompts (a shipped set or uploaded JSONL; PromptFileError names each
        bad line) and creates the campaign (CampaignError says what is missing)."""
        limit = self.runtime.settings.campaigns.max_prompts
        if draft.source == "upload":
            if not draft.prompts_jsonl:
                raise PromptFileError("Upload a JSONL file of prompts first.")
            prompts = parse_prompt_jsonl(draft.prompts_jsonl, limit)
            origin = draft.upload_name or "upload"
        else:
            prompts = load_shipped(draft.shipped or "", limit)
            origin = draft.shipped
        if draft.limit:
            prompts = prompts[:draft.limit]
        campaign = self.runtime.campaigns.create(
            draft.name, prompts, list(draft.contestants), self.runtime.pool.names(), draft.votes_per_prompt,
            draft.overlap, draft.rubric, list(draft.reasons), created_by=created_by, prompt_source=origin,
            criteria=list(draft.criteria), criteria_required=draft.criteria_required, reviewers=list(draft.reviewers))
        return self._campaign_row(campaign.campaign_id)

    def campaign_progress(self, campaign_id: str) -> CampaignProgress:
        """Totals, per-labeller counts and agreement between labellers, overall and per rubric
        criterion (names contestants: admin)."""
        return self.runtime.campaigns.progress(campaign_id)

    def toggle_campaign(self, campaign_id: str) -> CampaignRow:
        """Closes an open campaign, reopens a closed one."""
        service = self.runtime.campaigns
        campaign = service.get(campaign_id)
        service.set_status(campaign_id, "closed" if campaign.status == "open" else "open")
        return self._campaign_row(campaign_id)

    def _campaign_row(self, campaign_id: str) -> CampaignRow:
        return next(row for row in self.campaigns() if row.campaign_id == campaign_id)

    # -- serving -----------------------------------------------------------------------------

    def serving_status(self) -> ServingStatus:
        runtime = self.runtime
        kinds = {m.name: m.kind for m in runtime.store.list_models()}
        contestants = [ContestantHealth(name, kinds.get(name, "?"), state, runtime.pool.get(name).endpoint.base_url)
                       for name, state in runtime.pool.health().items()]
        base = ServingStatus(runtime.progress, cpu_info().summary(), "disabled", contestants=contestants)
        if runtime.server is None:
            return base
        status = runtime.server.status()
        return dataclasses.replace(base, vllm_state=status.state, vllm_message=status.message, vllm_url=status.url,
                                   vllm_pid=status.pid, log_tail=status.log_tail,
                                   kernels=list(status.kernels) if status.state == "ready" else [])

    def restart_server(self) -> ServingStatus:
        """Restarts vLLM (about a minute on a CPU); the served adapters are loaded again."""
        if self.runtime.server is None:
            raise AdapterError("vLLM serving is disabled in the configuration.")
        self.runtime.restart_server()
        return self.serving_status()

    # -- scoreboard --------------------------------------------------------------------------

    def scoreboard(self, filters: BoardFilters = BoardFilters(), category: str | None = None) -> Scoreboard:
        """The board under the Scoreboard's filters; `category` (a prompt category) narrows it to
        the battles whose first prompt is in that category."""
        return build_scoreboard(self.runtime.store, self._narrowed(filters, category))

    def board(self, filters: BoardFilters = BoardFilters(), category: str | None = None) -> BoardView:
        """The ratings table with its notes, and the CSV of it."""
        board = self.scoreboard(filters, category)
        exported = self.export_scoreboard(filters, category, board)
        table = board.table.astype(object).where(board.table.notna(), None)
        return BoardView(board.n_votes, [str(c) for c in table.columns], table.values.tolist(), list(board.notes),
                         exported.path)

    def export_scoreboard(self, filters: BoardFilters = BoardFilters(), category: str | None = None,
                          board: Scoreboard | None = None) -> ScoreboardExport:
        """The board as CSV under exports/, one file per filter setting, replaced atomically (a
        page refreshing every 30 s must not pile up files, nor read a half-written one). `board`:
        the one already built for these filters, so it is not computed twice."""
        board = board if board is not None else self.scoreboard(filters, category)
        key = hashlib.sha256(repr((filters, category)).encode()).hexdigest()[:12]
        path = self.runtime.settings.home / "exports" / f"scoreboard-{key}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{threading.get_ident()}.tmp")
        board.table.to_csv(partial, index=False)
        os.replace(partial, path)
        return ScoreboardExport(str(path), board.n_votes, len(board.table))

    def _narrowed(self, filters: BoardFilters, category: str | None) -> BoardFilters:
        voter = (filters.voter or "").strip() or None
        if not category:
            return dataclasses.replace(filters, voter=voter)
        in_category = self.runtime.harvester.battle_ids(BattleFilters(category=category))
        if filters.battle_ids is not None:
            in_category = in_category & filters.battle_ids
        return dataclasses.replace(filters, voter=voter, battle_ids=in_category)


def _run_view(run: RunRecord) -> RunView:
    """What a run's stored record says, before its events are read."""
    checkpoint = run.metrics.get("checkpoint") or {}  # what registering did (TrainingRunner)
    in_arena = bool(checkpoint.get("in_arena") or checkpoint.get("joins_at_start")) if checkpoint else None
    return RunView(run_id=run.run_id, name=run.name, status=run.status, error=run.error, wandb=run.wandb,
                   started_at=run.started_at.strftime("%Y-%m-%d %H:%M") if run.started_at else None,
                   final_loss=run.metrics.get("final_loss"), steps_done=run.metrics.get("steps"),
                   in_arena=in_arena, arena_note=checkpoint.get("reason"))
