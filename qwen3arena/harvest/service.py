"""Browsing voted battles and building round datasets from them.

A round is written once, versioned, under datasets/rounds/round-NNN/ (trl-format JSONL that
`datasets.load_dataset("json", ...)` reads), with a manifest that lists exactly the votes it
used, so a vote cast while the round is being built is simply not in it. The directory is
written under a temporary name and renamed, then recorded in DuckDB: a crash leaves no
half-written round behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from qwen3arena.errors import Refused
from qwen3arena.harvest.rules import Harvest, HarvestRules, VotedBattle, harvest, mix
from qwen3arena.harvest.store import HarvestStore, RoundRecord
from qwen3arena.judge import JudgeStore
from qwen3arena.store import Store, utcnow

JudgeFilter = Literal["any", "agrees", "disagrees", "no verdict"]
UNCATEGORIZED = "uncategorized"


class HarvestError(Refused, ValueError):
    """The round cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class BattleFilters:
    """What the Data tab narrows the voted battles to; a round is built from the same set."""

    outcomes: tuple[str, ...] = ()        # empty: every outcome
    model: str | None = None              # either side
    voter: str | None = None
    category: str | None = None
    judge: JudgeFilter = "any"
    campaign: str | None = None           # a labelling campaign's id
    include_excluded: bool = True         # browsing shows them (marked); harvesting never uses them


@dataclass(frozen=True)
class BattleRow:
    """One voted battle as the Data tab lists it (admins only: models are revealed)."""

    battle: VotedBattle
    category: str
    prompt: str
    campaign_id: str | None = None

    @property
    def judge_agrees(self) -> bool | None:
        b = self.battle
        if b.judge_outcome is None:
            return None
        return b.judge_outcome == ("tie" if b.outcome == "both_bad" else b.outcome)


@dataclass
class RoundPreview:
    harvest: Harvest
    sft_rows: list[dict[str, Any]]
    preference_rows: list[dict[str, Any]]
    counts: dict[str, int]
    new_votes: int
    round: int


@dataclass(frozen=True)
class RoundExport:
    """Where a round was saved as a Hugging Face dataset, and whether it reached the Hub."""

    round: int
    path: str
    kinds: list[str]                   # the parts written: "sft", "preference"
    pushed: bool = False
    push_error: str | None = None      # the files are saved either way
    repo_id: str | None = None
    needs_token: bool = False          # no HF_TOKEN: saved only


