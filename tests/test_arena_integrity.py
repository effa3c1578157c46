"""The arena's integrity against stub endpoints (no vLLM, no web app): a vote only ever reaches
the battle its page holds, a refused action says so, answers are capped (characters and time)
and a capped one is never harvested, and a failed answer says what went wrong without naming
the model (issue 18, items 0, 3, 4 and 9)."""

from __future__ import annotations

import random
import time

import pytest

from openai_stub import StubEndpoint
from qwen3arena.arena import Arena, BattleClosed, NoBattle, StillAnswering
from qwen3arena.config import ArenaSettings, EndpointSpec, GenerationParams
from qwen3arena.harvest import Harvester
from qwen3arena.serve import ContestantPool, Endpoint, endpoint_contestant, stream_chat
from qwen3arena.serve.chat import (
    CUT_OFF, EndpointBusy, EndpointFailed, EndpointRejected, EndpointTimeout, EndpointUnreachable,
    MalformedReply, UnfinishedStream,
)
from qwen3arena.store import Store, VoteRejected

from conftest import free_port

NAMES = ("stub-left-model", "stub-right-model")
PARAMS = GenerationParams(temperature=0, max_tokens=32)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "db.duckdb")
    yield store
    store.close()


def arena_of(store: Store, left: StubEndpoint, right: StubEndpoint, **settings) -> Arena:
    """An arena whose only two contestants are the stubs."""
    pool = ContestantPool(None)
    for name, stub in zip(NAMES, (left, right)):
        stub.model = name
        pool.add(endpoint_contestant(EndpointSpec(name=name, base_url=stub.base_url), PARAMS))
    return Arena(store, pool, ArenaSettings(**settings), random.Random(0))


def finish(frames) -> list:
    views = list(frames)
    assert views and views[-1].finished
    return views


# -- item 0: a vote only reaches the battle the page holds; refusals are said --------------------

def test_a_new_round_closes_the_streaming_battle_for_good(store, stubs):
    slow = " ".join(["word"] * 200)
    arena = arena_of(store, stubs(slow, delay_s=0.02), stubs(slow, delay_s=0.02))
    frames = arena.send("page-1", "anon:page-1", "Tell me a long story.")
    first = next(frames)
    assert not first.finished and first.battle_id == arena.current("page-1")
    arena.close_session("page-1")  # the page pressed New round while both answered
    assert list(frames) == [], "no frame of the closed battle may reach the page (it would bring it back)"
    assert arena.current("page-1") is None
    with pytest.raises(BattleClosed, match="closed when a new round started"):
        arena.vote(first.battle_id, "model_a", "anon:page-1", session="page-1")
    with pytest.raises(NoBattle, match="Start a battle before voting"):
        arena.vote(None, "model_a", "anon:page-1", session="page-1")
    assert store.list_votes() == []


def test_a_finished_but_replaced_battle_takes_no_vote(store, stubs):
    """The race the issue saw: the old battle's last frame lands after New round, its vote row
    shows, and the voter presses it. The vote names the old battle: refused, nothing counted."""
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    old = finish(arena.send("page-1", "anon:page-1", "First question?"))[-1]
    assert old.votable
    arena.close_session("page-1")
    new = finish(arena.send("page-1", "anon:page-1", "Second question?"))[-1]
    assert new.battle_id != old.battle_id
    with pytest.raises(BattleClosed):
        arena.vote(old.battle_id, "model_a", "anon:page-1", session="page-1")
    with pytest.raises(BattleClosed, match="not the one open on your page"):
        arena.vote(new.battle_id, "model_a", "anon:page-2", session="page-2")  # another page's battle
    assert store.list_votes() == []
    reveal = arena.vote(new.battle_id, "tie", "anon:page-1", session="page-1")
    assert set(NAMES) == {reveal.model_a, reveal.model_b}
    (vote,) = store.list_votes()
    assert vote.battle_id == new.battle_id
    with pytest.raises(VoteRejected, match="already has a vote"):  # the same button pressed twice
        arena.vote(new.battle_id, "model_b", "anon:page-1", session="page-1")


def test_starting_a_battle_for_a_page_closes_its_previous_one(store, stubs):
    arena = arena_of(store, stubs("a"), stubs("b"))
    first = arena.start_battle("anon:p", session="p")
    second = arena.start_battle("anon:p", session="p")
    assert arena.current("p") == second and arena.active_battles() == 1
    with pytest.raises(BattleClosed):
        arena.vote(first, "model_a", "anon:p", session="p")


