"""Pairwise LLM judge (GPT-4o by default, any OpenAI-compatible endpoint).

Typical use::

    judge = Judge(JudgeSettings(), store)              # store: qwen3arena.store.Store
    results = judge.judge([Pair.from_battle(b) for b in battles])
    ratings.rate(as_votes(results))                    # strong verdicts count STRONG_WEIGHT times

Each pair is judged twice with the positions swapped and combined (see service.combine);
every paid reply is cached in DuckDB (tables judge_games and judgements, migration 3).
Importing this package loads neither openai nor duckdb.
"""

from qwen3arena.judge.parse import Verdict, parse_verdict
from qwen3arena.judge.prompts import PROMPT_VERSION
from qwen3arena.judge.games import STRONG_WEIGHT, GameResult, Pair, PairJudgement, as_votes, combine
from qwen3arena.judge.service import Judge, JudgeError, JudgeSettings
from qwen3arena.judge.store import JudgeStore

__all__ = [
    "PROMPT_VERSION", "STRONG_WEIGHT", "GameResult", "Judge", "JudgeError", "JudgeSettings",
    "JudgeStore", "Pair", "PairJudgement", "Verdict", "as_votes", "combine", "parse_verdict",
]
