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
    # 3: LLM-judge verdicts (qwen3arena/judge): judge_games caches every paid judge reply,
    # judgements links each judged game to its battle or prompt-set item
    """
    CREATE TABLE judge_games (
        cache_key          VARCHAR PRIMARY KEY,  -- sha256(judge model, prompt version, both conversations
                                                 -- in canonical order, which one was shown as Assistant A)
        judge_model        VARCHAR NOT NULL,
        prompt_version     VARCHAR NOT NULL,     -- qwen3arena.judge.prompts.PROMPT_VERSION
        verdict            VARCHAR CHECK (verdict IN ('A>>B', 'A>B', 'A=B', 'B>A', 'B>>A')),
                                                 -- in the positions the judge saw; NULL: no verdict tag
        error              VARCHAR,              -- why verdict is NULL (never read as a tie)
        reply              VARCHAR NOT NULL,     -- the judge's raw reply
        prompt_tokens      INTEGER,              -- usage as the server reported it (cost of this reply)
        completion_tokens  INTEGER,
        duration_s         DOUBLE,
        created_at         TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE judgements (
        judgement_id    VARCHAR PRIMARY KEY,     -- sha256(battle/prompt, models, judge model, prompt
                                                 -- version, game): judging again replaces the row
        battle_id       VARCHAR,                 -- the arena battle judged, or
        prompt_id       VARCHAR,                 -- the prompt-set item judged ("set/id")
        model_a         VARCHAR NOT NULL,        -- battle model_a, or the candidate
        model_b         VARCHAR NOT NULL,        -- battle model_b, or the baseline
        game            INTEGER NOT NULL CHECK (game IN (1, 2)),
                                                 -- 1: model_a shown as Assistant A; 2: positions swapped
        judge_model     VARCHAR NOT NULL,
        prompt_version  VARCHAR NOT NULL,
        cache_key       VARCHAR,                 -- the judge_games reply; NULL: the request failed
        outcome         VARCHAR CHECK (outcome IN ('model_a', 'model_b', 'tie')),
                                                 -- this game for the pair; NULL: excluded (see error)
        weight          INTEGER NOT NULL,        -- 3 for a strong verdict ([[A>>B]]), 1 otherwise, 0 excluded
        error           VARCHAR,                 -- no verdict tag, or the failed request (not cached:
                                                 -- judging again retries it)
        created_at      TIMESTAMPTZ NOT NULL,
        CHECK ((battle_id IS NULL) <> (prompt_id IS NULL))
    );
    """,
    # 4: benchmark scores (qwen3arena/evals): one row per model x dataset x subset x metric of an
    # EvalScope run; a failed dataset or metric is a row with status 'failed', score NULL and the
    # reason (a fake 0 is never stored)
    """
    CREATE TABLE benchmark_scores (
        run_id          VARCHAR NOT NULL,      -- one eval job (all its datasets share it)
        created_at      TIMESTAMPTZ NOT NULL,
        model           VARCHAR NOT NULL,      -- the served model name evaluated
        source          VARCHAR NOT NULL,      -- the harness: evalscope
        source_version  VARCHAR,               -- its version (1.14.1); NULL when it never ran
        benchmark       VARCHAR,               -- EvalScope benchmark: general_qa | general_mcq
        dataset         VARCHAR NOT NULL,      -- shipped dataset: kitchen_qa | kitchen_mcq (data/evals)
        subset          VARCHAR,               -- dataset subset; OVERALL: all subsets; NULL: run failed
        metric          VARCHAR,               -- accuracy, rouge-l-recall, rouge-1-f1...; NULL: run failed
        is_primary      BOOLEAN NOT NULL DEFAULT FALSE,  -- the report's primary metric (its conclusion)
        score           DOUBLE,                -- 0-1; NULL whenever status is failed
        num             INTEGER NOT NULL,      -- samples the score is over
        status          VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
        error           VARCHAR,               -- why it failed (server unreachable, metric raised...)
        config          JSON,                  -- TaskConfig arguments sent to EvalScope (no API key)
        work_dir        VARCHAR,               -- EvalScope output: predictions/, reviews/, reports/
        CHECK (status = 'ok' OR score IS NULL)
    );
    CREATE INDEX benchmark_scores_model ON benchmark_scores (model, dataset, metric);
    """,
    # 5: harvest (qwen3arena/harvest): round datasets built from votes, and battles an admin
    # left out of harvesting by hand
    """
    CREATE TABLE rounds (
        round            INTEGER PRIMARY KEY,   -- 1, 2, ...: the training round the data is for
        created_at       TIMESTAMPTZ NOT NULL,
        created_by       VARCHAR,
        rules            JSON NOT NULL,         -- qwen3arena.harvest.HarvestRules
        filters          JSON NOT NULL,         -- the Data tab's filters when it was built
        vote_ids         JSON NOT NULL,         -- exactly the votes it used (later votes are not in it)
        counts           JSON NOT NULL,         -- rows per kind and source, exclusions by reason
        directory        VARCHAR NOT NULL,      -- datasets/rounds/round-NNN: sft.jsonl, preference.jsonl,
                                                -- sources.jsonl, manifest.json, README.md
        content_sha      VARCHAR NOT NULL UNIQUE,  -- sha256 over the data files: a round never repeats
        parent           VARCHAR                -- checkpoint the round is meant to continue from
    );
    CREATE TABLE harvest_exclusions (
        battle_id    VARCHAR PRIMARY KEY,
        reason       VARCHAR NOT NULL,
        excluded_by  VARCHAR,
        created_at   TIMESTAMPTZ NOT NULL
    );
    """,
    # 6: labelling campaigns (qwen3arena/campaigns). Battles and votes learn their campaign; a vote keeps
    # the labeller's reason and comment. Written with IF NOT EXISTS throughout so that it
    # applies whatever other migration lands beside it (it touches no table but its own and
    # adds nullable columns only).
    """
    ALTER TABLE battles ADD COLUMN IF NOT EXISTS campaign_id VARCHAR;  -- NULL: an open-arena battle
    ALTER TABLE battles ADD COLUMN IF NOT EXISTS prompt_id VARCHAR;    -- the campaign prompt served
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS campaign_id VARCHAR;    -- copied from the battle
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS reason VARCHAR;         -- the reason chip chosen
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS comment VARCHAR;        -- free text, optional
    CREATE TABLE IF NOT EXISTS campaigns (
        campaign_id       VARCHAR PRIMARY KEY,
        name              VARCHAR NOT NULL UNIQUE,
        created_at        TIMESTAMPTZ NOT NULL,
        created_by        VARCHAR,
        status            VARCHAR NOT NULL CHECK (status IN ('open', 'closed')),
        contestants       JSON NOT NULL,     -- model names drawn for its battles (admin-only)
        votes_per_prompt  INTEGER NOT NULL,  -- battles (each with its own vote) per prompt
        overlap           INTEGER NOT NULL,  -- labellers who judge each prompt's first battle
        rubric            VARCHAR NOT NULL,
        reasons           JSON NOT NULL,     -- the reason chips
        prompt_source     VARCHAR            -- file name or shipped set the prompts came from
    );
    CREATE TABLE IF NOT EXISTS campaign_prompts (
        campaign_id  VARCHAR NOT NULL,
        prompt_id    VARCHAR NOT NULL,
        position     INTEGER NOT NULL,       -- serving order
        prompt       VARCHAR NOT NULL,
        PRIMARY KEY (campaign_id, prompt_id)
    );
    CREATE TABLE IF NOT EXISTS campaign_slots (
        campaign_id  VARCHAR NOT NULL,
        prompt_id    VARCHAR NOT NULL,
        slot         INTEGER NOT NULL,       -- 0..votes_per_prompt-1: battles; then reviews
        kind         VARCHAR NOT NULL CHECK (kind IN ('battle', 'review')),
        status       VARCHAR NOT NULL CHECK (status IN ('open', 'claimed', 'done')),
        labeller     VARCHAR,                -- voter id of the claimer
        battle_id    VARCHAR,                -- battle slots: the battle played; reviews: the one judged
        claimed_at   TIMESTAMPTZ,
        updated_at   TIMESTAMPTZ,
        PRIMARY KEY (campaign_id, prompt_id, slot)
    );
    CREATE TABLE IF NOT EXISTS campaign_reviews (
        campaign_id  VARCHAR NOT NULL,
        battle_id    VARCHAR NOT NULL,       -- a voted campaign battle judged again (overlap)
        labeller     VARCHAR NOT NULL,
        outcome      VARCHAR NOT NULL CHECK (outcome IN ('model_a', 'model_b', 'tie', 'both_bad')),
        reason       VARCHAR,
        comment      VARCHAR,
        created_at   TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (battle_id, labeller)
    );
    """,
    # 7: background jobs other than training runs (qwen3arena/jobs.py): benchmark and judge jobs,
    # so a page re-attaches to them and an app restart still lists them. Additive only.
    """
    CREATE TABLE IF NOT EXISTS jobs (
        job_id       VARCHAR PRIMARY KEY,
        kind         VARCHAR NOT NULL,      -- benchmark | judge
        status       VARCHAR NOT NULL,      -- queued | running | succeeded | partial | failed | cancelled | interrupted
        created_at   TIMESTAMPTZ NOT NULL,
        started_at   TIMESTAMPTZ,
        finished_at  TIMESTAMPTZ,
        pid          INTEGER,               -- the job's child process, if it has one
        params       JSON NOT NULL,         -- what was asked (model, datasets, limit...; never a key)
        progress     JSON NOT NULL,         -- done, total, stage (the last progress line)
        result       JSON,                  -- what the job produced (a summary; scores stay in their tables)
        error        VARCHAR
    );
    """,
    # 8: undo and repair (issue 15, sections 3 and 1). A vote is final from final_at on: its undo
    # window's end, or the reveal if sooner (votes before this migration are final). An undone vote
    # leaves the votes table (so nothing that counts votes can count it) and its row is kept in
    # vote_undos. A repair (the voter's own better answer) is kept with its vote: the text, who
    # wrote it, when, and the answer it replaced (NULL when there was none: tie, both bad).
    # IF NOT EXISTS throughout, so it applies whatever other migration lands beside it.
    """
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS final_at TIMESTAMPTZ;      -- undo allowed until then
    UPDATE votes SET final_at = created_at WHERE final_at IS NULL;
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS repair VARCHAR;            -- the voter's answer, plain text
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS repair_original VARCHAR;   -- the preferred answer it replaced
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS repaired_by VARCHAR;       -- voter id (always the vote's voter)
    ALTER TABLE votes ADD COLUMN IF NOT EXISTS repaired_at TIMESTAMPTZ;
    CREATE TABLE IF NOT EXISTS vote_undos (
        vote_id     VARCHAR PRIMARY KEY,   -- the undone vote
        battle_id   VARCHAR NOT NULL,
        voter       VARCHAR NOT NULL,
        undone_at   TIMESTAMPTZ NOT NULL,
        vote        JSON NOT NULL          -- the whole vote row as it was
    );
    """,
    # 9: rubric verdicts and assigned reviewers (issue 15, section 2). A campaign may ask for a
    # verdict per criterion (accuracy, safety...) besides the overall vote, optional or required,
    # and may be open to named reviewers only. Verdicts are written in the vote's (or review's)
    # transaction; they never enter the overall ratings. IF NOT EXISTS throughout, additive only.
    """
    ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS criteria JSON DEFAULT '[]';           -- criterion slugs, in order
    ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS criteria_required BOOLEAN DEFAULT false;
    ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS reviewers JSON DEFAULT '[]';          -- logins; []: every labeller
    CREATE TABLE IF NOT EXISTS campaign_verdicts (
        campaign_id  VARCHAR NOT NULL,
        battle_id    VARCHAR NOT NULL,
        labeller     VARCHAR NOT NULL,
        source       VARCHAR NOT NULL CHECK (source IN ('vote', 'review')),
        vote_id      VARCHAR,               -- source vote: the vote it was cast with (reads join it)
        criterion    VARCHAR NOT NULL,
        verdict      VARCHAR NOT NULL CHECK (verdict IN ('model_a', 'model_b', 'tie')),
        created_at   TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (battle_id, labeller, criterion)
    );
    """,
]