def test_a_message_sent_while_both_models_answer_is_refused_out_loud(store, stubs):
    slow = " ".join(["word"] * 100)
    arena = arena_of(store, stubs(slow, delay_s=0.02), stubs(slow, delay_s=0.02))
    frames = arena.send("page-1", "anon:page-1", "First message")
    next(frames)
    with pytest.raises(StillAnswering, match="it was not sent"):
        next(arena.send("page-1", "anon:page-1", "Second message"))
    with pytest.raises(StillAnswering):
        arena.vote(None, "model_a", "anon:page-1", session="page-1")
    final = finish(frames)[-1]
    assert final.votable
    record = store.get_battle(final.battle_id)
    assert [m["content"] for m in record.conversation_a if m["role"] == "user"] == ["First message"]


def test_a_labeller_asking_for_the_prompt_again_mid_answer_is_told_to_wait(store, stubs):
    """Next prompt while answers stream used to start the same prompt over (or, clicked twice, be
    dropped without a word): the campaign's resume now refuses, saying why."""
    slow = " ".join(["word"] * 100)
    arena = arena_of(store, stubs(slow, delay_s=0.02), stubs(slow, delay_s=0.02))
    battle_id = arena.start_battle("user:lena")
    frames = arena.play_turn(battle_id, "Campaign prompt")
    next(frames)
    with pytest.raises(StillAnswering, match="still answering"):
        arena.resume(battle_id)
    finish(frames)
    assert arena.resume(battle_id).votable


# -- item 9: a battle left by a restart ---------------------------------------------------------

def test_a_vote_after_a_restart_says_the_app_restarted_and_loses_nothing(tmp_path, stubs):
    left, right = stubs("left answer"), stubs("right answer")
    path = tmp_path / "db.duckdb"
    store = Store(path)
    shown = finish(arena_of(store, left, right).send("page-1", "anon:page-1", "How long do eggs keep?"))[-1]
    assert shown.votable
    store.close()  # the app stops with the battle waiting for its vote
    store = Store(path)
    try:
        assert store.interrupt_unfinished_battles() == 1
        arena = arena_of(store, left, right)  # the restarted app; the page still shows the battle
        with pytest.raises(BattleClosed, match="app restarted.*closed without a vote.*Nothing was lost"):
            arena.vote(shown.battle_id, "model_a", "anon:page-1", session="page-1")
        assert store.list_votes() == []
        record = store.get_battle(shown.battle_id)
        assert record.conversation_a[-1]["content"] == shown.answers[0], "the answers are kept"
    finally:
        store.close()


# -- item 3: answers are capped ----------------------------------------------------------------

def test_an_endless_answer_is_cut_at_the_character_cap_and_never_harvested(store, stubs, tmp_path):
    endless = stubs("blah", endless=True)
    arena = arena_of(store, endless, stubs("A short, finished answer."), max_answer_chars=2000)
    started = time.monotonic()
    final = finish(arena.send("page-1", "anon:page-1", "Say something."))[-1]
    assert time.monotonic() - started < 30
    side = NAMES.index("stub-left-model")
    record = store.get_battle(final.battle_id)
    if record.model_a != NAMES[0]:
        side = 1
    assert final.cut_off[side] == "chars" and final.cut_off[1 - side] is None
    assert 0 < len(final.answers[side]) <= 2000
    assert final.votable, "a cut-off answer is shown and may be voted as it stands"
    note = final.chats[side][-1]["content"]
    assert "Cut off" in note and "2,000 characters" in note and "never used as training data" in note
    assert endless.hung_up.wait(10), "the endpoint was told to stop (the stream was closed)"
    metrics = (record.metrics_a, record.metrics_b)[side][0]
    assert metrics["finish_reason"] == CUT_OFF and metrics["cut_off"] == "chars"
    assert len((record.conversation_a, record.conversation_b)[side][-1]["content"]) <= 2000
    arena.vote(final.battle_id, "model_a" if side == 0 else "model_b", "anon:page-1", session="page-1")
    preview = Harvester(store, tmp_path / "rounds").preview()
    assert preview.harvest.excluded == {final.battle_id: "unfinished answer"}


