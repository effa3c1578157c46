"""The blind battle, server-side: draw a pair, stream both answers at once, take one vote.

Everything the UI may show comes out as TurnView or a rejection message, and neither names
a model until vote() returns the Reveal. Live battles sit in memory keyed by a random id;
every finished turn is written to the store, so a vote always refers to persisted answers.
Both chat panes are rendered here from the battle itself (TurnView.chats): the server's
conversation is the only one, a browser's copy is never read back.

A page (a browser session) holds one battle at a time: starting a battle for a session closes
its previous one, and a vote from a session must name the battle that session holds, so a vote
only ever goes to the battle the voter sees (a closed battle's late frames cannot bring it back
to life).

Undo without bias (docs/arena.md): cast() stores the vote at once but shows no name; for
`undo_window_s` the same voter on the same page may undo() it (the battle is votable again), and
the names come only from reveal(), which makes the vote final (the page calls it when the window
closes, or early on "Show the models"). Nothing counts a vote before it is final. repair() keeps
the voter's own better answer with their vote, within `repair_window_s`. Answers are capped in characters and seconds (ArenaSettings); a capped answer is kept,
shown as cut off, and stored with finish_reason CUT_OFF, which the harvest never uses.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import queue
import random
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from qwen3arena.errors import Refused
from qwen3arena.arena.leaks import find_identity_leak
from qwen3arena.arena.panes import LiveAnswer, render_pane
from qwen3arena.arena.informative import draw_pair
from qwen3arena.arena.sampling import model_weights
from qwen3arena.config import ArenaSettings
from qwen3arena.serve import ChatResult, Contestant, ContestantPool, Delta, stream_chat
from qwen3arena.serve.chat import CUT_OFF, ChatError, CutOff, EndpointTimeout, classify
from qwen3arena.store import (
    BattleRecord, Execute, NotYourVote, Outcome, RepairRejected, Store, UndoRejected, VoteFinal, VoteRecord,
    VoteRejected, utcnow,
)

# How long past max_answer_s the arena waits for a side whose endpoint sends nothing at all
# (stream_chat checks the cap between chunks; a silent endpoint is cut here).
DEADLINE_GRACE_S = 2.0
MAX_EXPIRED_IDS = 10_000  # remembered so a late vote is told why (ids only: ~1 MB at most)


class ArenaError(Refused, ValueError):
    """A request the arena refuses; the message is safe to show (it names no model)."""


class BattleClosed(ArenaError, VoteRejected):
    """A vote or turn for a battle that is not open on the voter's page any more (voted, closed
    by a new round, or left by a restart). Nothing is written."""


class NoBattle(ArenaError):
    """A vote or regenerate from a page that holds no battle."""


class StillAnswering(ArenaError):
    """The battle's models are still answering its last message."""


class EmptyAnswer(ChatError):
    """The endpoint finished without any answer text."""


class Cancelled(ChatError):
    """The turn was stopped (the page left, or the battle was closed) before this side finished."""


@dataclass(frozen=True)
class TurnView:
    """What a browser may see of a battle in progress: text only, no identities. `chats` are
    both whole conversations as the panes show them, the turn in flight included.
    `error_kinds` are the failures' stable kinds (ChatError subclasses' names) for callers that
    must tell failures apart; `cut_off` says which answer hit a cap ("chars" or "time")."""

    answers: tuple[str, str]
    thinking: tuple[str, str]
    errors: tuple[str | None, str | None]
    finished: bool
    votable: bool
    chats: tuple[list[dict[str, Any]], list[dict[str, Any]]]
    battle_id: str = ""
    error_kinds: tuple[str | None, str | None] = (None, None)
    cut_off: tuple[CutOff | None, CutOff | None] = (None, None)


@dataclass(frozen=True)
class Reveal:
    model_a: str
    model_b: str
    outcome: Outcome
    identity_leak: bool


@dataclass(frozen=True)
class Ballot:
    """A vote just recorded, as its voter may see it before the reveal: no names. `undo_s`:
    seconds left to undo it (0: final; the names may be shown). `preferred`: the preferred
    answer's text, what a repair starts from (None for a tie or both bad)."""

    battle_id: str
    vote_id: str
    outcome: Outcome
    undo_s: float
    preferred: str | None = None


