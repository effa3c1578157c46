"""Pairwise LLM judging of two conversations, each pair judged twice with positions swapped.

A pair is (model_a, model_b) with one conversation each: an arena battle (both sides share
the user turns) or a prompt-set item answered by a candidate (model_a) and a baseline
(model_b). Game 1 shows model_a's conversation as Assistant A, game 2 swaps the positions;
each game's verdict is mapped to the pair (model_a / model_b / tie) and the two are combined
by `combine`.

Every paid reply is cached under `cache_key` (judge model, prompt version, both conversations
in canonical order, which one was shown as A): in memory, and in DuckDB when a store is given,
so no game is ever paid for twice, across runs and across pairs with identical content.

The judge endpoint is any OpenAI-compatible server. Requests run on a thread pool of
`concurrency` workers and are retried with exponential backoff on 429, 5xx, timeouts and
connection failures, never on other 4xx. A failed request is recorded on its game (not
cached, so judging again retries it); it never raises out of `Judge.judge`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from qwen3arena.config import JudgeSettings
from qwen3arena.judge.parse import Verdict, parse_verdict
from qwen3arena.judge.prompts import PROMPT_VERSION, build_messages, message_text

if TYPE_CHECKING:  # openai and duckdb are imported when first needed: config may import this
    import openai

    from qwen3arena.judge.store import JudgeStore
    from qwen3arena.store import BattleRecord, Store

log = logging.getLogger(__name__)

PairOutcome = Literal["model_a", "model_b", "tie"]
STRONG_WEIGHT = 3  # a [[A>>B]] verdict counts as this many wins (Arena-Hard-Auto's choice)


class JudgeError(RuntimeError):
    """The judge cannot run at all (configuration). Failures of single games are recorded
    on the game instead."""

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


# -- the judge -------------------------------------------------------------------------------

class _Abort:
    """Set once the endpoint is known unusable (dead, bad key, unknown model): the games
    still queued fail at once instead of each waiting through its retries."""

    def __init__(self) -> None:
        self.reason: str | None = None


class Judge:
    def __init__(self, settings: JudgeSettings | None = None,
                 store: "Store | JudgeStore | None" = None):
        from qwen3arena.judge.store import JudgeStore

        self.settings = settings or JudgeSettings()
        self.store = store if store is None or isinstance(store, JudgeStore) else JudgeStore(store)
        self._memory: dict[str, JudgeReply] = {}
        self._lock = threading.Lock()
        self._client: "openai.OpenAI | None" = None

    def judge_one(self, pair: Pair) -> PairJudgement:
        return self.judge([pair])[0]

    def judge(self, pairs: Iterable[Pair]) -> list[PairJudgement]:
        """Judges every pair (two games each), paying only for games not cached; in input order.

        Raises JudgeError only when nothing can be sent (no API key); request failures are
        recorded on their games.
        """
        pairs = list(pairs)
        model = self.settings.model
        plans = []  # per pair: [(game, key, shown_a, shown_b)] * 2
        for pair in pairs:
            plans.append([
                (1, cache_key(model, pair.conversation_a, pair.conversation_b),
                 pair.conversation_a, pair.conversation_b),
                (2, cache_key(model, pair.conversation_b, pair.conversation_a),
                 pair.conversation_b, pair.conversation_a),
            ])
        wanted = {key: (a, b) for plan in plans for _, key, a, b in plan}
        known = self._cached(list(wanted))
        todo = {key: shown for key, shown in wanted.items() if key not in known}
        fresh: dict[str, JudgeReply | str] = {}
        if todo:
            client = self._openai()
            abort = _Abort()
            workers = max(1, min(self.settings.concurrency, len(todo)))
            with ThreadPoolExecutor(workers, thread_name_prefix="judge") as pool:
                futures = {key: pool.submit(self._request, client, key, build_messages(*shown), abort)
                           for key, shown in todo.items()}
                fresh = {key: future.result() for key, future in futures.items()}
        results = []
        for pair, plan in zip(pairs, plans):
            games = tuple(
                self._game(game, key, known[key] if key in known else fresh[key], key in known)
                for game, key, _, _ in plan
            )
            outcome, weight = combine(games)
            error = None if outcome is not None else "; ".join(
                f"game {g.game}: {g.error}" for g in games)
            results.append(PairJudgement(pair.model_a, pair.model_b, pair.battle_id,
                                         pair.prompt_id, model, PROMPT_VERSION, games,
                                         outcome, weight, error))
        if self.store is not None:
            self.store.save_judgements(results)
        return results

    # -- internals ---------------------------------------------------------------------------

    def _cached(self, keys: list[str]) -> dict[str, JudgeReply]:
        with self._lock:
            found = {k: self._memory[k] for k in keys if k in self._memory}
        missing = [k for k in keys if k not in found]
        if missing and self.store is not None:
            stored = self.store.cached(missing)
            with self._lock:
                self._memory.update(stored)
            found.update(stored)
        return found

    @staticmethod
    def _game(game: int, key: str, result: JudgeReply | str, cached: bool) -> GameResult:
        if isinstance(result, str):  # the request failed: nothing paid, nothing cached
            return GameResult(game, key, None, None, 0, result, None, None, None, False)
        outcome, weight = game_outcome(game, result.verdict)
        return GameResult(game, key, result.verdict, outcome, weight, result.error, result.reply,
                          result.prompt_tokens, result.completion_tokens, cached)

    def _openai(self) -> "openai.OpenAI":
        if self._client is None:
            import openai

            s = self.settings
            api_key = "EMPTY"
            if s.api_key_env:
                api_key = os.environ.get(s.api_key_env, "")
                if not api_key:
                    raise JudgeError(f"the judge needs an API key: set {s.api_key_env} "
                                     f"(judge.api_key_env), or null for a server without keys")
            self._client = openai.OpenAI(base_url=s.base_url, api_key=api_key,
                                         timeout=s.request_timeout_s, max_retries=0)
        return self._client

    def _request(self, client: "openai.OpenAI", key: str, messages: list[dict[str, str]],
                 abort: _Abort) -> JudgeReply | str:
        """One game: the reply (cached at once) or an error text. Never raises."""
        if abort.reason:
            return f"not sent: {abort.reason}"
        try:
            reply = self._call(client, key, messages)
        except Exception as exc:  # every request failure is recorded on its game
            error, fatal = self._describe(exc)
            if fatal and not abort.reason:
                abort.reason = error
                log.warning("judge endpoint unusable, skipping the remaining games: %s", error)
            return error
        with self._lock:
            self._memory[key] = reply
        if self.store is not None:
            self.store.save_reply(reply)
        return reply

    def _call(self, client: "openai.OpenAI", key: str,
              messages: list[dict[str, str]]) -> JudgeReply:
        import openai

        s = self.settings
        retryable = (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError,
                     openai.InternalServerError)
        attempt = 0
        while True:
            start = time.perf_counter()
            try:
                response = client.chat.completions.create(
                    model=s.model, messages=messages, temperature=s.temperature,
                    max_tokens=s.max_tokens)
                break
            except retryable as exc:
                if attempt >= s.max_retries:
                    exc.attempts = attempt + 1  # type: ignore[attr-defined]
                    raise
                time.sleep(self._backoff(attempt, exc))
                attempt += 1
        duration = time.perf_counter() - start
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice else None) or ""
        verdict = parse_verdict(text)
        error = None
        if verdict is None:
            error = "the judge's reply has no verdict tag"
            if choice is not None and choice.finish_reason == "length":
                error += f" (cut off at max_tokens={s.max_tokens})"
        usage = response.usage
        return JudgeReply(key, s.model, PROMPT_VERSION, verdict, error, text,
                          usage.prompt_tokens if usage else None,
                          usage.completion_tokens if usage else None, duration)

    def _backoff(self, attempt: int, exc: Exception) -> float:
        """Exponential with jitter; a server's Retry-After (seconds) is honoured, capped."""
        s = self.settings
        delay = s.backoff_s * 2 ** attempt * random.uniform(1.0, 1.25)
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:
                pass
        return max(0.0, min(delay, s.max_backoff_s))

    def _describe(self, exc: Exception) -> tuple[str, bool]:
        """(error text, fatal): fatal means no other request to this endpoint can succeed."""
        import openai

        attempts = getattr(exc, "attempts", 1)
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        where = f"{self.settings.base_url}, model {self.settings.model}"
        if isinstance(exc, openai.APITimeoutError):
            return f"the judge timed out after {self.settings.request_timeout_s:g} s{tries}", False
        if isinstance(exc, openai.APIConnectionError):
            return f"could not reach the judge at {self.settings.base_url}{tries}: {exc}", True
        if isinstance(exc, openai.APIStatusError):
            fatal = isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError,
                                     openai.NotFoundError))
            return (f"the judge ({where}) returned HTTP {exc.status_code}{tries}: "
                    f"{_short(exc.message)}", fatal)
        return f"the judge request failed: {type(exc).__name__}: {_short(str(exc))}", False


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