def test_a_slow_drip_is_cut_at_the_time_cap(store, stubs):
    drip = stubs("drip", endless=True, delay_s=0.05)
    arena = arena_of(store, drip, stubs("done"), max_answer_s=1.0)
    started = time.monotonic()
    final = finish(arena.send("page-1", "anon:page-1", "Hello?"))[-1]
    assert time.monotonic() - started < 5
    assert "time" in final.cut_off and final.votable


def test_a_silent_endpoint_is_cut_at_the_deadline_whatever_its_read_timeout(store, stubs):
    silent = stubs("", silent=True)
    arena = arena_of(store, silent, stubs("done"), max_answer_s=1.0, request_timeout_s=60)
    started = time.monotonic()
    final = finish(arena.send("page-1", "anon:page-1", "Hello?"))[-1]
    assert time.monotonic() - started < 1.0 + 2.0 + 2.0, "the page waits no longer than the cap"
    assert not final.votable
    kinds = [k for k in final.error_kinds if k]
    assert kinds == ["EndpointTimeout"]
    assert any("no answer within the arena's limit of 1 s" in (e or "") for e in final.errors)


# -- item 4: failures say what went wrong, by type, without naming the model ---------------------

def _fail(stub: StubEndpoint | None, port: int | None = None, timeout_s: float = 10,
          messages: int = 1) -> Exception:
    base_url = stub.base_url if stub else f"http://127.0.0.1:{port}/v1"
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}] * (messages - 1)
    with pytest.raises(Exception) as info:
        list(stream_chat(Endpoint(base_url, "secret-model-name"), [*conversation, {"role": "user", "content": "q"}],
                         PARAMS, None, timeout_s))
    return info.value


FAILURES = [
    # (stub arguments, the error type, what its message says)
    (dict(raw=b"data: {not json\n\n"), MalformedReply, "not valid JSON"),
    (dict(raw=b'data: {"choices": "nonsense"}\n\n'), MalformedReply, "not a chat completion stream"),
    (dict(raw=b"<html>maintenance</html>", content_type="text/html"), MalformedReply, "it sent text/html"),
    (dict(raw=b'{"object": "chat.completion"}', content_type="application/json"), MalformedReply,
     "it sent application/json"),
    (dict(raw=b"x", content_type='text/html<img src="http://tracker.invalid/p.png">'), MalformedReply,
     "it sent something else"),
    (dict(raw=b'data: {"error": {"message": "engine died"}}\n\n'), EndpointFailed, "reported an error"),
    (dict(raw=b"oops", status=500, content_type="text/plain"), EndpointFailed, "HTTP 500"),
    (dict(raw=b'{"error": "no such model"}', status=404, content_type="application/json"), EndpointRejected,
     "HTTP 404"),
    (dict(raw=b'{"error": "slow down"}', status=429, content_type="application/json"), EndpointBusy, "HTTP 429"),
    (dict(raw=b""), UnfinishedStream, "stopped before it was finished"),
]


@pytest.mark.parametrize("stub_args, error_type, says", FAILURES, ids=[f[1].__name__ + ":" + f[2] for f in FAILURES])
def test_each_failure_has_its_own_kind_and_says_what_went_wrong(stubs, stub_args, error_type, says):
    error = _fail(stubs("", **stub_args))
    assert type(error) is error_type and error.kind == error_type.__name__
    assert says in error.public and "secret-model-name" not in error.public
    assert "unexpectedly" not in error.public


def test_a_refused_connection_and_a_timeout_are_told_apart(stubs):
    refused = _fail(None, port=free_port())
    assert isinstance(refused, EndpointUnreachable) and "connection refused" in refused.public
    timeout = _fail(stubs("", silent=True), timeout_s=0.5)
    assert isinstance(timeout, EndpointTimeout) and "timeout" in timeout.public and "0.5 s" in timeout.public


def test_a_rejected_follow_up_hints_at_the_conversations_length(stubs):
    error = _fail(stubs("", raw=b'{"error": "too long"}', status=400, content_type="application/json"), messages=3)
    assert isinstance(error, EndpointRejected) and error.status == 400
    assert "HTTP 400" in error.public and "may be too long" in error.public


