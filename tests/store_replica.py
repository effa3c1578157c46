"""What one app process does to the shared store, run in processes of their own by
tests/test_store_postgres.py (multiprocessing spawn imports this light module, not the test's)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from qwen3arena.campaigns.store import CampaignStore
from qwen3arena.store import Store, VoteRejected

EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def open_store(url: str, queue) -> None:
    """Opens (and so migrates) the store; "ok" or the error, on `queue`."""
    try:
        Store(url).close()
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001 (the parent reads it)
        queue.put(f"{type(exc).__name__}: {exc}")


def replica(url: str, worker: int, battle_ids: list[str], campaign_id: str, claims: int, barrier, queue) -> None:
    """Votes on every battle (the other process votes on the same ones, from the other end) and
    claims campaign slots for labellers of its own, from 8 threads each; what it got, on `queue`."""
    store = Store(url)
    campaigns = CampaignStore(store)
    order = battle_ids if worker % 2 == 0 else battle_ids[::-1]
    accepted: list[str] = []
    refused: list[str] = []
    claimed: list[tuple[str, int]] = []
    guard = threading.Lock()

    def voter(k: int) -> None:
        for battle_id in order[k::8]:
            try:
                store.record_vote(battle_id, "model_a" if worker else "model_b", f"anon:w{worker}")
            except VoteRejected as exc:
                assert "already has a vote" in str(exc), exc
                with guard:
                    refused.append(battle_id)
            else:
                with guard:
                    accepted.append(battle_id)

    def claimer(k: int) -> None:
        for n in range(k, claims, 8):
            got = campaigns.claim(campaign_id, f"user:w{worker}-{n}", EPOCH)
            if got is not None:
                with guard:
                    claimed.append((got.prompt_id, got.slot))

    barrier.wait(120)  # both processes open, then both start at once
    threads = [threading.Thread(target=f, args=(k,)) for k in range(8) for f in (voter, claimer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    queue.put({"accepted": accepted, "refused": refused, "claimed": claimed})
