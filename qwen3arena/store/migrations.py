"""Versioned DuckDB schema. Append a migration; never edit one that has shipped.

The schema is documented for people who query the file with any DuckDB client in
docs/store.md.
"""

MIGRATIONS: list[str] = [
    # 1: models, battles (both full conversations), votes (one per battle)
    """
    CREATE TABLE models (
        name        VARCHAR PRIMARY KEY,
        kind        VARCHAR NOT NULL,      -- base | adapter | endpoint
        base_model  VARCHAR,               -- adapters: name of the base they apply to
        path        VARCHAR,               -- base / adapter directory
        base_url    VARCHAR,               -- endpoints: OpenAI-compatible base URL
        model_id    VARCHAR,               -- the name the server knows the model by
        created_at  TIMESTAMPTZ NOT NULL,  -- first registration (drives the new-model boost)
        metadata    JSON
    );
    CREATE TABLE battles (
        battle_id       VARCHAR PRIMARY KEY,
        created_at      TIMESTAMPTZ NOT NULL,
        updated_at      TIMESTAMPTZ NOT NULL,
        voter           VARCHAR NOT NULL,
        model_a         VARCHAR NOT NULL,
        model_b         VARCHAR NOT NULL,
        status          VARCHAR NOT NULL,  -- open | ready | voted | error | interrupted
        turns           INTEGER NOT NULL,
        conversation_a  JSON NOT NULL,     -- OpenAI messages, the judged answers only
        conversation_b  JSON NOT NULL,
        thinking_a      JSON,              -- per assistant turn: reasoning text or null
        thinking_b      JSON,
        generation_a    JSON,              -- sampling parameters sent with each request
        generation_b    JSON,
        metrics_a       JSON,              -- per turn: ttft_s, duration_s, tokens, finish_reason
        metrics_b       JSON,
        identity_leak   BOOLEAN NOT NULL DEFAULT FALSE,
        leak_reason     VARCHAR,
        error           VARCHAR            -- raw error text (never shown before a vote)
    );
    CREATE TABLE votes (
        vote_id        VARCHAR PRIMARY KEY,
        battle_id      VARCHAR NOT NULL UNIQUE,
        created_at     TIMESTAMPTZ NOT NULL,
        voter          VARCHAR NOT NULL,
        outcome        VARCHAR NOT NULL CHECK (outcome IN ('model_a', 'model_b', 'tie', 'both_bad')),
        model_a        VARCHAR NOT NULL,
        model_b        VARCHAR NOT NULL,
        turns          INTEGER NOT NULL,
        identity_leak  BOOLEAN NOT NULL
    );
    CREATE INDEX votes_models ON votes (model_a, model_b);
    """,
    # 2: training runs (the runner's queue and history, lineage of each checkpoint)
    """
    CREATE TABLE runs (
        run_id       VARCHAR PRIMARY KEY,
        name         VARCHAR NOT NULL,      -- the checkpoint name the run registers
        status       VARCHAR NOT NULL,      -- queued | running | succeeded | stopped | failed | cancelled | interrupted
        config       JSON NOT NULL,         -- LoraTrainConfig as written to run.yaml
        output_dir   VARCHAR NOT NULL,
        dataset_sha  VARCHAR,               -- sha256 of the dataset file (lineage)
        parent       VARCHAR,               -- checkpoint this run continues from, if any
        round        INTEGER,
        join_arena   BOOLEAN NOT NULL DEFAULT FALSE,
        created_at   TIMESTAMPTZ NOT NULL,
        started_at   TIMESTAMPTZ,
        finished_at  TIMESTAMPTZ,
        pid          INTEGER,
        error        VARCHAR,
        metrics      JSON,
        wandb        VARCHAR                -- W&B run URL (online) or local run directory (offline)
    );
    """,
]
