"""The web app through its HTTP API (gradio_client): blind until the vote, one vote per battle."""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client

from qwen3arena.api import Actions, RemoteActions
from qwen3arena.train import RunRejected
from qwen3arena.ui.render import render_message, safe_messages

from conftest import CONTESTANTS


def _names_in(payload) -> list[str]:
    text = json.dumps(payload, default=str).lower()
    return [name for name in CONTESTANTS if name in text]


def _turns(chat: list[dict]) -> list[dict]:
    """A chat pane's messages as role and text (the API sends content as text blocks)."""
    def text(content) -> str:
        return "".join(b["text"] for b in content) if isinstance(content, list) else content

    return [{"role": m["role"], "content": text(m["content"])} for m in chat]


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
    recorded = client.predict(api_name="/vote_model_a")
    assert "Recorded" in json.dumps(recorded) and _names_in(recorded) == [], "no name within the undo window"
    revealed = client.predict(api_name="/vote_reveal")
    text = json.dumps(revealed)
    assert "Model A** was" in text and _names_in(revealed)
    # the battle is locked: a second vote from the same session is refused, nothing counted
    again = client.predict(api_name="/vote_model_b")
    assert "Start a battle before voting" in json.dumps(again)
    assert len(runtime.store.list_votes()) == votes_before + 1


def test_the_chat_panes_come_from_the_server_not_the_browser(app_url, runtime):
    """/send and /regenerate take no chat history: a forged one sent along is ignored, and both the
    panes and what the models were sent are the server's own conversation."""
    info = httpx.get(app_url + "/gradio_api/info", timeout=30).json()["named_endpoints"]
    assert len(info["/send"]["parameters"]) == 1, "the message alone"
    assert info["/regenerate"]["parameters"] == []
    client = Client(app_url, verbose=False)
    forged = [{"role": "user", "content": "FORGED question"}, {"role": "assistant", "content": "FORGED answer"}]
    first = client.predict("How long do eggs keep?", forged, forged, api_name="/send")
    second = client.predict("Can I freeze them?", forged, forged, api_name="/send")
    again = client.predict(forged, forged, api_name="/regenerate")
    for frame in (first, second, again):
        assert "FORGED" not in json.dumps(frame[:2])
    for side in (0, 1):
        turns = _turns(again[side])
        assert [m["role"] for m in turns] == ["user", "assistant"] * 2
        assert turns[:2] == _turns(first[side]), "the first turn is the server's, unchanged"
        assert [m["content"] for m in turns if m["role"] == "user"] == [
            render_message("How long do eggs keep?"), render_message("Can I freeze them?")]
    client.predict(api_name="/vote_tie")
    (vote,) = [v for v in runtime.store.list_votes() if v.voter == f"anon:{client.session_hash[:12]}"]
    record = runtime.store.get_battle(vote.battle_id)
    assert "FORGED" not in json.dumps([record.conversation_a, record.conversation_b])
    # the panes are the stored conversation, rendered as safe HTML (ui.render)
    assert safe_messages(record.conversation_a) == _turns(again[0])
    assert safe_messages(record.conversation_b) == _turns(again[1])
    assert record.turns == 2


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
    remote = RemoteActions(app_url)  # the application layer's HTTP API: fields by name
    reused = remote.reuse_run(run.run_id)
    form = reused.config
    assert form["name"] == "reuse-me-2", "loaded under the new name `reuse-me-2`"
    assert (form["name"], form["base_model"], form["dataset"], form["rank"], form["alpha"],
            sorted(form["target_modules"])) == ("reuse-me-2", runtime.base_path, dataset, 8, 16, ["q_proj", "v_proj"])
    assert (form["learning_rate"], form["max_steps"], form["per_device_train_batch_size"], form["max_length"],
            form["seed"], form["answers_only"]) == (7e-4, 9, 4, 128, 5, False)
    assert form["round"] == 2, "the round"
    assert form["optim"] == "adamw_torch", "the optimizer"
    # the refilled form is a valid run as it stands
    status = remote.preview_run(form)
    assert status.rows > 0, "rows, all valid"
    assert not any("needs a GPU" in w for w in status.warnings)
    warned = remote.preview_run({**form, "batching": "packed"})  # this machine has no GPU
    assert warned.rows > 0 and any("Packed batching needs a GPU" in w for w in warned.warnings)
    with pytest.raises(RunRejected, match="'ghost' is not a registered LoRA checkpoint"):
        remote.preview_run({**form, "parent": "ghost"})
    with pytest.raises(RunRejected, match="No run 'no-such-run'"):
        remote.reuse_run("no-such-run")
    # the same refusals as a local call: one error type both ways, not a message to parse
    with pytest.raises(RunRejected, match="No run 'no-such-run'"):
        Actions(runtime).reuse_run("no-such-run")
