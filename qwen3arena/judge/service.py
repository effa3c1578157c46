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

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable

from qwen3arena.errors import Refused
from qwen3arena.config import JudgeSettings
from qwen3arena.judge.games import GameResult, JudgeReply, Pair, PairJudgement, cache_key, combine, game_outcome
from qwen3arena.judge.parse import parse_verdict
from qwen3arena.judge.prompts import PROMPT_VERSION, build_messages
from qwen3arena.judge.store import JudgeStore

if TYPE_CHECKING:  # openai and duckdb are imported when first needed: config may import this
    import openai

    from qwen3arena.store import Store

log = logging.getLogger(__name__)

class JudgeError(Refused, RuntimeError):
    """The judge cannot run at all (configuration). Failures of single games are recorded
    on the game instead."""

# -- the judge -------------------------------------------------------------------------------

class _Abort:
    """Set once the endpoint is known unusable (dead, bad key, unknown model): the games
    still queued fail at once instead of each waiting through its retries."""

    def __init__(self) -> None:
        self.reason: str | None = None


class Judge:
    def __init__(self, settings: JudgeSettings | None = None,
                 store: "Store | JudgeStore | None" = None):
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
