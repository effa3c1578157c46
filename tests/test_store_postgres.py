"""PostgreSQL as the shared store of several app processes (issue 17 §2): what must hold across
processes (one vote per battle, one labeller per campaign slot, migrations once), the database
going away (a clear refusal at start and mid-run, nothing lost silently), and where the two
dialects differ. The store tests themselves run on both backends (the store_target fixture)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from qwen3arena.campaigns.prompts import CampaignPrompt
from qwen3arena.campaigns.store import Campaign, CampaignStore
from qwen3arena.config import ConfigError, load_settings
from qwen3arena.errors import Refused
from qwen3arena.store import BattleRecord, Store, StoreUnavailable, StoreUnreachable
from qwen3arena.store.backends import Postgres, _postgres_sql, open_backend, redacted
from qwen3arena.store.migrations import MIGRATIONS
from qwen3arena.store.postgres import LocalPostgres, PostgresMissing, find_bindir
from ready_battles import ready_battles
from store_replica import open_store, replica

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_server():
    """A server of this test's own, which the test may stop and start again."""
    if find_bindir() is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="q3a-pg-own-")), free_port(), settings={"fsync": "off"})
    server.init()
    server.start()
    yield server
    server.stop()
    subprocess.run(["rm", "-rf", str(server.data_dir)], check=False)


# -- the dialect ------------------------------------------------------------------------------------

def test_marks_become_psycopg_s_and_literals_are_left_alone():
    assert _postgres_sql("SELECT '?%' || ? FROM t WHERE a LIKE 'x%' AND b = ? AND c % 2 = 0") == \
        "SELECT '?%' || %s FROM t WHERE a LIKE 'x%' AND b = %s AND c %% 2 = 0"
    ddl = Postgres.ddl(None, "score DOUBLE, d DOUBLE PRECISION")  # type: ignore[arg-type]
    assert ddl == "score DOUBLE PRECISION, d DOUBLE PRECISION"
    assert redacted("postgresql://ann:s3cret@db:5432/arena") == "postgresql://ann:***@db:5432/arena"
    assert redacted("postgresql://ann@db/arena") == "postgresql://ann@db/arena"


def test_the_store_url_setting_and_its_env_override(tmp_path):
    env = {"QWEN3ARENA_HOME": str(tmp_path)}
    assert load_settings(env=env).store_target == tmp_path.resolve() / "qwen3arena.duckdb"
    url = "postgresql://ann:pw@127.0.0.1:5432/arena"
    assert load_settings(env={**env, "QWEN3ARENA__STORE__URL": url}).store_target == url
    with pytest.raises(ConfigError, match="store.url: give a postgresql:// URL"):
        load_settings(env={**env, "QWEN3ARENA__STORE__URL": "mysql://db/arena"})


def test_the_benchmark_leaderboard_query_runs_on_both(store_target):
    from qwen3arena.evals.report import BenchmarkScore
    from qwen3arena.evals.store import latest_primary_scores, save_scores

    store = Store(store_target)
    early, late = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)
    save_scores(store, [
        BenchmarkScore(model="m1", dataset="kitchen_qa", metric="acc", score=0.2, num=3, subset="OVERALL",
                       created_at=early, primary=True, run_id="r1"),
        BenchmarkScore(model="m1", dataset="kitchen_qa", metric="acc", score=0.7, num=3, subset="OVERALL",
                       created_at=late, primary=True, run_id="r2"),
        BenchmarkScore(model="m1", dataset="kitchen_qa", metric="acc", score=0.9, num=3, subset="part",
                       created_at=late, primary=True, run_id="r2"),
    ])
    assert [(s.run_id, s.subset, s.score) for s in latest_primary_scores(store)] == [("r2", "OVERALL", 0.7)]
    store.close()


# -- several processes on one database ---------------------------------------------------------------

def test_processes_starting_together_migrate_once(postgres_database):
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    starters = [spawn.Process(target=open_store, args=(postgres_database, queue)) for _ in range(4)]
    for p in starters:
        p.start()
    results = [queue.get(timeout=120) for _ in starters]
    for p in starters:
        p.join(30)
    assert results == ["ok"] * 4
    store = Store(postgres_database)
    assert store.execute("SELECT version, count(*) FROM schema_version GROUP BY version ORDER BY version") == \
        [(v, 1) for v in range(1, len(MIGRATIONS) + 1)]
    store.close()