class Harvester:
    """The Data tab's and the CLI's service: browse, exclude, preview and build rounds."""

    def __init__(self, store: Store, rounds_dir: Path, categories: Mapping[str, str] | None = None):
        self.store = store
        self.tables = HarvestStore(store)
        self.rounds_dir = Path(rounds_dir)
        self.categories = {_prompt_key(k): v for k, v in (categories or {}).items()}
        self._build_lock = threading.Lock()

    # -- browsing ---------------------------------------------------------------------------

    def browse(self, filters: BattleFilters = BattleFilters(), limit: int | None = None) -> list[BattleRow]:
        """Voted battles, oldest first, narrowed by the filters."""
        rows = [row for row in self._rows(with_judge=True) if _matches(row, filters)]
        return rows[-limit:] if limit else rows

    def battle_ids(self, filters: BattleFilters) -> frozenset[str]:
        """The voted battles the filters keep (the Scoreboard narrows its votes to them)."""
        rows = self._rows(with_judge=filters.judge != "any")  # the judge's table only when filtered on
        return frozenset(row.battle.battle_id for row in rows if _matches(row, filters))

    def battle(self, battle_id: str) -> BattleRow | None:
        for row in self._rows(with_judge=True, battle_id=battle_id):
            return row
        return None

    def voters(self) -> list[str]:
        return self.store.voters()

    def category_names(self) -> list[str]:
        return sorted({*self.categories.values(), UNCATEGORIZED})

    def exclude(self, battle_id: str, reason: str, by: str | None = None) -> None:
        """Leaves a voted battle out of every future round (its vote still counts in ratings)."""
        if not self.tables.exclude(battle_id, reason.strip() or "excluded", by, utcnow()):
            raise HarvestError("Only voted battles can be excluded; this id has no vote.")

    def include(self, battle_id: str) -> None:
        self.tables.include(battle_id)

    def _rows(self, with_judge: bool, battle_id: str | None = None) -> list[BattleRow]:
        judged = {j.battle_id: j.outcome for j in JudgeStore(self.store).list_judgements()
                  if j.battle_id and j.outcome is not None} if with_judge else {}
        out = []
        for battle, campaign_id in self.tables.voted_battles(judged, battle_id):
            prompt = next((m["content"] for m in battle.conversation_a if m.get("role") == "user"), "")
            out.append(BattleRow(battle, self.categories.get(_prompt_key(prompt), UNCATEGORIZED), prompt,
                                 campaign_id))
        return out

    # -- rounds -----------------------------------------------------------------------------

    def preview(self, rules: HarvestRules = HarvestRules(),
                filters: BattleFilters = BattleFilters()) -> RoundPreview:
        """What "Build round N" would write now: counts and the rows themselves."""
        battles = [row.battle for row in self.browse(dataclasses.replace(filters, include_excluded=True))]
        result = harvest(battles, rules)
        previous = self.rounds()
        sft, preference = [r.row for r in result.sft], [r.row for r in result.preference]
        counts = {**result.counts(), "sft from votes": len(sft), "preference from votes": len(preference)}
        if rules.include_previous_rounds and previous:
            earlier_sft = [row for r in previous for row in _read_jsonl(r.sft_path)]
            earlier_pref = [row for r in previous for row in _read_jsonl(r.preference_path)]
            sft, dropped_sft = mix(sft, earlier_sft)
            preference, dropped_pref = mix(preference, earlier_pref)
            counts["sft from earlier rounds"] = len(earlier_sft) - dropped_sft
            counts["preference from earlier rounds"] = len(earlier_pref) - dropped_pref
        if rules.base_dataset:
            from qwen3arena.train import DatasetError, load_conversations

            try:
                base_rows = load_conversations(rules.base_dataset, min_rows=1)
            except DatasetError as exc:
                raise HarvestError(f"Base dataset: {exc}") from exc
            sft, dropped = mix(sft, base_rows)
            counts["sft from base dataset"] = len(base_rows) - dropped
        counts["sft"], counts["preference"] = len(sft), len(preference)
        used_before = {v for r in previous for v in r.vote_ids}
        new_votes = len(set(result.used_vote_ids) - used_before)
        return RoundPreview(result, sft, preference, counts, new_votes, self.next_round())

    def build_round(self, rules: HarvestRules = HarvestRules(), filters: BattleFilters = BattleFilters(),
                    created_by: str | None = None, parent: str | None = None) -> RoundRecord:
        """Writes round N's data and manifest and records it; refuses a round with nothing new."""
        with self._build_lock:
            plan = self.preview(rules, filters)
            result = plan.harvest
            if not result.used_vote_ids:
                reasons = ", ".join(f"{k.split(': ', 1)[1]}: {v}" for k, v in plan.counts.items()
                                    if k.startswith("excluded: "))
                raise HarvestError("No votes give training data yet: a round needs decisive votes (A or B "
                                   "is better) on finished, blind battles."
                                   + (f" Left out: {reasons}." if reasons else ""))
            if plan.new_votes == 0:
                last = self.rounds()[-1].round
                raise HarvestError(f"Nothing new since round {last}: every usable vote is already in an "
                                   "earlier round. Collect more votes first.")
            number = plan.round
            final = self.rounds_dir / f"round-{number:03d}"
            if final.exists():
                raise HarvestError(f"{final} exists but is not a recorded round; move it away and build again.")
            tmp = self.rounds_dir / f".round-{number:03d}.{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                _write_jsonl(tmp / "sft.jsonl", plan.sft_rows)
                _write_jsonl(tmp / "preference.jsonl", plan.preference_rows)
                _write_jsonl(tmp / "sources.jsonl", [
                    {"file": kind, "row": i, "battle_id": s.battle_id, "vote_id": s.vote_id, "side": s.side}
                    for kind, items in (("sft", result.sft), ("preference", result.preference))
                    for i, s in enumerate(items)])
                sha = _content_sha(tmp / "sft.jsonl", tmp / "preference.jsonl")
                if self.tables.has_content(sha):
                    raise HarvestError("An earlier round has exactly this data; nothing to build.")
                record = RoundRecord(
                    round=number, created_at=utcnow(), created_by=created_by,
                    rules=dataclasses.asdict(rules), filters=_filters_dict(filters),
                    vote_ids=result.used_vote_ids, counts=plan.counts, directory=str(final),
                    content_sha=sha, parent=parent)
                manifest = {**{k: v for k, v in dataclasses.asdict(record).items()},
                            "created_at": record.created_at.isoformat(),
                            "excluded": result.excluded, "format": {
                                "sft.jsonl": 'trl conversational: {"messages": [...]}',
                                "preference.jsonl": 'trl conversational preference: {"prompt", "chosen", "rejected"}',
                                "sources.jsonl": "row -> battle_id, vote_id, side (rows from votes only)"}}
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
                (tmp / "README.md").write_text(_dataset_card(record))
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            try:
                self.tables.save_round(record)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            return record

    def rounds(self) -> list[RoundRecord]:
        return self.tables.rounds()

    def round_files(self) -> list[Path]:
        """Every round's trainable files (sft.jsonl, preference.jsonl), oldest round first."""
        return [path for record in self.rounds() for path in (record.sft_path, record.preference_path)
                if path.exists()]

    def next_round(self) -> int:
        return self.tables.next_round()

    def get_round(self, number: int) -> RoundRecord:
        for record in self.rounds():
            if record.round == number:
                return record
        raise HarvestError(f"There is no round {number}.")

    def export_hf(self, number: int, out_dir: Path, repo_id: str | None = None,
                  token: str | None = None) -> RoundExport:
        """The round as a Hugging Face DatasetDict on disk (sft and preference configs), pushed to
        the Hub when a repo id and a token (default: HF_TOKEN) are given and the Hub is reachable.
        A failed push keeps what was saved and says why in `push_error`."""
        from datasets import Dataset

        token = token if token is not None else os.environ.get("HF_TOKEN")
        record = self.get_round(number)
        out_dir = Path(out_dir)
        written: list[str] = []
        for kind, path in (("sft", record.sft_path), ("preference", record.preference_path)):
            rows = _read_jsonl(path)
            if not rows:
                continue
            dataset = Dataset.from_list(rows)
            dataset.save_to_disk(str(out_dir / kind))
            written.append(kind)
            if repo_id and token:
                try:
                    dataset.push_to_hub(repo_id, config_name=kind, token=token, private=True)
                except Exception as exc:  # offline, bad token, no permission
                    return RoundExport(number, str(out_dir), written,
                                       push_error=f"{type(exc).__name__}: {str(exc)[:300]}", repo_id=repo_id)
        return RoundExport(number, str(out_dir), written, pushed=bool(repo_id and token), repo_id=repo_id,
                           needs_token=not token)


