"""The harvest's tables (migration 5): rounds and harvest_exclusions. Every statement on them
lives here and runs through Store.execute or Store.atomic; the Harvester holds no SQL.

It also reads voted battles joined with their exclusions, the one query the harvest needs
over the core tables (votes, battles), which it never writes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from qwen3arena.harvest.rules import VotedBattle
from qwen3arena.store import Store, utcnow


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


class HarvestStore:
    def __init__(self, store: Store):
        self.store = store

    # -- voted battles and exclusions ---------------------------------------------------------

    def voted_battles(self, judged: Mapping[str, str],
                      battle_id: str | None = None) -> list[tuple[VotedBattle, str | None]]:
        """Every battle with a final vote (or one), oldest vote first, with its campaign id and
        the vote's repair; `judged` gives the judge's outcome per battle. A vote its voter may
        still undo (migration 8: before `final_at`) is not read: an undone vote never reaches a
        round."""
        rows = self.store.execute(
            "SELECT v.vote_id, v.battle_id, v.outcome, v.model_a, v.model_b, v.voter, v.created_at, "
            "v.identity_leak, b.status, b.conversation_a, b.conversation_b, b.metrics_a, b.metrics_b, "
            "e.reason, v.campaign_id, v.repair, v.repair_original, v.repaired_by, v.repaired_at "
            "FROM votes v JOIN battles b ON b.battle_id = v.battle_id "
            "LEFT JOIN harvest_exclusions e ON e.battle_id = v.battle_id "
            "WHERE (? IS NULL OR v.battle_id = ?) AND coalesce(v.final_at, v.created_at) <= ? "
            "ORDER BY v.created_at, v.vote_id",
            [battle_id, battle_id, utcnow()])
        return [(VotedBattle(
            battle_id=bid, vote_id=vote_id, outcome=outcome, model_a=model_a, model_b=model_b,
            conversation_a=json.loads(conv_a) if conv_a else [], conversation_b=json.loads(conv_b) if conv_b else [],
            finish_reasons_a=_finish_reasons(metrics_a), finish_reasons_b=_finish_reasons(metrics_b),
            status=status, identity_leak=bool(leak), judge_outcome=judged.get(bid),
            excluded=excluded, voter=voter, created_at=created_at, repair=repair, repair_original=original,
            repaired_by=repaired_by, repaired_at=repaired_at), campaign_id)
            for (vote_id, bid, outcome, model_a, model_b, voter, created_at, leak, status, conv_a, conv_b,
                 metrics_a, metrics_b, excluded, campaign_id, repair, original, repaired_by, repaired_at) in rows]

    def exclude(self, battle_id: str, reason: str, by: str | None, at: datetime) -> bool:
        """Records (or updates) an exclusion; False, with nothing written, when the battle has no vote."""
        with self.store.atomic() as execute:
            if not execute("SELECT 1 FROM votes WHERE battle_id = ?", [battle_id]):
                return False
            execute("INSERT INTO harvest_exclusions VALUES (?, ?, ?, ?) ON CONFLICT (battle_id) DO UPDATE "
                    "SET reason = excluded.reason, excluded_by = excluded.excluded_by, "
                    "created_at = excluded.created_at", [battle_id, reason, by, at])
            return True

    def include(self, battle_id: str) -> None:
        self.store.execute("DELETE FROM harvest_exclusions WHERE battle_id = ?", [battle_id])

    # -- rounds -----------------------------------------------------------------------------

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

    def has_content(self, content_sha: str) -> bool:
        """Whether an earlier round holds exactly this data (a round never repeats)."""
        return bool(self.store.execute("SELECT 1 FROM rounds WHERE content_sha = ?", [content_sha]))

    def save_round(self, record: RoundRecord) -> None:
        self.store.execute(
            f"INSERT INTO rounds ({', '.join(_ROUND_COLUMNS)}) VALUES ({', '.join('?' * len(_ROUND_COLUMNS))})",
            [json.dumps(getattr(record, c)) if c in _ROUND_JSON else getattr(record, c) for c in _ROUND_COLUMNS])


def _finish_reasons(metrics_json: str | None) -> list[str | None]:
    metrics = json.loads(metrics_json) if metrics_json else []
    return [m.get("finish_reason") if isinstance(m, dict) else None for m in metrics]
