"""The blind battle, server-side: draw a pair, stream both answers at once, take one vote.

Everything the UI may show comes out as TurnView or a rejection message, and neither names
a model until vote() returns the Reveal. Live battles sit in memory keyed by a random id;
every finished turn is written to the store, so a vote always refers to persisted answers.
Both chat panes are rendered here from the battle itself (TurnView.chats): the server's
conversation is the only one, a browser's copy is never read back.
"""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from qwen3arena.errors import Refused
from qwen3arena.arena.leaks import find_identity_leak
from qwen3arena.arena.panes import LiveAnswer, render_pane
from qwen3arena.arena.sampling import model_weights, sample_pair
from qwen3arena.config import ArenaSettings
from qwen3arena.serve import ChatError, ChatResult, Contestant, ContestantPool, Delta, stream_chat
from qwen3arena.store import BattleRecord, Execute, Outcome, Store



class ArenaError(Refused, ValueError):
    """A request the arena refuses; the message is safe to show (it names no model)."""


@dataclass(frozen=True)
class TurnView:
    """What a browser may see of a battle in progress: text only, no identities. `chats` are
    both whole conversations as the panes show them, the turn in flight included."""

    answers: tuple[str, str]
    thinking: tuple[str, str]
    errors: tuple[str | None, str | None]
    finished: bool
    votable: bool
    chats: tuple[list[dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Reveal:
    model_a: str
    model_b: str
    outcome: Outcome
    identity_leak: bool


@dataclass
class _Side:
    contestant: Contestant
    messages: list[dict[str, Any]] = field(default_factory=list)
    thinking: list[str | None] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    reasoning: str = ""
    error: str | None = None
    error_detail: str | None = None
    metrics_now: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Battle:
    battle_id: str
    voter: str
    sides: tuple[_Side, _Side]
    created_at: float = field(default_factory=time.time)
    busy: threading.Lock = field(default_factory=threading.Lock)
    leak: str | None = None
    record: BattleRecord | None = None
    campaign_id: str | None = None
    prompt_id: str | None = None


class Arena:
    def __init__(self, store: Store, pool: ContestantPool, settings: ArenaSettings,
                 rng: random.Random | None = None):
        self.store = store
        self.pool = pool
        self.settings = settings
        self._rng = rng or random.SystemRandom()
        self._battles: dict[str, _Battle] = {}
        self._lock = threading.Lock()

    # -- battles ----------------------------------------------------------------------------

    def start_battle(self, voter: str, contestants: list[str] | None = None,
                     campaign_id: str | None = None, prompt_id: str | None = None) -> str:
        """Draws a pair among the contestants that are up; returns an opaque battle id.

        A labelling campaign limits the draw to its `contestants` and tags the battle with
        its campaign and prompt (stored with the battle and its vote)."""
        available = {c.name: c for c in self.pool.available()}
        if contestants is not None:
            available = {name: c for name, c in available.items() if name in set(contestants)}
        if len(available) < 2:
            raise ArenaError(
                f"The arena needs two models that are up; {len(available)} "
                f"{'is' if len(available) == 1 else 'are'} up right now. If the model server is "
                "still starting, try again in a minute."
            )
        weights = model_weights(
            {name: c.weight for name, c in available.items()},
            self.store.vote_counts(), self.settings.boost_factor, self.settings.boost_until_votes,
        )
        left, right = sample_pair(weights, self._rng, self.target_pairs(), self.settings.target_share)
        battle = _Battle(uuid.uuid4().hex, voter, (_Side(available[left]), _Side(available[right])),
                         campaign_id=campaign_id, prompt_id=prompt_id)
        with self._lock:
            self._battles[battle.battle_id] = battle
        return battle.battle_id

    def target_pairs(self) -> list[tuple[str, str]]:
        """The configured target pairs, plus each checkpoint with its parent when asked."""
        pairs = [(a, b) for a, b in self.settings.target_pairs]
        if self.settings.parent_pairs and self.settings.target_share > 0:
            pairs += [(m.name, m.metadata["parent"]) for m in self.store.list_models()
                      if m.metadata.get("parent")]
        return pairs

    def check_prompt(self, battle_id: str | None, prompt: str) -> str:
        text = (prompt or "").strip()
        if not text:
            raise ArenaError("Type a message first.")
        if len(text) > self.settings.max_input_chars:
            raise ArenaError(
                f"Your message has {len(text):,} characters; the limit is "
                f"{self.settings.max_input_chars:,}. Shorten it and send again (nothing was sent)."
            )
        if battle_id:
            battle = self._battle(battle_id)
            if len(_user_turns(battle.sides[0])) >= self.settings.max_turns:
                raise ArenaError(f"This battle reached {self.settings.max_turns} turns: vote, then start a new round.")
        return text

    def play_turn(self, battle_id: str, prompt: str) -> Iterator[TurnView]:
        """Sends the user's message to both sides at once and streams both answers."""
        text = self.check_prompt(battle_id, prompt)
        battle = self._battle(battle_id)
        if not battle.busy.acquire(blocking=False):
            raise ArenaError("Both models are still answering; wait for them to finish.")
        try:
            if battle.record is not None and battle.record.status == "error":
                raise ArenaError("A model failed in this battle: press Regenerate or start a new round.")
            for side in battle.sides:
                side.messages.append({"role": "user", "content": text})
            yield from self._run_turn(battle)
        finally:
            battle.busy.release()

    def regenerate(self, battle_id: str) -> Iterator[TurnView]:
        """Redoes the last turn on both sides (a failed turn included)."""
        battle = self._battle(battle_id)
        if not battle.busy.acquire(blocking=False):
            raise ArenaError("Both models are still answering; wait for them to finish.")
        try:
            if not battle.sides[0].messages:
                raise ArenaError("Nothing to regenerate yet.")
            for side in battle.sides:
                if side.messages[-1]["role"] == "assistant":
                    side.messages.pop()
                del side.thinking[len(_user_turns(side)) - 1:]
                del side.metrics[len(_user_turns(side)) - 1:]
            yield from self._run_turn(battle)
        finally:
            battle.busy.release()

    def vote(self, battle_id: str, outcome: Outcome, voter: str,
             reason: str | None = None, comment: str | None = None,
             then: Callable[[Execute], None] | None = None) -> Reveal:
        """Records the battle's only vote and reveals the names. Nothing is written on refusal.
        `then` runs in the vote's transaction (a campaign closes its slot; see Store.record_vote)."""
        vote = self.store.record_vote(battle_id, outcome, voter, reason, comment, then)
        with self._lock:
            self._battles.pop(battle_id, None)
        return Reveal(vote.model_a, vote.model_b, vote.outcome, vote.identity_leak)

    def reveal_after_error(self, battle_id: str) -> tuple[str, str, str]:
        """Names and error details of a battle that failed and so can never be voted."""
        battle = self._battle(battle_id)
        if battle.record is None or battle.record.status != "error":
            raise ArenaError("Only a failed battle can be revealed without a vote.")
        detail = "; ".join(f"{s.contestant.name}: {s.error_detail}" for s in battle.sides if s.error_detail)
        return battle.sides[0].contestant.name, battle.sides[1].contestant.name, detail

    def resume(self, battle_id: str) -> TurnView | None:
        """The finished state of a live battle (a labeller came back to it), or None when the
        battle is gone, failed or still answering (the caller starts a fresh one)."""
        with self._lock:
            battle = self._battles.get(battle_id)
        if battle is None or battle.record is None or battle.record.status != "ready":
            return None
        if battle.busy.locked():
            return None
        return self._view(battle, finished=True)

    def history(self, battle_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Both conversations of a live battle, as the chat boxes show them (no names)."""
        battle = self._battle(battle_id)
        return list(battle.sides[0].messages), list(battle.sides[1].messages)

    def discard(self, battle_id: str | None) -> None:
        """Forgets a battle that will not be voted (the user started a new round)."""
        if battle_id:
            with self._lock:
                self._battles.pop(battle_id, None)

    def _battle(self, battle_id: str) -> _Battle:
        with self._lock:
            battle = self._battles.get(battle_id)
        if battle is None:
            raise ArenaError("This battle is over or unknown (was the app restarted?). Start a new round.")
        return battle

    # -- one turn on both sides -------------------------------------------------------------

    def _run_turn(self, battle: _Battle) -> Iterator[TurnView]:
        for side in battle.sides:
            side.answer, side.reasoning, side.error, side.error_detail = "", "", None, None
            side.metrics_now = {}
        self._save(battle, status="open")
        updates: queue.Queue = queue.Queue()
        cancel = threading.Event()
        threads = [
            threading.Thread(target=self._answer, args=(side, index, updates, cancel), daemon=True)
            for index, side in enumerate(battle.sides)
        ]
        for thread in threads:
            thread.start()
        running = 2
        last_yield = 0.0
        try:
            yield self._view(battle, finished=False)  # the new message shows before any answer
            while running:
                try:
                    item = updates.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item == "done":
                    running -= 1
                now = time.monotonic()
                if item == "done" or now - last_yield > 0.05:
                    last_yield = now
                    yield self._view(battle, finished=False)
        except GeneratorExit:
            cancel.set()
            raise
        failed = any(side.error for side in battle.sides)
        for side in battle.sides:
            side.thinking.append(side.reasoning or None)
            if side.error:
                side.metrics.append({**side.metrics_now, "error": side.error_detail, "answer": side.answer})
            else:
                side.metrics.append(side.metrics_now)
            if not failed:
                side.messages.append({"role": "assistant", "content": side.answer})
        shown = [s.answer for s in battle.sides]
        if self.settings.thinking == "folded":
            shown += [s.reasoning for s in battle.sides]
        battle.leak = battle.leak or find_identity_leak(shown, self.pool.identities(),
                                                        self.settings.identity_terms)
        self._save(battle, status="error" if failed else "ready")
        yield self._view(battle, finished=True)

    def _answer(self, side: _Side, index: int, updates: queue.Queue, cancel: threading.Event) -> None:
        contestant = side.contestant
        enable_thinking = None
        if contestant.thinking_switch:
            enable_thinking = self.settings.thinking != "off"
        try:
            for event in stream_chat(contestant.endpoint, side.messages, contestant.generation,
                                     enable_thinking, self.settings.request_timeout_s):
                if cancel.is_set():
                    side.error, side.error_detail = "the answer was cancelled", "cancelled"
                    break
                if isinstance(event, Delta):
                    side.answer, side.reasoning = event.content, event.reasoning
                    updates.put(index)
                elif isinstance(event, ChatResult):
                    side.answer, side.reasoning = event.content, event.reasoning
                    side.metrics_now = event.metrics()
                    if not event.content.strip():
                        side.error, side.error_detail = "the model returned an empty answer", "empty answer"
        except ChatError as exc:
            side.error, side.error_detail = exc.public, exc.detail
            self.pool.report_failure(contestant.name, exc.detail)
        finally:
            updates.put("done")

    def _view(self, battle: _Battle, finished: bool) -> TurnView:
        a, b = battle.sides
        show_thinking = self.settings.thinking == "folded"

        def chat(side: _Side) -> list[dict[str, Any]]:
            live = LiveAnswer(side.answer, side.reasoning if show_thinking else "", side.error, not finished)
            return render_pane(side.messages, side.thinking if show_thinking else (), live)

        return TurnView(
            answers=(a.answer, b.answer),
            thinking=(a.reasoning if show_thinking else "", b.reasoning if show_thinking else ""),
            errors=(a.error, b.error),
            finished=finished,
            votable=finished and not (a.error or b.error),
            chats=(chat(a), chat(b)),
        )

    def _save(self, battle: _Battle, status: str) -> None:
        a, b = battle.sides
        record = battle.record or BattleRecord(
            battle_id=battle.battle_id, voter=battle.voter,
            model_a=a.contestant.name, model_b=b.contestant.name,
            campaign_id=battle.campaign_id, prompt_id=battle.prompt_id,
        )
        record = dataclasses.replace(
            record,
            status=status,  # type: ignore[arg-type]
            turns=len(_user_turns(a)),
            conversation_a=list(a.messages), conversation_b=list(b.messages),
            thinking_a=list(a.thinking), thinking_b=list(b.thinking),
            generation_a=dataclasses.asdict(a.contestant.generation),
            generation_b=dataclasses.asdict(b.contestant.generation),
            metrics_a=list(a.metrics), metrics_b=list(b.metrics),
            identity_leak=battle.leak is not None, leak_reason=battle.leak,
            error="; ".join(f"{s.contestant.name}: {s.error_detail}" for s in battle.sides if s.error_detail) or None,
        )
        self.store.save_battle(record)
        battle.record = record

    def active_battles(self) -> int:
        with self._lock:
            return len(self._battles)


def _user_turns(side: _Side) -> list[dict[str, Any]]:
    return [m for m in side.messages if m["role"] == "user"]


def voter_id(username: str | None, session_hash: str | None) -> str:
    """Login name when auth is on, else a pseudonymous id derived from the browser session."""
    if username:
        return f"user:{username}"
    return f"anon:{(session_hash or 'unknown')[:12]}"


__all__ = ["Arena", "ArenaError", "Reveal", "TurnView", "voter_id"]
