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
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from qwen3arena.harvest.rules import Harvest, HarvestRules, VotedBattle, harvest, mix
from qwen3arena.judge import JudgeStore
from qwen3arena.store import Store, utcnow

JudgeFilter = Literal["any", "agrees", "disagrees", "no verdict"]
UNCATEGORIZED = "uncategorized"


class HarvestError(ValueError):
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
class RoundRecord:
    round: int
    created_at: datetime
    created_by: str | None
    rules: dict[str, Any]
    filters: dict[str, Any]
    vote_ids: list[str]
    counts: dict[str, int]
    directory: str
    content_sha: str
    parent: str | None = None

    @property
    def sft_path(self) -> Path:
        return Path(self.directory) / "sft.jsonl"

    @property
    def preference_path(self) -> Path:
        return Path(self.directory) / "preference.jsonl"

    @property
    def manifest_path(self) -> Path:
        return Path(self.directory) / "manifest.json"


_ROUND_COLUMNS = tuple(f.name for f in dataclasses.fields(RoundRecord))
_ROUND_JSON = ("rules", "filters", "vote_ids", "counts")


class Harvester:
    """The Data tab's and the CLI's service: browse, exclude, preview and build rounds."""

    def __init__(self, store: Store, rounds_dir: Path, categories: Mapping[str, str] | None = None):
        self.store = store
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
        return [voter for (voter,) in self.store.execute("SELECT DISTINCT voter FROM votes ORDER BY voter")]

    def category_names(self) -> list[str]:
        return sorted({*self.categories.values(), UNCATEGORIZED})

    def exclude(self, battle_id: str, reason: str, by: str | None = None) -> None:
        """Leaves a voted battle out of every future round (its vote still counts in ratings)."""
        if not self.store.execute("SELECT 1 FROM votes WHERE battle_id = ?", [battle_id]):
            raise HarvestError("Only voted battles can be excluded; this id has no vote.")
        self.store.execute(
            "INSERT INTO harvest_exclusions VALUES (?, ?, ?, ?) ON CONFLICT (battle_id) DO UPDATE "
            "SET reason = excluded.reason, excluded_by = excluded.excluded_by, created_at = excluded.created_at",
            [battle_id, reason.strip() or "excluded", by, utcnow()])

    def include(self, battle_id: str) -> None:
        self.store.execute("DELETE FROM harvest_exclusions WHERE battle_id = ?", [battle_id])

    def _rows(self, with_judge: bool, battle_id: str | None = None) -> list[BattleRow]:
        judged = {j.battle_id: j.outcome for j in JudgeStore(self.store).list_judgements()
                  if j.battle_id and j.outcome is not None} if with_judge else {}
        rows = self.store.execute(
            "SELECT v.vote_id, v.battle_id, v.outcome, v.model_a, v.model_b, v.voter, v.created_at, "
            "v.identity_leak, b.status, b.conversation_a, b.conversation_b, b.metrics_a, b.metrics_b, "
            "e.reason, v.campaign_id FROM votes v JOIN battles b ON b.battle_id = v.battle_id "
            "LEFT JOIN harvest_exclusions e ON e.battle_id = v.battle_id "
            "WHERE (? IS NULL OR v.battle_id = ?) ORDER BY v.created_at, v.vote_id",
            [battle_id, battle_id])
        out = []
        for (vote_id, bid, outcome, model_a, model_b, voter, created_at, leak, status, conv_a, conv_b,
             metrics_a, metrics_b, excluded, campaign_id) in rows:
            conversation_a = json.loads(conv_a) if conv_a else []
            battle = VotedBattle(
                battle_id=bid, vote_id=vote_id, outcome=outcome, model_a=model_a, model_b=model_b,
                conversation_a=conversation_a, conversation_b=json.loads(conv_b) if conv_b else [],
                finish_reasons_a=_finish_reasons(metrics_a), finish_reasons_b=_finish_reasons(metrics_b),
                status=status, identity_leak=bool(leak), judge_outcome=judged.get(bid),
                excluded=excluded, voter=voter, created_at=created_at)
            prompt = next((m["content"] for m in conversation_a if m.get("role") == "user"), "")
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
                if self.store.execute("SELECT round FROM rounds WHERE content_sha = ?", [sha]):
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
                self.store.execute(
                    f"INSERT INTO rounds ({', '.join(_ROUND_COLUMNS)}) VALUES ({', '.join('?' * len(_ROUND_COLUMNS))})",
                    [json.dumps(getattr(record, c)) if c in _ROUND_JSON else getattr(record, c)
                     for c in _ROUND_COLUMNS])
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
            return record

    def rounds(self) -> list[RoundRecord]:
        rows = self.store.execute(f"SELECT {', '.join(_ROUND_COLUMNS)} FROM rounds ORDER BY round")
        records = []
        for row in rows:
            data = dict(zip(_ROUND_COLUMNS, row))
            for column in _ROUND_JSON:
                data[column] = json.loads(data[column])
            records.append(RoundRecord(**data))
        return records

    def next_round(self) -> int:
        rows = self.store.execute("SELECT coalesce(max(round), 0) FROM rounds")
        return int(rows[0][0]) + 1

    def get_round(self, number: int) -> RoundRecord:
        for record in self.rounds():
            if record.round == number:
                return record
        raise HarvestError(f"There is no round {number}.")

    def export_hf(self, number: int, out_dir: Path, repo_id: str | None = None,
                  token: str | None = None) -> str:
        """The round as a Hugging Face DatasetDict on disk (sft and preference configs), pushed to
        the Hub when a repo id and a token (default: HF_TOKEN) are given and the Hub is reachable."""
        from datasets import Dataset

        token = token if token is not None else os.environ.get("HF_TOKEN")
        record = self.get_round(number)
        out_dir = Path(out_dir)
        written = []
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
                    return (f"Saved round {number} ({', '.join(written)}) to {out_dir}; pushing to "
                            f"{repo_id} failed: {type(exc).__name__}: {str(exc)[:300]}")
        if repo_id and token:
            return f"Saved round {number} to {out_dir} and pushed it to {repo_id} ({', '.join(written)})."
        return (f"Saved round {number} ({', '.join(written)}) to {out_dir}"
                + ("" if token else "; set HF_TOKEN and a repo id to push it to the Hub") + ".")


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


def _finish_reasons(metrics_json: str | None) -> list[str | None]:
    metrics = json.loads(metrics_json) if metrics_json else []
    return [m.get("finish_reason") if isinstance(m, dict) else None for m in metrics]


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
