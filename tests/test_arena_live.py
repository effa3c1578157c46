"""Battles end to end through the Arena service against the real vLLM server."""

from __future__ import annotations

import random

import pytest

from conftest import CONTESTANTS
from openai_stub import StubEndpoint
from qwen3arena.arena import Arena, ArenaError
from qwen3arena.config import ArenaSettings, EndpointSpec, GenerationParams
from qwen3arena.serve import Contestant, ContestantPool, Endpoint, endpoint_contestant
from qwen3arena.store import Store, VoteRejected


def play(arena: Arena, battle_id: str, prompt: str):
    views = list(arena.play_turn(battle_id, prompt))
    assert views[-1].finished
    return views


def test_a_full_battle_streams_both_sides_then_takes_one_vote(runtime):
    arena = runtime.arena
    battle_id = arena.start_battle("anon:test")
    views = play(arena, battle_id, "How long does milk keep in the fridge?")
    assert len(views) >= 2, "answers stream in several updates"
    final = views[-1]
    assert final.votable and all(final.answers) and final.errors == (None, None)
    play(arena, battle_id, "Can I freeze it?")  # multi-turn: the vote covers both turns
    reveal = arena.vote(battle_id, "model_b", "anon:test")
    assert {reveal.model_a, reveal.model_b} <= set(CONTESTANTS) and reveal.model_a != reveal.model_b
    record = runtime.store.get_battle(battle_id)
    assert record.status == "voted" and record.turns == 2
    assert [m["role"] for m in record.conversation_a] == ["user", "assistant"] * 2
    assert record.conversation_a[1]["content"] == final.answers[0]
    assert record.metrics_b[0]["completion_tokens"] > 0 and record.metrics_b[0]["ttft_s"] > 0
    assert record.generation_a["temperature"] == 0.0
    with pytest.raises(VoteRejected):
        arena.vote(battle_id, "model_a", "anon:test")
    votes = [v for v in runtime.store.list_votes() if v.battle_id == battle_id]
    assert len(votes) == 1 and votes[0].outcome == "model_b"


def test_regenerate_redoes_the_last_turn_on_both_sides(runtime):
    arena = runtime.arena
    battle_id = arena.start_battle("anon:test")
    first = play(arena, battle_id, "How do I cook eggs?")[-1]
    again = list(arena.regenerate(battle_id))[-1]
    assert again.votable
    assert again.answers == first.answers  # greedy decoding: same answers again
    record = runtime.store.get_battle(battle_id)
    assert record.turns == 1 and len(record.conversation_a) == 2 and len(record.metrics_a) == 1
    arena.discard(battle_id)


def test_empty_and_overlong_prompts_are_refused_before_anything_is_sent(runtime):
    arena = runtime.arena
    before = runtime.store.count_battles()
    with pytest.raises(ArenaError, match="Type a message"):
        arena.check_prompt(None, "   ")
    battle_id = arena.start_battle("anon:test")
    with pytest.raises(ArenaError, match="limit is 4,000"):
        list(arena.play_turn(battle_id, "x" * 4001))
    assert runtime.store.count_battles() == before
    arena.discard(battle_id)


def _pair_arena(store: Store, runtime, stub: StubEndpoint, rng_seed: int = 0) -> Arena:
    """An arena whose only contestants are the real base model and a stub endpoint."""
    pool = ContestantPool(None)
    pool.add(Contestant("tiny-qwen3-base", Endpoint(runtime.server.base_url, "tiny-qwen3-base"),
                        GenerationParams(temperature=0, max_tokens=32), managed=False))
    pool.add(endpoint_contestant(EndpointSpec(name="external-model", base_url=stub.base_url),
                                 GenerationParams(temperature=0, max_tokens=32)))
    settings = ArenaSettings(identity_terms=["qwen", "alibaba"])
    return Arena(store, pool, settings, random.Random(rng_seed))


def test_an_endpoint_that_dies_mid_answer_makes_the_battle_unvotable(runtime, tmp_path):
    stub = StubEndpoint("one two three four five six", drop_after=2, model="external-model")
    store = Store(tmp_path / "db.duckdb")
    try:
        arena = _pair_arena(store, runtime, stub)
        battle_id = arena.start_battle("anon:test")
        final = play(arena, battle_id, "Hello.")[-1]
        assert not final.votable
        failed = [e for e in final.errors if e]
        assert failed and "external-model" not in failed[0]
        with pytest.raises(VoteRejected, match="failed"):
            arena.vote(battle_id, "model_a", "anon:test")
        assert store.list_votes() == []
        record = store.get_battle(battle_id)
        assert record.status == "error" and "external-model" in record.error
        # names and details may be shown once the battle can no longer be voted
        names = arena.reveal_after_error(battle_id)
        assert "external-model" in names[:2]
        # the failing endpoint is kept out of the next draws: no pair left
        with pytest.raises(ArenaError, match="needs two models"):
            arena.start_battle("anon:test")
    finally:
        store.close()
        stub.close()


def test_a_dead_endpoint_is_excluded_from_the_draw(runtime, tmp_path):
    stub = StubEndpoint("hi", model="external-model")
    stub.close()  # down before the first draw
    store = Store(tmp_path / "db.duckdb")
    arena = _pair_arena(store, runtime, stub)
    with pytest.raises(ArenaError, match="1 is up"):
        arena.start_battle("anon:test")
    store.close()


def test_an_answer_that_names_its_model_flags_the_battle_and_keeps_the_vote(runtime, tmp_path):
    stub = StubEndpoint("I am Qwen, created by Alibaba Cloud.", model="external-model")
    store = Store(tmp_path / "db.duckdb")
    try:
        arena = _pair_arena(store, runtime, stub)
        battle_id = arena.start_battle("anon:test")
        assert play(arena, battle_id, "Who are you?")[-1].votable
        reveal = arena.vote(battle_id, "tie", "anon:test")
        assert reveal.identity_leak
        (vote,) = store.list_votes()
        assert vote.identity_leak and store.get_battle(battle_id).leak_reason in {"qwen", "alibaba"}
    finally:
        store.close()
        stub.close()


def test_a_restart_mid_battle_loses_no_vote_and_allows_none_on_the_old_battle(runtime, tmp_path):
    path = tmp_path / "db.duckdb"
    store = Store(path)
    arena = Arena(store, runtime.pool, ArenaSettings())
    voted = arena.start_battle("anon:test")
    play(arena, voted, "Hi.")
    arena.vote(voted, "model_a", "anon:test")
    pending = arena.start_battle("anon:test")
    play(arena, pending, "How should I store bread?")
    store.close()  # the app stops with a battle waiting for its vote
    store = Store(path)
    assert store.interrupt_unfinished_battles() == 1
    arena = Arena(store, runtime.pool, ArenaSettings())
    with pytest.raises(VoteRejected, match="app restarted.*closed without a vote"):
        arena.vote(pending, "model_a", "anon:test")
    assert [v.battle_id for v in store.list_votes()] == [voted]
    store.close()
