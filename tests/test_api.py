"""The application layer (qwen3arena.api): one typed seam for the tabs, the CLI and HTTP.

Fast tests check the codec, the form binding and the error mapping; the slow ones check that
each action gives the same structured result, and a refusal the same error type, through a
local call and through a running app (what `python -m qwen3arena ... --app` uses).
"""

from __future__ import annotations

import inspect
import json
import typing
from datetime import date

import pytest

from qwen3arena.api import ENDPOINTS, Actions, CampaignDraft, DatasetText, RemoteActions, plain, typed
from qwen3arena.campaigns import CampaignError, PromptFileError
from qwen3arena.api.remote import _refused, decode_result
from qwen3arena.config import ConfigError
from qwen3arena.errors import Refused
from qwen3arena.harvest import BattleFilters, HarvestError, HarvestRules
from qwen3arena.scoreboard import BoardFilters
from qwen3arena.serve import AdapterError
from qwen3arena.train import DatasetError, RunRejected


def test_every_endpoint_is_a_typed_action():
    for api_name, method_name in ENDPOINTS.items():
        method = getattr(Actions, method_name)
        hints = typing.get_type_hints(method)
        assert "return" in hints, f"{method_name} declares what it returns"
        for name in inspect.signature(method).parameters:
            if name != "self":
                assert name in hints, f"{api_name}: parameter {name} has a type"


def test_values_cross_the_seam_by_name_and_type():
    query = typed(BoardFilters, {"since": "2026-11-02", "voter": "", "min_votes": 3.0, "battle_ids": ["b1"]})
    assert query == BoardFilters(min_votes=3, since=date(2026, 11, 2), battle_ids=frozenset({"b1"}))
    assert typed(BoardFilters, plain(query)) == query  # JSON and back
    filters = typed(BattleFilters, {"outcomes": ["tie", "model_a"], "model": ""})
    assert filters.outcomes == ("tie", "model_a") and filters.model is None
    with pytest.raises(ConfigError, match="unknown keys"):
        typed(HarvestRules, {"ties": "skip", "tie": "both"})
    with pytest.raises(ConfigError, match="ties"):
        typed(HarvestRules, {"ties": "sometimes"})
    with pytest.raises(ConfigError, match="is not a date"):
        typed(BoardFilters, {"since": "last tuesday"})


def test_a_remote_refusal_is_the_local_error_type():
    error = _refused("HarvestError", "Nothing new since round 3.")
    assert isinstance(error, HarvestError) and isinstance(error, Refused) and str(error) == "Nothing new since round 3."
    assert type(_refused("NoSuchKind", "x")) is Refused
    assert isinstance(_refused("RunRejected", "no"), RunRejected)


def test_every_domain_error_is_refused():
    import qwen3arena.runtime  # noqa: F401  imports every service package

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    kinds = {cls.__name__ for cls in subclasses(Refused)}
    assert {"HarvestError", "RunRejected", "DatasetError", "AdapterError", "ArenaError", "CampaignError",
            "ConfigError", "VoteRejected", "StoreLocked", "Forbidden", "JudgeError", "EvalFailed"} <= kinds


def test_results_decode_into_their_dataclasses():
    from qwen3arena.api import RunView

    view = decode_result(list[RunView], [{"run_id": "r1", "name": "n", "status": "queued", "unknown": 1}])
    assert view == [RunView(run_id="r1", name="n", status="queued")] and view[0].active


def test_forms_bind_components_by_field_name():
    import gradio as gr

    from qwen3arena.ui.forms import Form

    with gr.Blocks():
        ties, previous = gr.Radio(["skip", "both"]), gr.Checkbox()
    form = Form(ties=ties, include_previous_rounds=previous)
    assert form.values({previous: False, ties: "both"}) == {"ties": "both", "include_previous_rounds": False}
    assert form.fill({"ties": "skip", "other": 1}) == {ties: "skip"}
    rules = typed(HarvestRules, form.values({ties: "both", previous: False}))
    assert rules == HarvestRules(ties="both", include_previous_rounds=False)


# -- through a running app -------------------------------------------------------------------

@pytest.mark.slow
def test_each_action_is_the_same_locally_and_through_the_app(app_url, runtime):
    local, remote = Actions(runtime), RemoteActions(app_url)
    assert remote.datasets() == local.datasets()
    assert remote.checkpoints() == local.checkpoints()
    assert remote.runs(5) == local.runs(5)
    try:
        plan = local.preview_round(HarvestRules(ties="both"), BattleFilters(outcomes=("tie",)))
    except HarvestError as exc:
        with pytest.raises(HarvestError, match=str(exc)[:30]):
            remote.preview_round(HarvestRules(ties="both"), BattleFilters(outcomes=("tie",)))
    else:
        assert remote.preview_round(HarvestRules(ties="both"), BattleFilters(outcomes=("tie",))) == plan
    board_local, board_remote = local.board(BoardFilters(), "storage"), remote.board(BoardFilters(), "storage")
    assert (board_remote.votes, board_remote.columns) == (board_local.votes, board_local.columns)
    assert remote.campaigns() == local.campaigns()
    assert ([c.name for c in remote.serving_status().contestants]
            == [c.name for c in local.serving_status().contestants])
    kept = remote.add_dataset(DatasetText("api-upload.jsonl", "\n".join(
        json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
        for i in range(8))))
    assert kept.rows == 8 and kept.path in local.datasets()
    # refused the same way, with the same error type, whichever way it is asked
    for call, error, match in (
        (lambda a: a.publish("no-such-checkpoint"), AdapterError, "not a registered LoRA checkpoint"),
        (lambda a: a.run_status("no-such-run"), RunRejected, "No run 'no-such-run'"),
        (lambda a: a.export_round(999), HarvestError, "no round 999"),
        (lambda a: a.train_round(999), HarvestError, "no round 999"),
        (lambda a: a.add_dataset(DatasetText("bad.jsonl", "not json")), DatasetError, "bad.jsonl"),
        (lambda a: a.create_campaign(CampaignDraft("c", ["a", "b"], source="upload")), PromptFileError,
         "Upload a JSONL file"),
        (lambda a: a.campaign_progress("no-such-campaign"), CampaignError, "does not exist"),
        (lambda a: a.preview_run(local.run_config({"name": "x", "base_model": runtime.base_path,
                                                   "dataset": "/no/such.jsonl"})), Refused, "such.jsonl"),
    ):
        for actions in (local, remote):
            with pytest.raises(error, match=match):
                call(actions)


@pytest.mark.slow
def test_the_http_api_refuses_bad_arguments_without_running(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    answer = client.predict({"rules": {"ties": "sometimes"}}, api_name="/round_preview")
    assert answer["ok"] is False and answer["error"]["kind"] == "ConfigError" and "ties" in answer["error"]["message"]
    answer = client.predict({"no_such_argument": 1}, api_name="/runs")
    assert answer["ok"] is False and "unknown arguments" in answer["error"]["message"]
    run = client.predict({"config": {"name": "bad name!", "base_model": "/x", "dataset": "/y"}},
                         api_name="/train_start")
    assert run["ok"] is False and run["error"]["kind"] == "RunRejected" and "Checkpoint name" in run["error"]["message"]

