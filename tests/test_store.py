import threading

import duckdb
import pytest

from qwen3arena.store import BattleRecord, ModelRecord, Store, VoteRejected
from qwen3arena.store.migrations import MIGRATIONS


def _battle(store: Store, status: str = "ready", battle_id: str = "b1") -> BattleRecord:
    record = BattleRecord(
        battle_id=battle_id, voter="anon:1", model_a="m1", model_b="m2", status=status, turns=1,
        conversation_a=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "A"}],
        conversation_b=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "B"}],
        metrics_a=[{"ttft_s": 0.1}], metrics_b=[{"ttft_s": 0.2}],
    )
    store.save_battle(record)
    return record


def test_schema_is_versioned_and_reopening_is_a_no_op(store_target):
    path = store_target
    store = Store(path)
    assert store.schema_version() == len(MIGRATIONS)
    _battle(store)
    store.close()
    store = Store(path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.get_battle("b1").conversation_b[1]["content"] == "B"
    store.close()


def test_a_vote_survives_a_restart_and_locks_the_battle(store_target):
    path = store_target
    store = Store(path)
    _battle(store)
    vote = store.record_vote("b1", "model_b", "anon:1")
    assert (vote.model_a, vote.model_b, vote.outcome) == ("m1", "m2", "model_b")
    with pytest.raises(VoteRejected, match="already has a vote"):
        store.record_vote("b1", "model_a", "anon:1")
    with pytest.raises(VoteRejected, match="locked"):
        _battle(store)  # rewriting a voted battle is refused
    store.close()
    store = Store(path)
    assert [v.outcome for v in store.list_votes()] == ["model_b"]
    assert store.get_battle("b1").status == "voted"
    assert store.vote_counts() == {"m1": 1, "m2": 1}
    store.close()


@pytest.mark.parametrize("status, message", [
    ("open", "Wait until both answers"),
    ("error", "failed"),
    ("interrupted", "interrupted"),
])
def test_votes_on_unfinished_failed_or_interrupted_battles_are_refused(store_target, status, message):
    store = Store(store_target)
    _battle(store, status=status)
    with pytest.raises(VoteRejected, match=message):
        store.record_vote("b1", "tie", "anon:1")
    assert store.list_votes() == []


def test_unknown_battle_and_unknown_outcome_are_refused(store_target):
    store = Store(store_target)
    _battle(store)
    with pytest.raises(VoteRejected, match="unknown"):
        store.record_vote("nope", "tie", "anon:1")
    with pytest.raises(VoteRejected, match="Unknown vote"):
        store.record_vote("b1", "a_is_great", "anon:1")
    assert store.list_votes() == []


def test_concurrent_votes_on_one_battle_count_once(store_target):
    store = Store(store_target)
    for i in range(20):
        _battle(store, battle_id=f"b{i}")
    accepted, refused = [], []

    def vote(battle_id: str, outcome: str) -> None:
        try:
            accepted.append(store.record_vote(battle_id, outcome, "anon:1"))
        except VoteRejected:
            refused.append(battle_id)

    threads = [threading.Thread(target=vote, args=(f"b{i % 20}", o))
               for i in range(20) for o in ("model_a", "model_b", "tie")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 20 and len(refused) == 40
    assert sorted(v.battle_id for v in store.list_votes()) == sorted(f"b{i}" for i in range(20))


def test_restart_marks_unfinished_battles_interrupted(store_target):
    store = Store(store_target)
    _battle(store, status="open", battle_id="open1")
    _battle(store, status="ready", battle_id="ready1")
    _battle(store, battle_id="voted1")
    store.record_vote("voted1", "tie", "anon:1")
    assert store.interrupt_unfinished_battles() == 2
    assert store.get_battle("ready1").status == "interrupted"
    assert store.get_battle("voted1").status == "voted"


def test_models_keep_their_first_registration_time(store_target):
    store = Store(store_target)
    first = store.upsert_model(ModelRecord("ad1", "adapter", base_model="base", path="/x"))
    second = store.upsert_model(ModelRecord("ad1", "adapter", base_model="base", path="/y"))
    assert second.path == "/y"
    assert second.created_at == first.created_at


def test_a_second_process_gets_a_clear_message(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "db.duckdb"
    store = Store(path)
    code = (
        "import sys\nfrom qwen3arena.store import Store, StoreLocked\n"
        f"try:\n    Store({str(path)!r})\nexcept StoreLocked as e:\n    print('LOCKED', e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "QWEN3ARENA_HOME" in result.stdout
    store.close()


def test_the_file_is_readable_with_plain_duckdb(tmp_path):
    path = tmp_path / "db.duckdb"
    store = Store(path)
    _battle(store)
    store.record_vote("b1", "both_bad", "anon:1")
    store.close()
    con = duckdb.connect(str(path), read_only=True)
    row = con.execute(
        "SELECT v.outcome, b.conversation_a->>'$[1].content' FROM votes v JOIN battles b USING (battle_id)"
    ).fetchone()
    assert row == ("both_bad", "A")


def test_work_handed_to_a_vote_shares_its_transaction(store_target):
    store = Store(store_target)
    store.save_battle(BattleRecord("b1", "anon:1", "m1", "m2", status="ready", turns=1))
    seen = []

    def fail(execute):
        seen.append(execute("SELECT count(*) FROM votes WHERE battle_id = 'b1'")[0][0])
        raise RuntimeError("after the vote, before the commit")

    with pytest.raises(RuntimeError):
        store.record_vote("b1", "tie", "anon:1", then=fail)
    assert seen == [1], "the vote is visible inside its own transaction"
    assert store.list_votes() == [] and store.get_battle("b1").status == "ready", "both rolled back"
    vote = store.record_vote("b1", "tie", "anon:1", then=lambda execute: seen.append("closed"))
    assert seen[-1] == "closed" and [v.vote_id for v in store.list_votes()] == [vote.vote_id]
    store.close()
