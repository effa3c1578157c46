"""The web app through its HTTP API (gradio_client): blind until the vote, one vote per battle."""

from __future__ import annotations

import json

import httpx
from gradio_client import Client

from conftest import CONTESTANTS


def _names_in(payload) -> list[str]:
    text = json.dumps(payload, default=str).lower()
    return [name for name in CONTESTANTS if name in text]


def test_page_config_and_api_description_name_no_model(app_url):
    for path in ("/", "/config", "/gradio_api/info"):
        body = httpx.get(app_url + path, timeout=30).text.lower()
        assert not [n for n in CONTESTANTS if n in body], path


def test_a_battle_over_the_api_is_blind_until_the_vote(app_url, runtime):
    client = Client(app_url, verbose=False)
    job = client.submit("How long does cooked rice keep in the fridge?", api_name="/send")
    updates = list(job)
    final = job.result()
    assert updates, "the answers stream"
    assert _names_in(updates) == [] and _names_in(final) == []
    chat_a, chat_b = final[0], final[1]
    assert chat_a[-1]["role"] == "assistant" and chat_a[-1]["content"]
    assert chat_b[-1]["content"]
    votes_before = len(runtime.store.list_votes())
    revealed = client.predict(api_name="/vote_model_a")
    text = json.dumps(revealed)
    assert "Model A** was" in text and _names_in(revealed)
    # the battle is locked: a second vote from the same session is refused, nothing counted
    again = client.predict(api_name="/vote_model_b")
    assert "Start a battle before voting" in json.dumps(again)
    assert len(runtime.store.list_votes()) == votes_before + 1


def test_an_overlong_prompt_gets_a_message_and_nothing_is_sent(app_url, runtime):
    client = Client(app_url, verbose=False)
    battles = runtime.store.count_battles()
    result = client.predict("y" * 5000, api_name="/send")
    assert "limit is 4,000" in json.dumps(result)
    assert runtime.store.count_battles() == battles


def test_voting_before_any_battle_is_refused(app_url, runtime):
    client = Client(app_url, verbose=False)
    votes = len(runtime.store.list_votes())
    result = client.predict(api_name="/vote_tie")
    assert "Start a battle before voting" in json.dumps(result)
    assert len(runtime.store.list_votes()) == votes


def test_an_earlier_runs_settings_refill_the_train_form(app_url, runtime):
    from qwen3arena.config import REPO_ROOT
    from qwen3arena.train import LoraTrainConfig

    dataset = str(REPO_ROOT / "data" / "sft" / "kitchen_chatty.jsonl")
    run = runtime.runner.submit(LoraTrainConfig(
        name="reuse-me", base_model=runtime.base_path, dataset=dataset, output_dir="", rank=8, alpha=16,
        target_modules=["q_proj", "v_proj"], learning_rate=7e-4, max_steps=9, per_device_train_batch_size=4,
        max_length=128, seed=5, answers_only=False, round=2, optim="adamw_torch"))
    runtime.runner.stop(run.run_id)  # queued: cancelled, its settings stay
    client = Client(app_url, verbose=False)
    message, *form = client.predict(run.run_id, api_name="/train_reuse")
    assert "loaded under the new name `reuse-me-2`" in message
    (name, base, data, rank, alpha, _dropout, targets, lr, _epochs, steps, batch, _accum, max_length, seed,
     answers_only, *_rest) = form
    assert (name, base, data, rank, alpha, sorted(targets)) == ("reuse-me-2", runtime.base_path, dataset, 8, 16,
                                                                ["q_proj", "v_proj"])
    assert (lr, steps, batch, max_length, seed, answers_only) == (7e-4, 9, 4, 128, 5, False)
    assert form[-3] == 2, "the round"
    assert form[-1] == "adamw_torch", "the optimizer"
    # the refilled form is a valid run as it stands
    status, *_ = client.predict(*form, api_name="/train_preview")
    assert "rows, all valid" in status
    assert "needs a GPU" not in status
    packed = list(form)
    packed[15] = "packed"  # the batching choice; this machine has no GPU
    warned, *_ = client.predict(*packed, api_name="/train_preview")
    assert "rows, all valid" in warned and "Packed batching needs a GPU" in warned
    ghost = list(form)
    ghost[-4] = "ghost"  # the parent checkpoint
    refused, *_ = client.predict(*ghost, api_name="/train_preview")
    assert "'ghost' is not a registered LoRA checkpoint" in refused
    missing, *_ = client.predict("no-such-run", api_name="/train_reuse")
    assert "No run 'no-such-run'" in missing