def test_two_app_processes_vote_and_claim_on_one_database(postgres_database):
    """Both processes vote on the same 600 battles and claim from the same 90 slots at once:
    every battle gets one vote, the other process's is refused as a double vote, no slot goes to
    two labellers, and a third reader sees the union."""
    ids = ready_battles(postgres_database, 600)
    store = Store(postgres_database)
    campaign = Campaign("c1", "shared", "open", ["model-0", "model-1"], votes_per_prompt=3, overlap=1,
                        rubric="", reasons=[], prompt_source=None, created_by="admin", prompts=30)
    CampaignStore(store).create(campaign, [CampaignPrompt(f"q{i}", f"Question {i}?") for i in range(30)],
                                datetime.now(timezone.utc))
    spawn = multiprocessing.get_context("spawn")
    barrier, queue = spawn.Barrier(2), spawn.Queue()
    replicas = [spawn.Process(target=replica, args=(postgres_database, w, ids, "c1", 60, barrier, queue))
                for w in range(2)]
    for p in replicas:
        p.start()
    results = [queue.get(timeout=300) for _ in replicas]
    for p in replicas:
        p.join(30)
        assert p.exitcode == 0

    accepted = [b for r in results for b in r["accepted"]]
    assert sorted(accepted) == sorted(ids), "each battle got exactly one vote"
    assert sorted(b for r in results for b in r["refused"]) == sorted(ids), "and the other one was refused"
    assert all(r["accepted"] for r in results), "both processes landed votes"
    claimed = [c for r in results for c in r["claimed"]]
    assert len(claimed) == 90 == len(set(claimed)), "every battle slot claimed once, none twice"
    stored = store.list_votes()
    assert sorted(v.battle_id for v in stored) == sorted(ids)
    assert {v.voter for v in stored} == {"anon:w0", "anon:w1"}
    assert sum(store.vote_tallies().values()) == len(ids)
    assert sum(store.vote_counts().values()) == 2 * len(ids)
    assert store.execute("SELECT count(*) FROM battles WHERE status = 'voted'") == [(len(ids),)]
    assert store.execute("SELECT count(*) FROM campaign_slots WHERE status = 'claimed'") == [(90,)]
    store.close()


def test_a_second_store_on_one_postgres_database_is_accepted(postgres_database):
    """DuckDB's one-writer refusal (test_store.py) is DuckDB's alone."""
    first, second = Store(postgres_database), Store(postgres_database)
    first.save_battle(BattleRecord("b1", "anon:1", "m1", "m2", status="ready", turns=1))
    assert second.get_battle("b1").status == "ready"
    assert first.shared and second.shared
    first.close()
    second.close()


def test_a_starting_replica_leaves_the_other_replicas_live_battles_votable(postgres_database):
    store = Store(postgres_database)
    store.save_battle(BattleRecord("live", "anon:1", "m1", "m2", status="ready", turns=1))
    assert store.interrupt_unfinished_battles(idle_s=3600) == 0
    assert store.get_battle("live").status == "ready"
    assert store.interrupt_unfinished_battles() == 1
    store.close()


# -- the database going away ---------------------------------------------------------------------

def test_an_unreachable_database_at_start_is_one_line_and_exit_code_2(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/qwen3arena"
    env = {**os.environ, "PYTHONPATH": str(REPO), "QWEN3ARENA_HOME": str(tmp_path / "home"),
           "QWEN3ARENA__STORE__URL": url, "QWEN3ARENA__VLLM__ENABLED": "false"}
    code = ("import qwen3arena.store.backends as b, sys\nb.CONNECT_WAIT_S = 0.5\n"
            "from qwen3arena.__main__ import main\nsys.exit(main(['app']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert err[0].startswith("error: cannot reach the PostgreSQL store postgresql://postgres@127.0.0.1:")
    assert "QWEN3ARENA__STORE__URL" in err[0]


def test_a_password_never_reaches_the_message():
    url = f"postgresql://ann:s3cret@127.0.0.1:{free_port()}/arena"
    with pytest.raises(StoreUnavailable) as caught:
        open_backend(url, 0)
    assert "s3cret" not in str(caught.value) and "ann:***@" in str(caught.value)


def test_a_vote_while_the_database_is_down_is_refused_not_lost(own_server, stubs):
    """Mid-run: the server stops after a battle was answered. The vote is refused with a
    Refused the page shows, the battle stays votable, and once the server is back the same
    vote lands, once."""
    from test_arena_integrity import arena_of

    store = Store(own_server.create_database("arena"))
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    last = list(arena.send("page-1", "anon:page-1", "Which is better?"))[-1]
    assert last.votable
    own_server.stop()
    with pytest.raises(StoreUnreachable, match="cannot be reached") as caught:
        arena.cast(last.battle_id, "model_a", "anon:page-1", session="page-1")
    assert isinstance(caught.value, Refused) and caught.value.kind == "StoreUnreachable"
    own_server.start()
    ballot = arena.cast(last.battle_id, "model_a", "anon:page-1", session="page-1")
    assert ballot.outcome == "model_a"
    assert [v.battle_id for v in store.list_votes()] == [last.battle_id]
    store.close()


def test_the_connection_lost_mid_run_reconnects_on_the_next_action(postgres_database):
    store = Store(postgres_database)
    store.save_battle(BattleRecord("b1", "anon:1", "m1", "m2", status="ready", turns=1))
    admin = Store(postgres_database)
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(StoreUnreachable):
        store.record_vote("b1", "tie", "anon:1")  # the first use finds the connection gone
    assert store.record_vote("b1", "tie", "anon:1").outcome == "tie"
    assert [v.outcome for v in admin.list_votes()] == ["tie"]
    store.close()
    admin.close()


def test_missing_binaries_are_said(monkeypatch):
    import qwen3arena.store.postgres as pg

    monkeypatch.setattr(pg, "find_bindir", lambda: None)
    with pytest.raises(PostgresMissing, match="apt-get install -y postgresql"):
        LocalPostgres(Path("/tmp/nowhere"))