@dataclass(frozen=True)
class Undone:
    """A vote taken back: the battle is votable again."""

    battle_id: str
    outcome: Outcome


@dataclass(frozen=True)
class Repaired:
    """A repair kept with its vote (what the Data tab shows and the harvest trains on)."""

    battle_id: str
    vote_id: str
    outcome: Outcome
    repair: str
    original: str | None               # the preferred answer it replaces (None: tie, both bad)
    repaired_by: str
    repaired_at: Any


@dataclass
class _Live:
    """One side's turn in flight. Its answering thread writes only here, so once the arena has
    closed the turn (a deadline, a closed battle) a late chunk cannot change what was shown."""

    answer: str = ""
    reasoning: str = ""
    error: ChatError | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    cut_off: CutOff | None = None


@dataclass
class _Side:
    contestant: Contestant
    messages: list[dict[str, Any]] = field(default_factory=list)
    thinking: list[str | None] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    live: _Live = field(default_factory=_Live)


@dataclass
class _Battle:
    battle_id: str
    voter: str
    sides: tuple[_Side, _Side]
    created_at: float = field(default_factory=time.time)
    busy: threading.Lock = field(default_factory=threading.Lock)
    closed: threading.Event = field(default_factory=threading.Event)
    leak: str | None = None
    record: BattleRecord | None = None
    campaign_id: str | None = None
    prompt_id: str | None = None
    session: str | None = None
    ballot: VoteRecord | None = None  # a vote cast, not revealed yet (it may still be undone)
    ballot_lock: threading.Lock = field(default_factory=threading.Lock)  # cast, undo, reveal in turn
    touched: float = field(default_factory=time.monotonic)  # last message or vote (idle expiry)


# How old the vote counts and model list a draw reads may be. Reading them from the store on every
# draw made battles that start together wait for each other's writes (one writer): at 8 battles
# at once a draw took 325 ms (median) on 2 cores beside vLLM. A pair drawn on counts a second or
# two old is drawn as well: draws are random in proportion to their scores.
SAMPLER_INPUTS_TTL_S = 2.0