def load_prompt_categories(paths: Sequence[Path]) -> dict[str, str]:
    """prompt -> category from prompt-set files ({"prompt", "category"} per JSONL line)."""
    categories: dict[str, str] = {}
    for path in paths:
        for row in _read_jsonl(path):
            if isinstance(row, dict) and row.get("prompt") and row.get("category"):
                categories[str(row["prompt"])] = str(row["category"])
    return categories


def _matches(row: BattleRow, f: BattleFilters) -> bool:
    b = row.battle
    if f.outcomes and b.outcome not in f.outcomes:
        return False
    if f.model and f.model not in (b.model_a, b.model_b):
        return False
    if f.voter and b.voter != f.voter:
        return False
    if f.category and row.category != f.category:
        return False
    if f.campaign and row.campaign_id != f.campaign:
        return False
    if f.judge != "any":
        agrees = row.judge_agrees
        wanted = {"agrees": True, "disagrees": False, "no verdict": None}[f.judge]
        if agrees is not wanted:
            return False
    return f.include_excluded or not b.excluded


def _prompt_key(text: str) -> str:
    return " ".join(text.lower().split())


def _filters_dict(filters: BattleFilters) -> dict[str, Any]:
    data = dataclasses.asdict(filters)
    data["outcomes"] = list(filters.outcomes)
    return data


def _write_jsonl(path: Path, rows: Sequence[Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_jsonl(path: Path) -> list[Any]:
    if not Path(path).exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _content_sha(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _dataset_card(record: RoundRecord) -> str:
    counts = "\n".join(f"| {k} | {v} |" for k, v in record.counts.items())
    return f"""---
configs:
- config_name: sft
  data_files: sft.jsonl
- config_name: preference
  data_files: preference.jsonl
---
# qwen3arena round {record.round}

Built {record.created_at:%Y-%m-%d %H:%M} UTC from {len(record.vote_ids)} arena votes
(harvest rules: {json.dumps(record.rules)}).

| rows | count |
|---|---|
{counts}

`sft.jsonl`: trl conversational SFT rows. `preference.jsonl`: trl conversational preference
pairs (prompt, chosen, rejected), for DPO. `sources.jsonl`: the battle and vote behind each row.
"""
