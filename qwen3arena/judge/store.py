"""The judge's tables (migration 3): judge_games is the reply cache, judgements links each
judged game to its battle or prompt-set item.

All SQL goes through the public `Store.execute`, which runs each statement under the store's
lock; the store's own code knows nothing about judging.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable, Sequence

from qwen3arena.judge.parse import Verdict
from qwen3arena.judge.games import GameResult, JudgeReply, PairJudgement, combine

if TYPE_CHECKING:
    from qwen3arena.store import Store

_CHUNK = 500  # keys per lookup query


class JudgeStore:
    def __init__(self, store: "Store"):
        self.store = store

    def cached(self, keys: Sequence[str]) -> dict[str, JudgeReply]:
        """The cached replies among `keys`."""
        found: dict[str, JudgeReply] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), _CHUNK):
            rows = self.store.execute(
                "SELECT cache_key, judge_model, prompt_version, verdict, error, reply, "
                "prompt_tokens, completion_tokens, duration_s FROM judge_games "
                "WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))",
                [keys[start:start + _CHUNK]],
            )
            for key, model, version, verdict, error, reply, p_tok, c_tok, duration in rows:
                found[key] = JudgeReply(key, model, version, Verdict(verdict) if verdict else None,
                                        error, reply, p_tok, c_tok, duration)
        return found

    def save_reply(self, reply: JudgeReply) -> None:
        """Keeps a paid reply; a key already there is left as it is (the first reply wins)."""
        self.store.execute(
            "INSERT INTO judge_games VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (cache_key) DO NOTHING",
            [reply.cache_key, reply.judge_model, reply.prompt_version,
             reply.verdict.value if reply.verdict else None, reply.error, reply.reply,
             reply.prompt_tokens, reply.completion_tokens, reply.duration_s, _now()],
        )

    def save_judgements(self, judgements: Iterable[PairJudgement]) -> None:
        """One row per game; judging the same pair again replaces its rows."""
        now = _now()
        for j in judgements:
            for g in j.games:
                self.store.execute(
                    "INSERT INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (judgement_id) DO UPDATE SET cache_key = excluded.cache_key, "
                    "outcome = excluded.outcome, weight = excluded.weight, "
                    "error = excluded.error, created_at = excluded.created_at",
                    [_judgement_id(j, g.game), j.battle_id, j.prompt_id, j.model_a, j.model_b,
                     g.game, j.judge_model, j.prompt_version,
                     g.cache_key if g.reply is not None else None,
                     g.outcome, g.weight, g.error, now],
                )

    def list_judgements(self, judge_model: str | None = None,
                        prompt_version: str | None = None) -> list[PairJudgement]:
        """Stored judged pairs (combined again from their games), oldest first."""
        rows = self.store.execute(
            "SELECT j.battle_id, j.prompt_id, j.model_a, j.model_b, j.judge_model, "
            "j.prompt_version, j.game, j.outcome, j.weight, j.error, g.cache_key, g.verdict, "
            "g.reply, g.prompt_tokens, g.completion_tokens "
            "FROM judgements j LEFT JOIN judge_games g ON g.cache_key = j.cache_key "
            "WHERE (? IS NULL OR j.judge_model = ?) AND (? IS NULL OR j.prompt_version = ?) "
            "ORDER BY j.created_at, j.battle_id, j.prompt_id, j.model_a, j.model_b, j.game",
            [judge_model, judge_model, prompt_version, prompt_version],
        )
        grouped: dict[tuple, list[GameResult]] = {}
        for (battle_id, prompt_id, model_a, model_b, judge, version, game, outcome, weight,
             error, key, verdict, reply, p_tok, c_tok) in rows:
            grouped.setdefault((model_a, model_b, battle_id, prompt_id, judge, version), []).append(
                GameResult(game, key or "", Verdict(verdict) if verdict else None, outcome,
                           weight, error, reply, p_tok, c_tok, cached=True))
        pairs = []
        for (model_a, model_b, battle_id, prompt_id, judge, version), games in grouped.items():
            outcome, weight = combine(games)
            error = None if outcome is not None else "; ".join(
                f"game {g.game}: {g.error}" for g in games)
            pairs.append(PairJudgement(model_a, model_b, battle_id, prompt_id, judge, version,
                                       tuple(games), outcome, weight, error))
        return pairs


def _judgement_id(j: PairJudgement, game: int) -> str:
    payload = json.dumps([j.battle_id, j.prompt_id, j.model_a, j.model_b, j.judge_model,
                          j.prompt_version, game])
    return hashlib.sha256(payload.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)
