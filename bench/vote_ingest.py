"""Votes a second into the store from many concurrent clients (issue 17, item 1 and §2).

A scratch store with `--battles` answered battles (bulk-inserted), then `--threads` threads
each calling `Store.record_vote` on its own battles until all are voted; a vote counts once
`record_vote` has returned (the commit is done). Contenders, alternated (ABBA over --repeat):
`batched` (the store as shipped: concurrent votes share a commit, up to `Store.vote_batch`) and
`one-per-commit` (vote_batch=1: every vote its own transaction, the path before issue 17), each
on DuckDB (a scratch file) and on PostgreSQL (a fresh database per run, on a server this bench
starts with PostgreSQL's default, durable settings: fsync and synchronous_commit on; or on the
server `--postgres URL` names, where it creates and drops databases ingest_N). With
`--processes N` (N > 1), also `postgres batched xN`: N app processes (spawned, each a Store and
--threads/N threads) voting on one database at once, the votes a second of them all together.

Usage: .venv/bin/python bench/vote_ingest.py [--battles 20000] [--threads 32] [--repeat 2]
       [--backends duckdb,postgres] [--postgres postgresql://USER@HOST:PORT/postgres] [--processes 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import free_port  # noqa: E402
from qwen3arena.store import Store  # noqa: E402
from qwen3arena.store.postgres import LocalPostgres  # noqa: E402
from ready_battles import ready_battles  # noqa: E402  (the tests' bulk writer of answered battles)

MODES = {"batched": None, "one-per-commit": 1}  # Store.vote_batch (None: the default)


def ingest(target: Path | str, battles: int, threads: int, vote_batch: int | None,
           ids: list[str] | None = None) -> dict:
    store = Store(target) if vote_batch is None else Store(target, vote_batch=vote_batch)
    ids = [f"b{i}" for i in range(battles)] if ids is None else ids
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def client(k: int) -> None:
        for battle_id in ids[k::threads]:
            began = time.perf_counter()
            store.record_vote(battle_id, "model_a" if hash(battle_id) % 2 else "model_b", f"anon:{k}")
            latencies[k].append(time.perf_counter() - began)

    began = time.perf_counter()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    stored = store.execute("SELECT count(*) FROM votes")[0][0]
    commits = store.vote_commits
    store.close()
    flat = sorted(x for per in latencies for x in per)
    return {"votes_s": len(ids) / elapsed, "stored": stored, "commits": commits, "latencies": flat,
            "began": time.time() - elapsed, "ended": time.time(),
            "p50_ms": 1000 * flat[len(flat) // 2], "p99_ms": 1000 * flat[int(len(flat) * 0.99)]}


def _process(target: str, battles: int, threads: int, ids: list[str], barrier, queue) -> None:
    """One app process of `ingest_processes`."""
    Store(target).close()  # connected and migrated before the start
    barrier.wait()
    queue.put(ingest(target, battles, threads, None, ids))


def ingest_processes(target: str, battles: int, threads: int, processes: int) -> dict:
    """`processes` app processes voting on one database at once, each on its own share."""
    spawn = multiprocessing.get_context("spawn")
    barrier, queue = spawn.Barrier(processes), spawn.Queue()
    ids = [f"b{i}" for i in range(battles)]
    workers = [spawn.Process(target=_process, args=(target, battles, max(1, threads // processes),
                                                      ids[p::processes], barrier, queue)) for p in range(processes)]
    for w in workers:
        w.start()
    parts = [queue.get(timeout=3600) for _ in workers]
    for w in workers:
        w.join()
    flat = sorted(x for part in parts for x in part["latencies"])
    elapsed = max(p["ended"] for p in parts) - min(p["began"] for p in parts)
    return {"votes_s": battles / elapsed, "stored": max(p["stored"] for p in parts),
            "commits": sum(p["commits"] for p in parts),
            "p50_ms": 1000 * flat[len(flat) // 2], "p99_ms": 1000 * flat[int(len(flat) * 0.99)]}


@contextlib.contextmanager
def postgres_server(url: str | None, wanted: bool) -> Iterator[str | None]:
    """A server's URL: the one given, or one started here (default settings), stopped after."""
    if not wanted or url:
        yield url
        return
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="vote-ingest-pg-")), free_port())
    server.init()
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """An empty database `name` on the server; its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        con.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--backends", default="duckdb,postgres", help="comma-separated: duckdb, postgres")
    parser.add_argument("--postgres", help="a running server's URL (default: start one in a scratch directory)")
    parser.add_argument("--processes", type=int, default=1, help="also N app processes on one PostgreSQL database")
    args = parser.parse_args()
    backends = args.backends.split(",")
    names = [f"{backend} {mode}" for backend in backends for mode in MODES]
    if args.processes > 1 and "postgres" in backends:
        names.append(f"postgres batched-x{args.processes}")
    order = [name for r in range(args.repeat) for name in (names if r % 2 == 0 else names[::-1])]
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="vote-ingest-") as tmp, \
            postgres_server(args.postgres, "postgres" in backends) as server_url:
        for i, name in enumerate(order):
            backend, mode = name.split(" ")
            target: Path | str = (Path(tmp) / f"{i}-{mode}.duckdb" if backend == "duckdb"
                                  else fresh_database(server_url, f"ingest_{i}"))  # type: ignore[arg-type]
            ready_battles(target, args.battles)
            if mode.startswith("batched-x"):
                result = ingest_processes(str(target), args.battles, args.threads, args.processes)
            else:
                result = ingest(target, args.battles, args.threads, MODES[mode])
            assert result["stored"] == args.battles, result
            results[name].append(result)
            print(f"  {name}: {result['votes_s']:.0f} votes/s, {result['commits']} commits, "
                  f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
    print(f"\n{args.battles} votes from {args.threads} threads, each acknowledged after its commit\n")
    print("| contender | votes/s (each run) | median | A/A spread | commits | p50 latency ms | p99 latency ms |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        def each(key: str, form: str) -> str:
            return ", ".join(format(r[key], form) for r in runs)

        speeds = [r["votes_s"] for r in runs]
        print(f"| {name} | {each('votes_s', '.0f')} | {statistics.median(speeds):.0f} | "
              f"{max(speeds) / min(speeds):.2f} | {each('commits', 'd')} | "
              f"{each('p50_ms', '.1f')} | {each('p99_ms', '.1f')} |")
    print()
    for backend in backends:
        base = [r["votes_s"] for r in results[f"{backend} one-per-commit"]]
        new = [r["votes_s"] for r in results[f"{backend} batched"]]
        print(f"{backend}: batched / one-per-commit {statistics.median(new) / statistics.median(base):.1f}x "
              f"(range {min(new) / max(base):.1f}-{max(new) / min(base):.1f}x)")


if __name__ == "__main__":
    main()
