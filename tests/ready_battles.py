"""A store with many answered battles, written in one statement: the vote-ingest test and
bench/vote_ingest.py need thousands, which save_battle would take minutes to write. The same SQL
runs on DuckDB and PostgreSQL (generate_series, `||`, JSON from text)."""

from __future__ import annotations

from pathlib import Path

from qwen3arena.store import Store


def ready_battles(target: str | Path, battles: int) -> list[str]:
    """A migrated store at `target` (a DuckDB path or a postgresql:// URL) holding `battles`
    ready (answered, unvoted) battles; their ids."""
    store = Store(target)
    store.execute(f"""
        INSERT INTO battles (battle_id, created_at, updated_at, voter, model_a, model_b, status, turns,
                             conversation_a, conversation_b)
        SELECT 'b' || i, now(), now(), 'anon:bench', 'model-' || (i % 7), 'model-' || ((i + 1) % 7), 'ready', 1,
               '[{{"role": "user", "content": "Q?"}}, {{"role": "assistant", "content": "A"}}]',
               '[{{"role": "user", "content": "Q?"}}, {{"role": "assistant", "content": "B"}}]'
        FROM generate_series(0, {battles - 1}) AS t(i)
    """)
    store.close()
    return [f"b{i}" for i in range(battles)]
