"""Undo and repair through the app's HTTP API (gradio_client), per role, on an app with accounts
in public mode and stub contestants (no vLLM): an anonymous visitor may vote, undo and reveal but
never repair; a labeller and an admin repair their own votes (Arena and Label tabs), never
someone else's; every refusal is said and changes nothing (issue 15, sections 3 and 1)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from gradio_client import Client

from conftest import free_port
from openai_stub import StubEndpoint
from qwen3arena.campaigns import CampaignPrompt
from test_access_api import PASSWORD, _auth_settings, call, cookies_of

pytestmark = pytest.mark.slow  # the web app

NAMES = ("stub-left-model", "stub-right-model")


@contextlib.contextmanager
def auth_stub_app(home: Path, stubs: Sequence[StubEndpoint], **arena: str) -> Iterator[tuple]:
    """The whole app with accounts (boss: admin, lena: labeller; anonymous visitors allowed in
    the Arena), its contestants the stubs. Yields (runtime, url)."""
    from qwen3arena.auth import launch_options
    from qwen3arena.config import load_settings
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui import build_app

    auth = _auth_settings(public=True)
    env = {"QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__ENABLED": "false",
           "QWEN3ARENA__ENDPOINTS": yaml.safe_dump([{"name": s.model, "base_url": s.base_url} for s in stubs]),
           "QWEN3ARENA__UI__TRAIN_TAB": "'off'",
           "QWEN3ARENA__AUTH__ACCOUNTS": json.dumps([{"username": a.username, "role": a.role,
                                                      "password_hash": a.password_hash} for a in auth.accounts]),
           "QWEN3ARENA__AUTH__PUBLIC": "true",
           **{f"QWEN3ARENA__ARENA__{k.upper()}": v for k, v in arena.items()}}
    runtime = create_runtime(load_settings(env=env))
    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(runtime.access, "qwen3arena"))
    try:
        yield runtime, f"http://127.0.0.1:{port}"
    finally:
        demo.close()
        runtime.shutdown()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    stubs = [StubEndpoint("Keep it in a cool, dry place.", model=NAMES[0]),
             StubEndpoint("Refrigerate it within two hours.", model=NAMES[1])]
    try:
        with auth_stub_app(tmp_path_factory.mktemp("undo"), stubs, max_repair_chars="200") as started:
            yield started
    finally:
        for stub in stubs:
            stub.close()


def client_for(url: str, user: str | None) -> Client:
    return Client(url, verbose=False, httpx_kwargs={"cookies": cookies_of(url, user)} if user else None)


def text(result) -> str:
    return json.dumps(result, default=str)


def names(result) -> list[str]:
    return [n for n in NAMES if n in text(result)]


def battle_of(client: Client, prompt: str) -> str:
    answered = client.predict(prompt, api_name="/send")
    assert "Both answers are complete" in text(answered)
    return answered[3]  # the opaque battle id the page shows


def test_an_anonymous_visitor_votes_undoes_votes_again_and_may_not_repair(app):
    runtime, url = app
    visitor = client_for(url, None)
    battle = battle_of(visitor, "How should I store rice?")
    recorded = visitor.predict(battle, api_name="/vote_model_a")
    assert "Recorded: **A is better**" in text(recorded) and "Undo (" in text(recorded)
    assert names(recorded) == [], "no name in the vote's answer before the reveal"
    assert runtime.store.get_vote(battle).outcome == "model_a", "stored at once"
    undone = visitor.predict(battle, api_name="/vote_undo")
    assert "was undone" in text(undone) and names(undone) == []
    assert runtime.store.get_vote(battle) is None and len(runtime.store.undone_votes(battle)) == 1
    assert "undone already" in text(visitor.predict(battle, api_name="/vote_undo")), "undo twice: refused"
    visitor.predict(battle, api_name="/vote_model_b")
    refused = visitor.predict(battle, "My own better answer", api_name="/vote_repair")
    assert "Please log in" in text(refused) and runtime.store.get_vote(battle).repair is None
    revealed = visitor.predict(battle, api_name="/vote_reveal")
    assert "Model A** was" in text(revealed) and names(revealed)
    final = visitor.predict(battle, api_name="/vote_undo")
    assert "final" in text(final)
    (vote,) = [v for v in runtime.store.list_votes(final_only=True) if v.battle_id == battle]
    assert vote.outcome == "model_b"


def test_another_page_cannot_undo_or_reveal_a_vote(app):
    runtime, url = app
    voter, other = client_for(url, None), client_for(url, None)
    battle = battle_of(voter, "Can I freeze bread?")
    voter.predict(battle, api_name="/vote_tie")
    assert "another page" in text(other.predict(battle, api_name="/vote_undo"))
    assert names(other.predict(battle, api_name="/vote_reveal")) == []
    assert runtime.store.get_vote(battle) is not None and not runtime.store.get_vote(battle).final()
    voter.predict(battle, api_name="/vote_reveal")


def test_labellers_and_admins_repair_their_own_arena_votes_only(app):
    runtime, url = app
    lena, boss = client_for(url, "lena"), client_for(url, "boss")
    battle = battle_of(lena, "How long do eggs keep?")
    recorded = lena.predict(battle, api_name="/vote_model_b")
    preferred = runtime.store.get_battle(battle).conversation_b[-1]["content"]
    assert f'"value": "{preferred}"' in text(recorded), "the repair box starts from the preferred answer"
    assert "Saved your answer" in text(lena.predict(battle, "Refrigerate eggs; about 3 weeks.",
                                                     api_name="/vote_repair"))
    assert "only repair your own vote" in text(boss.predict(battle, "Not yours", api_name="/vote_repair"))
    assert "empty repair" in text(lena.predict(battle, "   ", api_name="/vote_repair"))
    assert "the limit is 200" in text(lena.predict(battle, "y" * 201, api_name="/vote_repair"))
    vote = runtime.store.get_vote(battle)
    assert (vote.repair, vote.repaired_by) == ("Refrigerate eggs; about 3 weeks.", "user:lena")
    assert vote.repair_original == preferred
    mine = battle_of(boss, "How long does soup keep?")
    boss.predict(mine, api_name="/vote_both_bad")
    boss.predict(mine, api_name="/vote_reveal")
    assert "Saved your answer" in text(boss.predict(mine, "Three to four days, cooled fast.",
                                                    api_name="/vote_repair"))
    assert runtime.store.get_vote(mine).repaired_by == "user:boss"
    lena.predict(battle, api_name="/vote_reveal")


def test_a_labeller_repairs_a_campaign_vote_and_anonymous_visitors_may_not(app):
    runtime, url = app
    for other in runtime.campaigns.list_campaigns("open"):
        runtime.campaigns.set_status(other.campaign_id, "closed")
    campaign = runtime.campaigns.create("repairs", [CampaignPrompt("r1", "How should I store flour?")],
                                        list(NAMES), runtime.pool.names(), reasons=["clearer"])
    lena = client_for(url, "lena")
    lena.predict(api_name="/label_campaigns")  # the campaign menu and its reasons, as the tab fills them
    lena.predict(campaign.campaign_id, api_name="/label_choose")
    lena.predict(campaign.campaign_id, api_name="/label_next")
    saved = lena.predict(campaign.campaign_id, "clearer", "", api_name="/label_vote_model_a")
    assert "Saved" in text(saved) and names(saved) == []
    repaired = lena.predict("In an airtight jar, somewhere cool.", api_name="/label_repair")
    assert "Saved your answer" in text(repaired)
    (vote,) = [v for v in runtime.store.list_votes() if v.campaign_id == campaign.campaign_id]
    assert (vote.repair, vote.repaired_by) == ("In an airtight jar, somewhere cool.", "user:lena")
    event, body = call(url, "label_repair", ["Anonymous answer"], {})
    assert event == "error" and "Please log in" in body
    assert runtime.store.get_vote(vote.battle_id).repair == "In an airtight jar, somewhere cool."