class _SamplerInputs:
    """The store's answers a draw reads (vote counts and tallies, models), kept for
    SAMPLER_INPUTS_TTL_S; one caller refreshes them while the others draw on the last ones."""

    def __init__(self, store: Store, ttl_s: float = SAMPLER_INPUTS_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._taken = -math.inf
        self._values: tuple[dict[str, int], dict, list] | None = None
        self._refreshing = threading.Lock()

    def invalidate(self) -> None:
        """A vote was cast or undone here: the next draw reads the store again."""
        self._taken = -math.inf

    def _current(self) -> tuple[dict[str, int], dict, list]:
        values = self._values
        if values is not None and time.monotonic() - self._taken < self.ttl_s:
            return values
        if values is not None and not self._refreshing.acquire(blocking=False):
            return values  # another draw is reading the store now
        if values is None:
            self._refreshing.acquire()
        try:
            taken = time.monotonic()
            self._values = (self.store.vote_counts(), self.store.vote_tallies(), self.store.list_models())
            self._taken = taken
            return self._values
        finally:
            self._refreshing.release()

    def vote_counts(self) -> dict[str, int]:
        return self._current()[0]

    def vote_tallies(self) -> dict:
        return self._current()[1]

    def list_models(self) -> list:
        return self._current()[2]


class Arena:
    def __init__(self, store: Store, pool: ContestantPool, settings: ArenaSettings,
                 rng: random.Random | None = None):
        self.store = store
        self._sampler_inputs = _SamplerInputs(store)
        # battle rows written off the answer's path, in order (_run_turn)
        self._writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="arena-writes")
        self.pool = pool
        self.settings = settings
        self._rng = rng or random.SystemRandom()
        self._battles: dict[str, _Battle] = {}
        self._current: dict[str, str] = {}   # session -> the battle its page holds
        self._expired: OrderedDict[str, None] = OrderedDict()  # recent idle-closed ids, for the message
        self._last_sweep = time.monotonic()
        self._lock = threading.Lock()

    # -- battles ----------------------------------------------------------------------------

    def start_battle(self, voter: str, contestants: list[str] | None = None,
                     campaign_id: str | None = None, prompt_id: str | None = None,
                     session: str | None = None) -> str:
        """Draws a pair among the contestants that are up; returns an opaque battle id.

        A labelling campaign limits the draw to its `contestants` and tags the battle with
        its campaign and prompt (stored with the battle and its vote). A `session` (a page)
        holds one battle: its previous one is closed."""
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
            self._sampler_inputs.vote_counts(), self.settings.boost_factor, self.settings.boost_until_votes,
        )
        left, right = draw_pair(self._sampler_inputs, self.settings, weights, self._rng, self.target_pairs())
        if time.monotonic() - self._last_sweep > min(60.0, self.settings.battle_idle_s / 4):
            self.expire_idle()
        battle = _Battle(uuid.uuid4().hex, voter, (_Side(available[left]), _Side(available[right])),
                         campaign_id=campaign_id, prompt_id=prompt_id, session=session)
        with self._lock:
            previous = self._battles.get(self._current.get(session, "")) if session is not None else None
            if previous is not None:
                self._close_locked(previous)
            self._battles[battle.battle_id] = battle
            if session is not None:
                self._current[session] = battle.battle_id
        return battle.battle_id

    def target_pairs(self) -> list[tuple[str, str]]:
        """The configured target pairs, plus each checkpoint with its parent when asked."""
        pairs = [(a, b) for a, b in self.settings.target_pairs]
        if self.settings.parent_pairs and self.settings.target_share > 0:
            pairs += [(m.name, m.metadata["parent"]) for m in self._sampler_inputs.list_models()
                      if m.metadata.get("parent")]
        return pairs

    def current(self, session: str) -> str | None:
        """The battle the session's page holds, if any."""
        with self._lock:
            return self._current.get(session)

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

    def send(self, session: str, voter: str, prompt: str) -> Iterator[TurnView]:
        """A page's message: the next turn of the battle the session holds, or the first turn of
        a new battle when it holds none."""
        battle_id = self.current(session)
        text = self.check_prompt(battle_id, prompt)
        if battle_id is None:
            battle_id = self.start_battle(voter, session=session)
        yield from self.play_turn(battle_id, text)

    def play_turn(self, battle_id: str, prompt: str) -> Iterator[TurnView]:
        """Sends the user's message to both sides at once and streams both answers."""
        text = self.check_prompt(battle_id, prompt)
        battle = self._battle(battle_id)
        if not battle.busy.acquire(blocking=False):
            raise StillAnswering("Both models are still answering your last message; wait for them to "
                                 "finish, then send this one (it was not sent).")
        try:
            self._check_no_ballot(battle)
            if battle.record is not None and battle.record.status == "error":
                raise ArenaError("A model failed in this battle: press Regenerate or start a new round.")
            for side in battle.sides:
                side.messages.append({"role": "user", "content": text})
            yield from self._run_turn(battle)
        finally:
            battle.touched = time.monotonic()  # idle from the end of the answers
            battle.busy.release()

    def regenerate(self, battle_id: str | None) -> Iterator[TurnView]:
        """Redoes the last turn on both sides (a failed turn included)."""
        if not battle_id:
            raise NoBattle("Nothing to regenerate yet.")
        battle = self._battle(battle_id)
        if not battle.busy.acquire(blocking=False):
            raise StillAnswering("Both models are still answering; wait for them to finish.")
        try:
            self._check_no_ballot(battle)
            if not battle.sides[0].messages:
                raise NoBattle("Nothing to regenerate yet.")
            for side in battle.sides:
                if side.messages[-1]["role"] == "assistant":
                    side.messages.pop()
                del side.thinking[len(_user_turns(side)) - 1:]
                del side.metrics[len(_user_turns(side)) - 1:]
            yield from self._run_turn(battle)
        finally:
            battle.touched = time.monotonic()  # idle from the end of the answers
            battle.busy.release()

    def vote(self, battle_id: str | None, outcome: Outcome, voter: str,
             reason: str | None = None, comment: str | None = None,
             then: Callable[[Execute], None] | None = None, session: str | None = None) -> Reveal:
        """Records the battle's only vote and reveals the names at once: the vote is final, no
        undo (a campaign's vote, scripts). Nothing is written on refusal. `then` runs in the
        vote's transaction (a campaign closes its slot; see Store.record_vote). The checks are
        cast()'s."""
        vote = self._record(battle_id, outcome, voter, reason, comment, then, session, undo_window_s=0.0)
        return Reveal(vote.model_a, vote.model_b, vote.outcome, vote.identity_leak)

    def cast(self, battle_id: str | None, outcome: Outcome, voter: str, session: str | None = None,
             reason: str | None = None, comment: str | None = None) -> Ballot:
        """Records the battle's only vote, and shows no name: for `undo_window_s` the voter may
        undo() it from the same page; reveal() gives the names and makes it final (at once when
        the window is 0). Nothing is written on refusal.

        With a `session` (a page), the vote must be for the battle that session holds:
        `battle_id` is the one the page shows (None: whatever it holds, for API callers without
        a page). A battle no longer live (voted, closed by a new round, left by a restart) is
        refused with BattleClosed, saying which. Without a session (a campaign, whose slot names
        its battle) a battle not live here is left to the store's checks."""
        vote = self._record(battle_id, outcome, voter, reason, comment, None, session,
                            undo_window_s=self.settings.undo_window_s)
        return Ballot(vote.battle_id, vote.vote_id, vote.outcome, self._undo_left(vote),
                      self.preferred_answer(vote.battle_id, vote.outcome))

    def _record(self, battle_id: str | None, outcome: Outcome, voter: str, reason: str | None,
                comment: str | None, then: Callable[[Execute], None] | None, session: str | None,
                undo_window_s: float) -> VoteRecord:
        with self._lock:
            current = self._current.get(session) if session is not None else None
            battle_id = battle_id or current
            battle = self._battles.get(battle_id) if battle_id else None
        if not battle_id:
            raise NoBattle("Start a battle before voting.")
        if battle is None:
            record = self.store.get_battle(battle_id)
            # a page votes only on the battle it holds; without a page (a campaign's slot knows its
            # battle) the store decides, but a restart's leftover says so in words of its own
            if session is not None or record is None or record.status == "interrupted":
                raise self._gone(battle_id, record)
            vote = self.store.record_vote(battle_id, outcome, voter, reason, comment, then)
            self._sampler_inputs.invalidate()
            return vote
        if session is not None and battle.session != session:
            raise BattleClosed("This battle is not the one open on your page, so the vote was not counted.")
        if battle.busy.locked():
            raise StillAnswering("Wait until both answers are complete before voting.")
        with battle.ballot_lock:  # a double click waits here, then meets the vote already cast
            if battle.ballot is not None:
                raise BattleClosed("This battle already has your vote (undo it first to change it).")
            vote = self.store.record_vote(battle_id, outcome, voter, reason, comment, then, undo_window_s)
            self._sampler_inputs.invalidate()
            if undo_window_s > 0:
                battle.ballot = vote  # the page holds it until the reveal
                return vote
        with self._lock:
            self._close_locked(battle)
        return vote

    def pending(self, session: str) -> Ballot | None:
        """The vote the page cast and has not revealed yet, with the seconds left to undo it."""
        with self._lock:
            battle = self._battles.get(self._current.get(session, ""))
        vote = battle.ballot if battle is not None else None
        if vote is None:
            return None
        return Ballot(vote.battle_id, vote.vote_id, vote.outcome, self._undo_left(vote))

    def reveal(self, battle_id: str | None, voter: str, session: str | None = None) -> Reveal:
        """The names of the voter's own voted battle. The vote is final from here on (the undo
        window ends now if it was still open) and the battle is closed. Refused: no vote (never
        cast, or undone), someone else's vote or page."""
        with self._lock:
            battle_id = battle_id or (self._current.get(session) if session is not None else None)
            battle = self._battles.get(battle_id or "")
        if not battle_id:
            raise NoBattle("There is no vote to reveal: vote first.")
        if battle is not None and battle.ballot is not None:
            if session is not None and battle.session != session:
                raise NotYourVote("This vote was cast on another page.")
            with battle.ballot_lock:
                vote = self.store.get_vote(battle_id)
                if vote is None or vote.voter != voter:
                    raise NotYourVote("This vote is not yours.") if vote else NoBattle("There is no vote to reveal.")
                vote = self.store.reveal_vote(battle_id) or vote
                battle.ballot = None
            with self._lock:
                self._close_locked(battle)
            return Reveal(vote.model_a, vote.model_b, vote.outcome, vote.identity_leak)
        vote = self.store.get_vote(battle_id)
        if vote is None:
            raise NoBattle("There is no vote to reveal on this battle: vote first.")
        if vote.voter != voter:
            raise NotYourVote("This vote is not yours.")
        vote = self.store.reveal_vote(battle_id) or vote  # shown again, or after a restart: final now
        return Reveal(vote.model_a, vote.model_b, vote.outcome, vote.identity_leak)

    def undo(self, battle_id: str | None, voter: str, session: str | None = None) -> Undone:
        """Takes back the voter's vote before its names were shown, within `undo_window_s`; the
        battle is votable again (and may be chatted on). Refused, nothing changed: UndoRejected
        (no vote: never cast, or undone already), NotYourVote (another voter or page),
        VoteFinal (revealed, or the window closed)."""
        with self._lock:
            battle_id = battle_id or (self._current.get(session) if session is not None else None)
            battle = self._battles.get(battle_id or "")
        if battle is None or battle.ballot is None:
            vote = self.store.get_vote(battle_id) if battle_id else None
            if vote is None:
                raise UndoRejected("There is no vote to undo (it was undone already, or never cast).")
            if vote.voter != voter or (battle is not None and session is not None and battle.session != session):
                raise NotYourVote("This vote is not yours, so you cannot undo it.")
            raise VoteFinal("This vote is final: the models were shown, or its undo time ran out.")
        if session is not None and battle.session != session:
            raise NotYourVote("This vote was cast on another page, so it cannot be undone here.")
        with battle.ballot_lock:
            if battle.ballot is None:  # a second click, or the reveal, came first
                raise UndoRejected("There is no vote to undo (it was undone already, or the models were shown).")
            vote = self.store.undo_vote(battle.battle_id, voter)
            self._sampler_inputs.invalidate()
            battle.ballot = None
            if battle.record is not None:
                battle.record = dataclasses.replace(battle.record, status="ready")
        return Undone(vote.battle_id, vote.outcome)

    def preferred_answer(self, battle_id: str, outcome: Outcome | None = None) -> str | None:
        """The last answer the vote preferred (what a repair starts from); None for a tie or both
        bad, which prefer neither."""
        if outcome is None:
            vote = self.store.get_vote(battle_id)
            outcome = vote.outcome if vote else None
        if outcome not in ("model_a", "model_b"):
            return None
        record = self.store.get_battle(battle_id)
        if record is None:
            return None
        conversation = record.conversation_a if outcome == "model_a" else record.conversation_b
        answers = [m.get("content") for m in conversation if m.get("role") == "assistant"]
        return answers[-1] if answers and isinstance(answers[-1], str) else None

    def repair(self, battle_id: str | None, voter: str, text: str | None) -> Repaired:
        """Keeps the voter's own better answer with their vote: an edit of the preferred answer,
        or an answer written when both were bad (plain text, at most `max_repair_chars`), within
        `repair_window_s` of the vote; a later repair replaces an earlier one. Refused, nothing
        kept: RepairRejected (empty, too long, no vote, too late), NotYourVote."""
        answer = (text or "").strip()
        if not answer:
            raise RepairRejected("Write the better answer first: an empty repair is not kept.")
        limit = self.settings.max_repair_chars
        if len(answer) > limit:
            raise RepairRejected(f"Your answer has {len(answer):,} characters; the limit is {limit:,}. "
                                 "Shorten it and save again (nothing was kept).")
        vote = self.store.get_vote(battle_id) if battle_id else None
        if vote is None:
            raise RepairRejected("There is no vote to repair: vote first, then repair.")
        if vote.voter != voter:
            raise NotYourVote("You can only repair your own vote.")
        saved = self.store.repair_vote(vote.battle_id, vote.vote_id, voter, answer,
                                       self.preferred_answer(vote.battle_id, vote.outcome),
                                       self.settings.repair_window_s)
        return Repaired(saved.battle_id, saved.vote_id, saved.outcome, saved.repair or "", saved.repair_original,
                        saved.repaired_by or voter, saved.repaired_at)

    @staticmethod
    def _undo_left(vote: VoteRecord) -> float:
        if vote.final_at is None:
            return 0.0
        return max(0.0, (vote.final_at - utcnow()).total_seconds())

    @staticmethod
    def _check_no_ballot(battle: _Battle) -> None:
        if battle.ballot is not None:
            raise ArenaError("You voted on this battle: undo your vote to go on, or start a new round.")

    def reveal_after_error(self, battle_id: str) -> tuple[str, str, str]:
        """Names and error details of a battle that failed and so can never be voted."""
        battle = self._battle(battle_id)
        if battle.record is None or battle.record.status != "error":
            raise ArenaError("Only a failed battle can be revealed without a vote.")
        detail = "; ".join(f"{s.contestant.name}: {s.live.error.detail}" for s in battle.sides if s.live.error)
        return battle.sides[0].contestant.name, battle.sides[1].contestant.name, detail

    def resume(self, battle_id: str) -> TurnView | None:
        """The finished state of a live battle (a labeller came back to it), or None when the
        battle is gone or failed (the caller starts a fresh one). Refused while the models are
        still answering it: starting it over would throw those answers away."""
        with self._lock:
            battle = self._battles.get(battle_id)
        if battle is None or battle.record is None:
            return None
        if battle.busy.locked():
            raise StillAnswering("Both models are still answering this prompt; wait for them to finish.")
        if battle.record.status != "ready":
            return None
        return self._view(battle, finished=True)

    def view(self, battle_id: str | None) -> TurnView | None:
        """A live battle as its panes show it now (to redraw a page), or None."""
        with self._lock:
            battle = self._battles.get(battle_id or "")
        if battle is None:
            return None
        return self._view(battle, finished=not battle.busy.locked())

    def history(self, battle_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Both conversations of a live battle, as the chat boxes show them (no names)."""
        battle = self._battle(battle_id)
        return list(battle.sides[0].messages), list(battle.sides[1].messages)

    def discard(self, battle_id: str | None) -> None:
        """Closes a battle that will not be voted (the user started a new round): an answer in
        flight stops, no further frame of it is streamed, and no vote can reach it."""
        if battle_id:
            with self._lock:
                battle = self._battles.get(battle_id)
                if battle is not None:
                    self._close_locked(battle)

    def close_session(self, session: str, wait_s: float = 10.0) -> None:
        """Closes whatever battle the session's page holds (a new round), even one whose first
        frame has not reached the page yet, and returns once its stream has ended (within
        wait_s): a frame it streamed can then no longer arrive after the page was cleared."""
        with self._lock:
            battle = self._battles.get(self._current.get(session, ""))
            if battle is not None:
                self._close_locked(battle)
            self._current.pop(session, None)
        if battle is not None and battle.busy.acquire(timeout=wait_s):
            battle.busy.release()

    def _close_locked(self, battle: _Battle) -> None:
        """Forgets a live battle (the one place that does; call with self._lock held)."""
        battle.closed.set()
        self._battles.pop(battle.battle_id, None)
        if battle.session is not None and self._current.get(battle.session) == battle.battle_id:
            del self._current[battle.session]

    def _battle(self, battle_id: str) -> _Battle:
        with self._lock:
            battle = self._battles.get(battle_id)
        if battle is None:
            raise self._gone(battle_id)
        battle.touched = time.monotonic()
        return battle

    def expire_idle(self) -> int:
        """Closes the live battles untouched for `battle_idle_s` (neither answering nor holding
        a vote that may still be undone); returns how many. Runs from start_battle at most every
        minute, so a busy arena keeps its memory flat without a thread of its own."""
        now = time.monotonic()
        with self._lock:
            self._last_sweep = now
            idle = [b for b in self._battles.values()
                    if now - b.touched > self.settings.battle_idle_s and not b.busy.locked() and b.ballot is None]
            for battle in idle:
                self._close_locked(battle)
                self._expired[battle.battle_id] = None
            while len(self._expired) > MAX_EXPIRED_IDS:
                self._expired.popitem(last=False)
        return len(idle)

    def _gone(self, battle_id: str, record: BattleRecord | None = None) -> BattleClosed:
        """Why a battle is not live, from its stored record."""
        record = record or self.store.get_battle(battle_id)
        if record is None:
            return BattleClosed("This battle is unknown. Start a new round.")
        if record.status == "voted":
            return BattleClosed("This battle already has a vote.")
        if record.status == "interrupted":
            return BattleClosed("The app restarted after this battle began, so the battle was closed without a "
                                "vote. Nothing was lost: its answers are kept. Start a new round.")
        if record.status == "error":
            return BattleClosed("A model failed in this battle, so it cannot be voted. Start a new round.")
        if battle_id in self._expired:
            minutes = max(1, round(self.settings.battle_idle_s / 60))
            return BattleClosed(f"This battle sat idle for over {minutes} minute{'s' if minutes > 1 else ''} and was "
                                "closed, so it cannot be voted (nothing was recorded; its answers are kept). "
                                "Start a new round.")
        return BattleClosed("This battle was closed when a new round started, so it cannot be voted "
                            "(nothing was recorded).")

    # -- one turn on both sides -------------------------------------------------------------

    def _run_turn(self, battle: _Battle) -> Iterator[TurnView]:
        for side in battle.sides:
            side.live = _Live()
        updates: queue.Queue = queue.Queue()
        cancel = threading.Event()
        threads = [
            threading.Thread(target=self._answer, daemon=True,
                             args=(side.contestant, list(side.messages), side.live, index, updates, cancel))
            for index, side in enumerate(battle.sides)
        ]
        for thread in threads:
            thread.start()
        # The battle's row is written while the models answer, on the arena's writer thread: with
        # battles starting together each row waited for the writes before it (one writer), and
        # that wait came before every first token (docs/benchmarks.md). The turn's last write
        # waits for this one, and a store that failed it fails the turn there.
        opened = self._writes.submit(self.store.save_battle, self._battle_row(battle, "open"))
        running = {0, 1}
        deadline = time.monotonic() + self.settings.max_answer_s + DEADLINE_GRACE_S
        last_yield = 0.0
        try:
            yield self._view(battle, finished=False)  # the new message shows before any answer
            while running:
                if battle.closed.is_set():  # a new round closed it: no frame of it may reach a page
                    cancel.set()
                    return
                if time.monotonic() > deadline:
                    cancel.set()
                    for index in running:
                        battle.sides[index].live = self._cut_at_deadline(battle.sides[index].live)
                    break
                try:
                    item = updates.get(timeout=0.1)
                except queue.Empty:
                    continue
                if isinstance(item, tuple):
                    running.discard(item[1])
                now = time.monotonic()
                if (isinstance(item, tuple) or now - last_yield > 0.05) and not battle.closed.is_set():
                    last_yield = now
                    yield self._view(battle, finished=False)
        except GeneratorExit:
            cancel.set()
            if not battle.closed.is_set():  # the page went away mid-turn: the turn failed, kept as such
                for index in running:
                    battle.sides[index].live = dataclasses.replace(
                        battle.sides[index].live, error=Cancelled("the answer was cancelled", "cancelled"))
                opened.result()
                self._finish_turn(battle)
            raise
        except BaseException:
            cancel.set()
            raise
        opened.result()
        self._finish_turn(battle)
        yield self._view(battle, finished=True)

    def _cut_at_deadline(self, live: _Live) -> _Live:
        """A frozen copy of a side still running at the deadline: cut off if it said anything."""
        limit = self.settings.max_answer_s
        if live.answer.strip():
            return dataclasses.replace(live, cut_off="time",
                                       metrics={"finish_reason": CUT_OFF, "cut_off": "time", "duration_s": limit})
        return dataclasses.replace(live, error=EndpointTimeout(
            f"the model gave no answer within the arena's limit of {limit:g} s",
            f"no answer within max_answer_s={limit:g}"))

    def _finish_turn(self, battle: _Battle) -> None:
        failed = any(side.live.error for side in battle.sides)
        for side in battle.sides:
            live = side.live
            side.thinking.append(live.reasoning or None)
            if live.error:
                side.metrics.append({**live.metrics, "error": live.error.detail, "error_kind": live.error.kind,
                                     "answer": live.answer})
            else:
                side.metrics.append(dict(live.metrics))
            if not failed:
                side.messages.append({"role": "assistant", "content": live.answer})
        shown = [s.live.answer for s in battle.sides]
        if self.settings.thinking == "folded":
            shown += [s.live.reasoning for s in battle.sides]
        battle.leak = battle.leak or find_identity_leak(shown, self.pool.identities(),
                                                        self.settings.identity_terms)
        self._save(battle, status="error" if failed else "ready")

    def _answer(self, contestant: Contestant, messages: list[dict[str, Any]], live: _Live, index: int,
                updates: queue.Queue, cancel: threading.Event) -> None:
        enable_thinking = None
        if contestant.thinking_switch:
            enable_thinking = self.settings.thinking != "off"
        events = stream_chat(contestant.endpoint, messages, contestant.generation, enable_thinking,
                             self.settings.request_timeout_s, self.settings.max_answer_chars,
                             self.settings.max_answer_s)
        try:
            for event in events:
                if cancel.is_set():
                    live.error = Cancelled("the answer was cancelled", "cancelled")
                    break
                if isinstance(event, Delta):
                    live.answer, live.reasoning = event.content, event.reasoning
                    updates.put(index)
                elif isinstance(event, ChatResult):
                    live.answer, live.reasoning = event.content, event.reasoning
                    live.cut_off = event.cut_off
                    live.metrics = {**event.metrics(), **({"cut_off": event.cut_off} if event.cut_off else {})}
                    if not event.content.strip():
                        live.error = EmptyAnswer(
                            f"the model reached the arena's limit ({self._limit_text(event.cut_off)}) before it "
                            "answered" if event.cut_off else "the model returned an empty answer", "empty answer")
        except ChatError as exc:
            live.error = exc
            self.pool.report_failure(contestant.name, exc.detail)
        except Exception as exc:  # a bug here must not leave the turn waiting for this side
            live.error = classify(exc, self.settings.request_timeout_s)
        finally:
            events.close()
            updates.put(("done", index))

    def _limit_text(self, cut: CutOff | None) -> str:
        if cut == "chars":
            return f"{self.settings.max_answer_chars:,} characters"
        return f"{self.settings.max_answer_s:g} seconds"

    def _cut_note(self, cut: CutOff | None) -> str | None:
        if cut is None:
            return None
        return (f"✂️ *Cut off: this answer reached the arena's limit of {self._limit_text(cut)}. It can be voted "
                "as it stands, but a cut-off answer is never used as training data.*")

    def _view(self, battle: _Battle, finished: bool) -> TurnView:
        a, b = battle.sides
        show_thinking = self.settings.thinking == "folded"

        def chat(side: _Side) -> list[dict[str, Any]]:
            live = side.live
            pending = not finished
            shown = LiveAnswer(live.answer, live.reasoning if show_thinking else "",
                               live.error.public if live.error else None, pending, self._cut_note(live.cut_off))
            notes = [self._cut_note(m.get("cut_off")) for m in side.metrics]
            return render_pane(side.messages, side.thinking if show_thinking else (), shown, notes)

        def error(side: _Side) -> str | None:
            return side.live.error.public if side.live.error else None

        return TurnView(
            answers=(a.live.answer, b.live.answer),
            thinking=(a.live.reasoning if show_thinking else "", b.live.reasoning if show_thinking else ""),
            errors=(error(a), error(b)),
            finished=finished,
            votable=finished and not (a.live.error or b.live.error),
            chats=(chat(a), chat(b)),
            battle_id=battle.battle_id,
            error_kinds=tuple(s.live.error.kind if s.live.error else None for s in battle.sides),  # type: ignore[arg-type]
            cut_off=(a.live.cut_off, b.live.cut_off),
        )

    def _save(self, battle: _Battle, status: str) -> None:
        self.store.save_battle(self._battle_row(battle, status))

    def _battle_row(self, battle: _Battle, status: str) -> BattleRecord:
        """The battle's row as it stands, kept on the battle (what the page's state is read from)."""
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
            error="; ".join(f"{s.contestant.name}: {s.live.error.detail}"
                            for s in battle.sides if s.live.error) or None,
        )
        battle.record = record
        return record

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


__all__ = ["Arena", "ArenaError", "Ballot", "BattleClosed", "Cancelled", "EmptyAnswer", "NoBattle",
           "NotYourVote", "Repaired", "RepairRejected", "Reveal", "StillAnswering", "TurnView", "UndoRejected",
           "Undone", "VoteFinal", "voter_id"]
