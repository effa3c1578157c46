"""A whole round on the CPU: votes cast through the app's API, harvest, a real Unsloth round-1
run (SFT, then DPO from it), the new checkpoint served, drawn into battles, rated and shown
in the lineage. Plus the command line on a data directory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from qwen3arena.api import Actions, RemoteActions
from qwen3arena.harvest import BattleFilters, HarvestError, HarvestRules

from conftest import make_settings

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [line for line in (REPO / "data" / "prompts" / "kitchen.txt").read_text().splitlines() if line.strip()]


def play(client: Client, prompt: str, vote: str) -> str:
    """One battle over the API; returns the reveal text."""
    client.predict(api_name="/new_round")
    job = client.submit(prompt, api_name="/send")
    job.result()
    client.predict(api_name=f"/vote_{vote}")  # recorded; the names come with the reveal
    return json.dumps(client.predict(api_name="/vote_reveal"))


def test_a_round_from_votes_to_a_rated_checkpoint(app_url, runtime):
    client = Client(app_url, verbose=False)
    for i, prompt in enumerate(PROMPTS[:8]):
        assert "was" in play(client, prompt, "model_a" if i % 2 else "model_b")

    # harvest through the API the Data tab uses (other tests may have built rounds before)
    n = runtime.harvester.next_round()
    remote = RemoteActions(app_url)
    built = remote.build_round(HarvestRules(), BattleFilters())
    assert built.round == n, built
    record = runtime.harvester.get_round(n)
    assert set(record.vote_ids) <= {v.vote_id for v in runtime.store.list_votes()}
    sft_rows = [json.loads(line) for line in record.sft_path.read_text().splitlines()]
    pairs = [json.loads(line) for line in record.preference_path.read_text().splitlines()]
    assert len(sft_rows) >= 4 and len(pairs) >= 2, record.counts
    # building again with no new vote is refused and writes nothing
    with pytest.raises(HarvestError, match=f"Nothing new since round {n}"):
        remote.build_round(HarvestRules(), BattleFilters())
    assert [r.round for r in runtime.harvester.rounds()][-1] == n
    preview = subprocess.run([sys.executable, "-m", "qwen3arena", "harvest", "--dry-run", "--app", app_url],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
                             cwd=REPO)
    assert preview.returncode == 0 and f"Round {n + 1} would hold" in preview.stdout, preview.stdout + preview.stderr

    # train the round from the command line, through the running app
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = subprocess.run([sys.executable, "-m", "qwen3arena", "train-round", str(n), "--app", app_url,
                          "--max-steps", "15", "--learning-rate", "0.0005"],
                         capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "step 15/15" in cli.stdout and f"round{n}-sft: succeeded" in cli.stdout
    model = runtime.store.get_model(f"round{n}-sft")
    assert model.metadata["round"] == n and model.metadata["method"] == "sft"
    assert model.metadata["dataset"] == str(record.sft_path)
    assert f"round{n}-sft" in runtime.pool.names()  # published: loaded into the running server

    # the new checkpoint is drawn into battles (it has the new-model boost) and gets votes
    drawn = 0
    for i in range(30):
        if f"round{n}-sft" in play(client, PROMPTS[i % len(PROMPTS)], "model_a"):
            drawn += 1
            if drawn == 3:
                break
    assert drawn == 3
    from qwen3arena.harvest import lineage
    from qwen3arena.scoreboard import build_scoreboard

    board = build_scoreboard(runtime.store)
    row = board.table[board.table["model"] == f"round{n}-sft"]
    assert len(row) == 1 and int(row["votes"].iloc[0]) >= 3
    entry = next(e for e in lineage(runtime.store) if e.checkpoint == f"round{n}-sft")
    assert entry.round == n and entry.method == "sft" and entry.rating is not None and entry.votes >= 3

    # DPO on the round's pairs, going on from the SFT checkpoint
    config = Actions(runtime).round_run_config(n, "dpo", parent=f"round{n}-sft", max_steps=6)
    assert config.init_adapter == model.path and config.dataset == str(record.preference_path)
    run = runtime.runner.submit(config, join_arena=False)
    finished = runtime.runner.wait(run.run_id, timeout=900)
    assert finished.status == "succeeded", finished.error
    steps = runtime.runner.progress(run.run_id).steps
    assert len(steps) == 6 and "rewards_margins" in steps[-1]
    dpo = runtime.store.get_model(f"round{n}-dpo")
    assert dpo.metadata["parent"] == f"round{n}-sft" and dpo.metadata["method"] == "dpo"
    assert f"round{n}-dpo" not in runtime.pool.names() and (Path(dpo.path) / "adapter_model.safetensors").exists()
    runtime.checkpoints.unpublish(f"round{n}-sft")  # leave the arena as the other tests expect it


def test_command_line_on_a_data_directory(tmp_path, embedded_models):
    """harvest / rounds / publish without the app; a clear refusal where there is nothing to do."""
    from qwen3arena.store import BattleRecord, ModelRecord, Store

    models_dir = embedded_models.base_dir.parent.parent
    home = tmp_path / "home"
    make_settings(home, models_dir)
    store = Store(home / "qwen3arena.duckdb")
    store.upsert_model(ModelRecord("ckpt", "adapter", base_model="tiny-qwen3-base", path=str(tmp_path)))
    for i, outcome in enumerate(["model_a", "model_b", "tie"]):
        store.save_battle(BattleRecord(
            battle_id=f"b{i}", voter="user:ann", model_a="x", model_b="y", status="ready", turns=1,
            conversation_a=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
            conversation_b=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"b{i}"}],
            metrics_a=[{"finish_reason": "stop"}], metrics_b=[{"finish_reason": "stop"}]))
        store.record_vote(f"b{i}", outcome, "user:ann")
    store.close()
    env = {**os.environ, "PYTHONPATH": str(REPO), "QWEN3ARENA_HOME": str(home)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "qwen3arena", *args], capture_output=True, text=True,
                              timeout=300, env=env, cwd=REPO)

    dry = cli("harvest", "--dry-run")
    # the same words as through the app (one code path, api.Actions or api.RemoteActions)
    assert dry.returncode == 0 and "Round 1 would hold" in dry.stdout and "new votes: 2" in dry.stdout
    assert "sft: 2" in dry.stdout
    assert not (home / "datasets" / "rounds").exists() or not list((home / "datasets" / "rounds").iterdir())
    built = cli("harvest", "--ties", "both")
    assert built.returncode == 0 and "Round 1 built from 3 votes" in built.stdout, built.stderr
    refused = cli("harvest")
    assert refused.returncode == 2 and "Nothing new since round 1" in refused.stderr
    listed = cli("rounds")
    assert listed.returncode == 0 and "round 1" in listed.stdout and "ckpt" in listed.stdout
    published = cli("publish", "ckpt")
    assert published.returncode == 0 and "joins the arena when the app starts" in published.stdout
    unknown = cli("publish", "nope")
    assert unknown.returncode == 2 and "not a registered LoRA checkpoint" in unknown.stderr
    no_round = cli("train-round", "7")
    assert no_round.returncode == 2 and "There is no round 7" in no_round.stderr
    # "ckpt" is registered but its directory holds no adapter: refused before anything starts,
    # and the round stays to be trained again
    bad_parent = cli("train-round", "1", "--parent", "ckpt")
    assert bad_parent.returncode == 2 and "no adapter there" in bad_parent.stderr, bad_parent.stderr
    assert "round 1" in cli("rounds").stdout
    store = Store(home / "qwen3arena.duckdb")
    assert store.get_model("ckpt").metadata["arena"] is True
    store.close()
