"""What a pairwise judgement is made of: the pair, each game's reply and verdict, and how two
games combine into one outcome. Pure values and functions, shared by the judge service and its
DuckDB cache (judge/store.py), so neither imports the other's internals."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from qwen3arena.judge.parse import Verdict
from qwen3arena.judge.prompts import PROMPT_VERSION, message_text

if TYPE_CHECKING:
    from qwen3arena.store import BattleRecord

PairOutcome = Literal["model_a", "model_b", "tie"]
STRONG_WEIGHT = 3  # a [[A>>B]] verdict counts as this many wins (Arena-Hard-Auto's choice)


# -- what is judged --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """Two conversations to compare. Exactly one of battle_id / prompt_id says where they
    come from; prompt ids are the caller's (namespace them by prompt set: "set/123")."""

    model_a: str
    model_b: str
    conversation_a: list[dict[str, Any]]
    conversation_b: list[dict[str, Any]]
    battle_id: str | None = None
    prompt_id: str | None = None

    def __post_init__(self) -> None:
        if (self.battle_id is None) == (self.prompt_id is None):
            raise ValueError("a Pair needs exactly one of battle_id or prompt_id")
        for side, conversation in (("a", self.conversation_a), ("b", self.conversation_b)):
            if not conversation or conversation[-1].get("role") != "assistant":
                raise ValueError(f"conversation_{side} must end with an assistant answer")

    @classmethod
    def from_battle(cls, battle: "BattleRecord") -> "Pair":
        """A finished arena battle; an unfinished or failed one has no answers to judge."""
        if battle.status not in ("ready", "voted"):
            raise ValueError(f"battle {battle.battle_id} is {battle.status}: only finished "
                             "battles (ready or voted) can be judged")
        return cls(battle.model_a, battle.model_b, list(battle.conversation_a),
                   list(battle.conversation_b), battle_id=battle.battle_id)

    @classmethod
    def from_prompt(cls, prompt_id: str, prompt: str | Sequence[dict[str, Any]],
                    candidate: str, candidate_answer: str,
                    baseline: str, baseline_answer: str) -> "Pair":
        """A prompt-set item: the candidate is model_a, the baseline model_b. `prompt` is the
        user text, or the messages (system, earlier turns) that precede the answer."""
        head = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return cls(candidate, baseline,
                   head + [{"role": "assistant", "content": candidate_answer}],
                   head + [{"role": "assistant", "content": baseline_answer}],
                   prompt_id=prompt_id)


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgeReply:
    """One paid judge call: what the cache keeps (verdict None: the reply had no tag)."""

    cache_key: str
    judge_model: str
    prompt_version: str
    verdict: Verdict | None
    error: str | None
    reply: str
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_s: float | None


@dataclass(frozen=True)
class GameResult:
    """One of the two games of a pair. game 1 shows model_a as Assistant A, game 2 swaps.

    verdict is in this game's positions; outcome and weight are for the pair (None and 0 when
    the game is excluded, with error saying why). cached: no request was paid for it now.
    """

    game: int
    cache_key: str
    verdict: Verdict | None
    outcome: PairOutcome | None
    weight: int
    error: str | None
    reply: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached: bool


@dataclass(frozen=True)
class PairJudgement:
    """The judged pair. outcome None: neither game gave a verdict (error says why).

    Shaped like a vote (model_a, model_b, outcome, identity_leak), so `as_votes` output goes
    straight into qwen3arena.ratings.
    """

    model_a: str
    model_b: str
    battle_id: str | None
    prompt_id: str | None
    judge_model: str
    prompt_version: str
    games: tuple[GameResult, ...]
    outcome: PairOutcome | None
    weight: int
    error: str | None

    identity_leak = False  # judge verdicts are not votes a leaked name could sway

    @property
    def prompt_tokens(self) -> int:
        return sum(g.prompt_tokens or 0 for g in self.games)

    @property
    def completion_tokens(self) -> int:
        return sum(g.completion_tokens or 0 for g in self.games)


def game_outcome(game: int, verdict: Verdict | None) -> tuple[PairOutcome | None, int]:
    """(outcome, weight) of one game for the pair: game 2 showed model_b as Assistant A."""
    if verdict is None:
        return None, 0
    weight = STRONG_WEIGHT if verdict.strong else 1
    winner = verdict.winner
    if winner is None:
        return "tie", 1
    first_won = (winner == "A") == (game == 1)
    return ("model_a" if first_won else "model_b"), weight


def combine(games: Sequence[GameResult]) -> tuple[PairOutcome | None, int]:
    """The pair's (outcome, weight) from its games.

    Games without a verdict are left out; one game left decides alone; none left: (None, 0).
    Two games: opposite directions (each says a different model is better) are a tie, weight
    1; otherwise the weaker of the two verdicts stands, so a win in one order and a tie in the
    other is a tie (MT-bench's conservative reading: that is what position bias looks like),
    and the pair is strong (weight STRONG_WEIGHT) only when both games say so.
    """
    scores = [_score(g) for g in games if g.outcome is not None]
    if not scores:
        return None, 0
    if min(scores) < 0 < max(scores):
        return "tie", 1
    score = min(scores, key=abs)
    if score == 0:
        return "tie", 1
    return ("model_a" if score > 0 else "model_b"), (STRONG_WEIGHT if abs(score) == 2 else 1)


def _score(game: GameResult) -> int:
    """-2..2 for model_a: 2 strongly better, 0 tie."""
    magnitude = 2 if game.weight == STRONG_WEIGHT else 1
    return {"model_a": magnitude, "model_b": -magnitude, "tie": 0}[game.outcome]  # type: ignore[index]


def as_votes(judgements: Iterable[PairJudgement]) -> list[PairJudgement]:
    """Judged pairs as votes for the ratings: each repeated `weight` times, no-verdict pairs
    dropped. E.g. ``qwen3arena.ratings.rate(as_votes(judge.judge(pairs)))``."""
    return [j for j in judgements if j.outcome is not None for _ in range(j.weight)]


def cache_key(judge_model: str, shown_a: Sequence[dict[str, Any]],
              shown_b: Sequence[dict[str, Any]]) -> str:
    """sha256 of (judge model, prompt version, both conversations in canonical order, which
    one is shown as Assistant A). Only what the judge sees counts: roles and text."""
    a, b = _canonical(shown_a), _canonical(shown_b)
    pair = sorted((a, b))
    payload = json.dumps({"judge": judge_model, "prompt": PROMPT_VERSION, "pair": pair,
                          "shown_as_a": pair.index(a)}, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _canonical(conversation: Sequence[dict[str, Any]]) -> str:
    return json.dumps([[m.get("role"), message_text(m.get("content"))] for m in conversation],
                      ensure_ascii=False, separators=(",", ":"))