def test_a_malformed_contestant_shows_what_was_wrong_before_the_vote(store, stubs):
    arena = arena_of(store, stubs("", raw=b"data: {not json\n\n"), stubs("fine answer"))
    final = finish(arena.send("page-1", "anon:page-1", "Hello?"))[-1]
    assert not final.votable
    (kind,) = [k for k in final.error_kinds if k]
    (error,) = [e for e in final.errors if e]
    assert kind == "MalformedReply" and "not valid JSON" in error
    shown = " ".join(str(m["content"]) for chat in final.chats for m in chat)
    assert "not valid JSON" in shown and not [n for n in NAMES if n in shown + error]
    record = store.get_battle(final.battle_id)
    assert "JSONDecodeError" in record.error, "the detail is kept for the admin"
    metrics = (record.metrics_a + record.metrics_b)
    assert [m.get("error_kind") for m in metrics if m.get("error_kind")] == ["MalformedReply"]


# -- issue 17 item 5: abandoned battles expire -------------------------------------------------

def test_an_abandoned_battle_expires_and_a_late_vote_is_told_why(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"), battle_idle_s=0.2)
    left = finish(arena.send("page-1", "anon:page-1", "A question?"))[-1]
    kept = finish(arena.send("page-2", "anon:page-2", "Another question?"))[-1]
    slot = arena.start_battle("user:ann", campaign_id="c1", prompt_id="p1")  # a campaign's slot, no page
    finish(arena.play_turn(slot, "A campaign prompt?"))
    time.sleep(0.3)
    finish(arena.send("page-2", "anon:page-2", "And a follow-up?"))  # page 2 is still in use
    assert arena.expire_idle() == 2 and arena.active_battles() == 1
    assert arena.current("page-1") is None
    with pytest.raises(BattleClosed, match="sat idle .* and was closed"):
        arena.vote(left.battle_id, "model_a", "anon:page-1", session="page-1")
    assert store.get_battle(left.battle_id).conversation_a[-1]["role"] == "assistant", "its answers are kept"
    arena.vote(slot, "model_b", "user:ann")  # a campaign slot is voted from the store, live or not
    arena.vote(kept.battle_id, "model_a", "anon:page-2", session="page-2")
    assert sorted(v.battle_id for v in store.list_votes()) == sorted([slot, kept.battle_id])


def test_a_battle_that_is_answering_or_holds_an_undoable_vote_does_not_expire(store, stubs):
    arena = arena_of(store, stubs("slow answer " * 5, delay_s=0.1), stubs("right"), battle_idle_s=0.05,
                     undo_window_s=30)
    frames = arena.send("page-1", "anon:page-1", "A question?")
    next(frames)  # the turn has begun: both sides are answering
    time.sleep(0.2)
    assert arena.expire_idle() == 0
    battle_id = finish(frames)[-1].battle_id
    arena.cast(battle_id, "model_a", "anon:page-1", session="page-1")  # within its undo window
    time.sleep(0.1)
    assert arena.expire_idle() == 0 and arena.active_battles() == 1


# -- the first token does not wait for the store ------------------------------------------------

def test_the_models_answer_while_the_battle_row_is_written_and_the_turn_ends_after_it(store, stubs):
    """Battles starting together used to wait for each other's battle rows (one writer) before
    the models were asked. Now the answers stream while the row is written; the turn's last
    write (status ready) still comes after the first, so the stored battle is the finished one."""
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    writes: list[tuple[float, str]] = []
    save = store.save_battle

    def slow_save(record):
        time.sleep(0.6)  # a store busy with other battles' writes
        save(record)
        writes.append((time.monotonic(), record.status))

    store.save_battle = slow_save
    started = time.monotonic()
    first_answer = None
    views = []
    for view in arena.send("page-1", "anon:page-1", "How long do eggs keep?"):
        views.append(view)
        if first_answer is None and any(view.answers):
            first_answer = time.monotonic() - started
    assert first_answer is not None and first_answer < 0.5, first_answer
    assert [status for _, status in writes] == ["open", "ready"]
    assert views[-1].finished and views[-1].votable
    assert store.get_battle(views[-1].battle_id).status == "ready"


def test_a_store_that_fails_the_battle_row_fails_the_turn_with_its_reason(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))

    def broken_save(record):
        raise VoteRejected("The database cannot be reached right now.")

    store.save_battle = broken_save
    with pytest.raises(VoteRejected, match="cannot be reached"):
        list(arena.send("page-1", "anon:page-1", "How long do eggs keep?"))
