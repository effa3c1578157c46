"""Votes a second into the store from many concurrent clients (issue 17, item 1).

A scratch DuckDB file with `--battles` answered battles (bulk-inserted), then `--threads` threads
each calling `Store.record_vote` on its own battles until all are voted; a vote counts once
`record_vote` has returned (the commit is done). Contenders, alternated (ABBA over --repeat):
`batched` (the store as shipped: concurrent votes share a commit, up to `Store.vote_batch`) and
`one-per-commit` (vote_batch=1: every vote its own transaction, the path before issue 17).

Usage: .venv/bin/python bench/vote_ingest.py [--battles 20000] [--threads 32] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from qwen3arena.store import Store  # noqa: E402
from ready_battles import ready_battles  # noqa: E402  (the tests' bulk writer of answered battles)

CONTENDERS = {"batched": None, "one-per-commit": 1}  # Store.vote_batch (None: the default)


def ingest(path: Path, battles: int, threads: int, vote_batch: int | None) -> dict:
    store = Store(path) if vote_batch is None else Store(path, vote_batch=vote_batch)
    ids = [f"b{i}" for i in range(battles)]
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
    return {"votes_s": battles / elapsed, "stored": stored, "commits": commits,
            "p50_ms": 1000 * flat[len(flat) // 2], "p99_ms": 1000 * flat[int(len(flat) * 0.99)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    names = list(CONTENDERS)
    order = [name for r in range(args.repeat) for name in (names if r % 2 == 0 else names[::-1])]
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="vote-ingest-") as tmp:
        for i, name in enumerate(order):
            path = Path(tmp) / f"{i}-{name}.duckdb"
            ready_battles(path, args.battles)
            result = ingest(path, args.battles, args.threads, CONTENDERS[name])
            assert result["stored"] == args.battles, result
            results[name].append(result)
            print(f"  {name}: {result['votes_s']:.0f} votes/s, {result['commits']} commits, "
                  f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
    print(f"\n{args.battles} votes from {args.threads} threads, each acknowledged after its commit\n")
    print("| contender | votes/s (each run) | median | commits | p50 latency ms | p99 latency ms |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        def each(key: str, form: str) -> str:
            return ", ".join(format(r[key], form) for r in runs)

        median = statistics.median(r["votes_s"] for r in runs)
        print(f"| {name} | {each('votes_s', '.0f')} | {median:.0f} | {each('commits', 'd')} | "
              f"{each('p50_ms', '.1f')} | {each('p99_ms', '.1f')} |")
    base = [r["votes_s"] for r in results["one-per-commit"]]
    new = [r["votes_s"] for r in results["batched"]]
    print(f"\nbatched / one-per-commit: {statistics.median(new) / statistics.median(base):.1f}x "
          f"(range {min(new) / max(base):.1f}-{max(new) / min(base):.1f}x); "
          f"A/A spread: batched {max(new) / min(new):.2f}, one-per-commit {max(base) / min(base):.2f}")


if __name__ == "__main__":
    main()
