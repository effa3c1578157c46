"""Votes from many clients at once (issue 17, item 1): they share commits (group commit), each
battle still gets exactly one vote, a vote that fails fails alone, and a vote acknowledged is
durable: kill -9 of the writing process loses none and doubles none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from qwen3arena.store import Store, VoteRejected
from ready_battles import ready_battles

REPO = Path(__file__).resolve().parents[1]


def test_concurrent_votes_share_commits_and_each_battle_gets_exactly_one(store_target):
    ids = ready_battles(store_target, 400)
    store = Store(store_target)
    accepted: dict[str, list] = {}
    refused: list[str] = []
    guard = threading.Lock()

    def client(k: int) -> None:
        # two clients for each battle: a double click, or two pages on one battle
        for battle_id in ids[(k // 2)::16]:
            try:
                vote = store.record_vote(battle_id, "model_a" if k % 2 else "model_b", f"anon:{k}")
            except VoteRejected as exc:
                assert "already has a vote" in str(exc)
                with guard:
                    refused.append(battle_id)
            else:
                with guard:
                    accepted.setdefault(battle_id, []).append(vote)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == sorted(ids) and all(len(v) == 1 for v in accepted.values())
    assert sorted(refused) == sorted(ids)
    stored = {v.battle_id: v for v in store.list_votes()}
    assert {b: (v[0].vote_id, v[0].outcome) for b, v in accepted.items()} == \
        {b: (v.vote_id, v.outcome) for b, v in stored.items()}
    assert store.vote_commits < len(ids) / 2, "concurrent votes share commits"
    store.close()


def test_a_vote_whose_step_fails_fails_alone_in_a_shared_commit(store_target):
    ids = ready_battles(store_target, 12)
    store = Store(store_target)
    gate, holding = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def hold(execute) -> None:  # the first vote holds the writer while the others queue up
        holding.set()
        gate.wait(10)

    def fail(execute) -> None:
        execute("UPDATE battles SET voter = 'changed' WHERE battle_id = 'b1'")  # undone with the vote
        raise RuntimeError("the campaign slot is gone")

    def vote(battle_id: str, then=None) -> None:
        try:
            outcomes[battle_id] = store.record_vote(battle_id, "model_a", "anon:x", then=then)
        except Exception as exc:  # noqa: BLE001 (the test reads which)
            outcomes[battle_id] = exc

    first = threading.Thread(target=vote, args=("b0", hold))
    first.start()
    assert holding.wait(10)
    others = [threading.Thread(target=vote, args=(b, fail if b == "b1" else None)) for b in ids[1:]]
    for t in others:
        t.start()
    while len(store._vote_queue) < len(others):  # every other vote is queued behind the first
        threading.Event().wait(0.01)
    commits = store.vote_commits
    gate.set()
    for t in [first, *others]:
        t.join()
    assert isinstance(outcomes["b1"], RuntimeError) and "slot is gone" in str(outcomes["b1"])
    assert all(not isinstance(outcomes[b], Exception) for b in ids if b != "b1")
    assert sorted(v.battle_id for v in store.list_votes()) == sorted(set(ids) - {"b1"})
    assert store.get_battle("b1").status == "ready" and store.get_battle("b1").voter == "anon:bench"
    # the batch of 11 was tried as one commit, undone, then written one by one
    assert store.vote_commits - commits == 1 + 10
    store.close()


WRITER = textwrap.dedent("""
    import sys, threading
    from qwen3arena.store import Store
    store = Store(sys.argv[1])
    ids = [f"b{i}" for i in range(int(sys.argv[2]))]
    out = threading.Lock()

    def client(k):
        for battle_id in ids[k::32]:
            store.record_vote(battle_id, "model_a", f"anon:{k}")
            with out:  # acknowledged: record_vote returned after its commit
                sys.stdout.write(battle_id + "\\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")


def test_kill_9_mid_load_loses_no_acknowledged_vote_and_doubles_none(store_target):
    path = store_target
    ids = ready_battles(path, 20000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(len(ids))], stdout=subprocess.PIPE,
                              text=True, env=env, start_new_session=True)
    acknowledged: list[str] = []
    for line in writer.stdout:  # type: ignore[union-attr]
        acknowledged.append(line.strip())
        if len(acknowledged) >= 1500:
            break
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(10)
    acknowledged += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]  # type: ignore[union-attr]
    assert writer.returncode == -signal.SIGKILL, "killed mid-load, not finished"
    store = Store(path)
    stored = [v.battle_id for v in store.list_votes()]
    assert len(stored) == len(set(stored)), "no battle has two votes"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged votes lost"
    assert len(stored) < len(ids)
    voted = {row[0] for row in store.execute("SELECT battle_id FROM battles WHERE status = 'voted'")}
    assert voted == set(stored), "a battle is marked voted exactly when its vote is stored"
    store.close()


@pytest.mark.parametrize("batch", [1, 64])
def test_one_vote_alone_behaves_the_same_at_any_batch_size(store_target, batch):
    ready_battles(store_target, 2)
    store = Store(store_target, vote_batch=batch)
    vote = store.record_vote("b0", "tie", "anon:1", reason="clearer", comment="both fine")
    assert (vote.outcome, vote.reason, vote.comment, vote.model_a, vote.model_b) == \
        ("tie", "clearer", "both fine", "model-0", "model-1")
    assert store.get_vote("b0") == vote
    with pytest.raises(VoteRejected, match="already has a vote"):
        store.record_vote("b0", "model_a", "anon:1")
    with pytest.raises(VoteRejected, match="unknown"):
        store.record_vote("nope", "model_a", "anon:1")
    store.close()
