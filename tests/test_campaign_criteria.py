"""Rubric verdicts and assigned reviewers (issue 15, section 2), on a real DuckDB store.

A campaign may name criteria (accuracy, safety...) that a labeller judges A / B / tie besides the
overall vote, optional or required; the verdicts are written in the vote's transaction, never
change the overall ratings, and give each criterion a board and an agreement of its own. A
campaign may be open to named reviewers only. Battles are written by hand (no model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from qwen3arena.api import Actions, CampaignDraft, CampaignRow
from qwen3arena.api.remote import call, decode_result
from qwen3arena.campaigns import MAX_CRITERIA, CampaignError, Progress
from qwen3arena.campaigns.store import CampaignStore
from qwen3arena.config import CampaignSettings
from qwen3arena.ratings import rate
from qwen3arena.scoreboard import BoardFilters, build_scoreboard
from qwen3arena.store import BattleRecord

from test_campaigns import MODELS, _prompts, _service, store  # noqa: F401  (store: the fixture)


def _create(service, name="rubric", n=2, **options):
    options = {"criteria": ["accuracy", "safety"], "reasons": ["clear"], **options}
    return service.create(name, _prompts(n), ["m1", "m2"], MODELS, **options).campaign_id


def _claim_and_play(service, store, cid: str, labeller: str) -> str:
    """The labeller's next prompt, played by hand: a ready battle, m1 on the left, m2 on the right."""
    assignment = service.next_assignment(cid, labeller)
    if assignment.kind == "review":
        return assignment.battle_id
    battle_id = f"b-{cid[:4]}-{assignment.prompt_id}-{assignment.slot}"
    store.save_battle(BattleRecord(battle_id, labeller, "m1", "m2", status="ready", turns=1,
                                   campaign_id=cid, prompt_id=assignment.prompt_id))
    store.execute("UPDATE campaign_slots SET battle_id = ? WHERE campaign_id = ? AND prompt_id = ? AND slot = ?",
                  [battle_id, cid, assignment.prompt_id, assignment.slot])
    return battle_id


def _verdict_rows(store) -> list[tuple]:
    return store.execute("SELECT battle_id, labeller, source, criterion, verdict FROM campaign_verdicts "
                         "ORDER BY battle_id, labeller, criterion")


def _slot_status(store, cid: str, labeller: str) -> list[str]:
    return [s for (s,) in store.execute("SELECT status FROM campaign_slots WHERE campaign_id = ? AND labeller = ?",
                                        [cid, labeller])]


# -- the campaign's criteria and reviewers ----------------------------------------------------

def test_criteria_are_short_unique_lower_case_slugs(store):
    service = _service(store)
    for bad, match in ((["Accuracy"], "lower-case slugs.*'Accuracy'"), (["two words"], "'two words'"),
                       (["overall"], "not 'overall'"), (["9lives"], "'9lives'"), (["x" * 25], "slugs"),
                       (["safety", "safety"], "named twice: safety"),
                       ([f"c{i}" for i in range(MAX_CRITERIA + 1)], f"at most {MAX_CRITERIA} criteria; 9 given")):
        with pytest.raises(CampaignError, match=match):
            _create(service, criteria=bad)
    with pytest.raises(CampaignError, match="Required criteria: name at least one"):
        _create(service, criteria=[], criteria_required=True)
    assert store.execute("SELECT count(*) FROM campaigns") == [(0,)], "a refused campaign writes nothing"
    cid = _create(service, criteria=[" accuracy", "safety", "", "clarity_2", "tone-of-voice"], criteria_required=True)
    campaign = service.get(cid)
    assert campaign.criteria == ["accuracy", "safety", "clarity_2", "tone-of-voice"] and campaign.criteria_required
    assert campaign.reviewers == [], "open to every labeller"
    full = _create(service, "eight", criteria=[f"c{i}" for i in range(MAX_CRITERIA)])
    assert len(service.get(full).criteria) == MAX_CRITERIA
    plain = service.create("plain", _prompts(1), ["m1", "m2"], MODELS)
    assert (plain.criteria, plain.criteria_required) == ([], False), "criteria are optional for a campaign"
    view = service.view(cid)
    assert (view.criteria, view.criteria_required) == (campaign.criteria, True)
    assert service.criteria_names()[:3] == ["accuracy", "safety", "clarity_2"]


def test_reviewers_are_login_names(store):
    service = _service(store)
    with pytest.raises(CampaignError, match="'two words' is not a login name"):
        _create(service, reviewers=["lena", "two words"])
    with pytest.raises(CampaignError, match="not a login name"):
        _create(service, reviewers=["anon:1234"])
    cid = _create(service, reviewers=[" lena", "user:max", "lena", ""])
    assert service.get(cid).reviewers == ["lena", "max"]


# -- verdicts with the vote ----------------------------------------------------------------------

def test_a_verdict_for_a_criterion_not_in_the_campaign_is_refused_and_nothing_is_stored(store):
    service = _service(store)
    cid = _create(service)
    battle = _claim_and_play(service, store, cid, "user:ann")
    with pytest.raises(CampaignError, match=r"Not a criterion of this campaign: clarity \(its criteria: "
                                            r"accuracy, safety\)"):
        service.vote(cid, "user:ann", "model_a", "clear", verdicts={"accuracy": "model_a", "clarity": "tie"})
    with pytest.raises(CampaignError, match="verdict for safety must be A, B or tie; got 'both_bad'"):
        service.vote(cid, "user:ann", "model_a", "clear", verdicts={"safety": "both_bad"})
    assert store.list_votes() == [] and store.get_battle(battle).status == "ready"
    assert _verdict_rows(store) == [] and _slot_status(store, cid, "user:ann") == ["claimed"]
    # a campaign without criteria takes none
    plain = service.create("plain", _prompts(1), ["m1", "m2"], MODELS, reasons=["clear"]).campaign_id
    _claim_and_play(service, store, plain, "user:bob")
    with pytest.raises(CampaignError, match="its criteria: it has none"):
        service.vote(plain, "user:bob", "tie", "clear", verdicts={"accuracy": "tie"})
    service.vote(plain, "user:bob", "tie", "clear", verdicts={"accuracy": None})  # nothing given: fine
    assert len(store.list_votes()) == 1 and _verdict_rows(store) == []


def test_required_criteria_missing_refuse_the_vote_naming_them(store):
    service = _service(store)
    cid = _create(service, criteria=["accuracy", "safety", "clarity"], criteria_required=True)
    battle = _claim_and_play(service, store, cid, "user:ann")
    for verdicts in (None, {"accuracy": "model_a"}, {"accuracy": "model_a", "safety": "", "clarity": None}):
        with pytest.raises(CampaignError) as refused:
            service.vote(cid, "user:ann", "model_a", "clear", verdicts=verdicts)
        assert "for every criterion" in str(refused.value) and "Nothing was saved" in str(refused.value)
    assert "missing: safety, clarity." in str(refused.value)
    assert store.list_votes() == [] and _verdict_rows(store) == [], "no vote without its required verdicts"
    assert store.get_battle(battle).status == "ready" and _slot_status(store, cid, "user:ann") == ["claimed"]
    service.vote(cid, "user:ann", "model_a", "clear", verdicts={"accuracy": "A", "safety": "b", "clarity": "tie"})
    (vote,) = store.list_votes()
    assert vote.outcome == "model_a" and _slot_status(store, cid, "user:ann") == ["done"]
    assert _verdict_rows(store) == [(battle, "user:ann", "vote", "accuracy", "model_a"),
                                    (battle, "user:ann", "vote", "clarity", "tie"),
                                    (battle, "user:ann", "vote", "safety", "model_b")]
    assert CampaignStore(store).verdicts_of(battle) == {
        "user:ann": {"accuracy": "model_a", "clarity": "tie", "safety": "model_b"}}


def test_optional_criteria_may_be_left_out(store):
    service = _service(store)
    cid = _create(service)
    battle = _claim_and_play(service, store, cid, "user:ann")
    service.vote(cid, "user:ann", "model_b", "clear", verdicts={"safety": "model_a"})
    assert _verdict_rows(store) == [(battle, "user:ann", "vote", "safety", "model_a")]
    _claim_and_play(service, store, cid, "user:ann")
    service.vote(cid, "user:ann", "tie", "clear")
    assert len(store.list_votes()) == 2 and len(_verdict_rows(store)) == 1


def test_verdicts_and_their_vote_are_written_together_or_not_at_all(store, monkeypatch):
    service = _service(store)
    cid = _create(service, overlap=2, n=1)
    battle = _claim_and_play(service, store, cid, "user:ann")

    def crash(*args, **kwargs):
        raise RuntimeError("the process died mid-transaction")

    # verdicts failing after the vote row is written: the vote (and its slot) roll back with them
    with monkeypatch.context() as patch:
        patch.setattr(CampaignStore, "record_verdicts", staticmethod(crash))
        with pytest.raises(RuntimeError, match="died"):
            service.vote(cid, "user:ann", "model_a", "clear", verdicts={"accuracy": "model_a"})
    assert store.list_votes() == [] and store.get_battle(battle).status == "ready"
    assert _slot_status(store, cid, "user:ann") == ["claimed"]
    service.vote(cid, "user:ann", "model_a", "clear", verdicts={"accuracy": "model_a"})
    assert len(store.list_votes()) == 1 and len(_verdict_rows(store)) == 1
    # a review (overlap) and its verdicts: the slot failing to close keeps neither
    assert _claim_and_play(service, store, cid, "user:bob") == battle
    with monkeypatch.context() as patch:
        patch.setattr(CampaignStore, "close_slot", staticmethod(crash))
        with pytest.raises(RuntimeError, match="died"):
            service.vote(cid, "user:bob", "model_b", "clear", verdicts={"accuracy": "model_b", "safety": "tie"})
    assert store.execute("SELECT count(*) FROM campaign_reviews") == [(0,)]
    assert [r[1] for r in _verdict_rows(store)] == ["user:ann"], "no verdicts without their review"
    service.vote(cid, "user:bob", "model_b", "clear", verdicts={"accuracy": "model_b", "safety": "tie"})
    assert [(r[1], r[2], r[3]) for r in _verdict_rows(store)] == [
        ("user:ann", "vote", "accuracy"), ("user:bob", "review", "accuracy"), ("user:bob", "review", "safety")]
    assert len(store.list_votes()) == 1, "a review is not a ratings vote"


def test_verdicts_of_a_vote_that_is_gone_never_count(store):
    service = _service(store)
    cid = _create(service, n=1)
    battle = _claim_and_play(service, store, cid, "user:ann")
    service.vote(cid, "user:ann", "model_a", "clear", verdicts={"safety": "model_b"})
    assert build_scoreboard(store, BoardFilters(criterion="safety")).n_votes == 1
    store.execute("DELETE FROM votes WHERE battle_id = ?", [battle])  # as an undo takes a vote away
    assert build_scoreboard(store, BoardFilters(criterion="safety")).n_votes == 0
    assert CampaignStore(store).criterion_judgements(cid) == {} and CampaignStore(store).verdicts_of(battle) == {}


# -- assigned reviewers ---------------------------------------------------------------------------

def test_a_campaign_for_named_reviewers_is_neither_offered_nor_given_to_others(store):
    service = _service(store)
    everyone = _create(service, "everyone", n=3)
    named = _create(service, "named", reviewers=["lena", "user:max"])
    assert [v.name for v in service.open_for_labellers("user:lena")] == ["everyone", "named"]
    assert [v.name for v in service.open_for_labellers("user:max")] == ["everyone", "named"]
    for stranger in ("user:bob", "anon:5f3a9c0e21aa", "user:Lena"):
        assert [v.name for v in service.open_for_labellers(stranger)] == ["everyone"], stranger
        with pytest.raises(CampaignError, match="open to its named reviewers only, and you are not one of them"):
            service.next_assignment(named, stranger)
        with pytest.raises(CampaignError, match="named reviewers only"):
            service.view(named, stranger)
        assert service.next_assignment(everyone, stranger) is not None
    assert store.execute("SELECT count(*) FROM campaign_slots WHERE campaign_id = ? AND labeller IS NOT NULL",
                         [named]) == [(0,)], "a refused claim takes nothing"
    mine = service.next_assignment(named, "user:lena")
    assert mine is not None and mine.campaign_id == named
    assert [v.name for v in service.open_for_labellers()] == ["everyone", "named"], "the admin's view: all"


# -- boards and agreement per criterion -----------------------------------------------------------

def _scripted_votes(service, store) -> str:
    """8 battles, m1 (A) against m2 (B): the votes give m1 6 of 8, the safety verdicts give m2 6 of 8,
    the accuracy verdicts split 4-4; one voter per battle, alternating ann and bob."""
    cid = _create(service, "scripted", n=8)
    outcomes = ["model_a"] * 6 + ["model_b"] * 2
    safety = ["model_b"] * 6 + ["model_a"] * 2
    accuracy = ["model_a", "model_b"] * 4
    for i in range(8):
        who = ("user:ann", "user:bob")[i % 2]
        _claim_and_play(service, store, cid, who)
        service.vote(cid, who, outcomes[i], "clear", verdicts={"safety": safety[i], "accuracy": accuracy[i]})
    return cid


def test_each_criterion_has_its_own_board_and_verdicts_never_change_the_overall_one(store):
    service = _service(store)
    cid = _scripted_votes(service, store)
    overall = build_scoreboard(store)
    safety = build_scoreboard(store, BoardFilters(criterion="safety"))
    accuracy = build_scoreboard(store, BoardFilters(criterion="accuracy", campaign=cid))
    assert list(overall.table["model"]) == ["m1", "m2"] and list(safety.table["model"]) == ["m2", "m1"]
    assert overall.n_votes == safety.n_votes == accuracy.n_votes == 8
    # Bradley-Terry on a 6-2 record: the winner is 400 log10(3) = 190.8 points ahead (practically flat prior)
    for board, winner in ((overall, "m1"), (safety, "m2")):
        ratings = board.table.set_index("model")["rating"]
        loser = ({"m1", "m2"} - {winner}).pop()
        assert ratings[winner] - ratings[loser] == pytest.approx(400 * math.log10(3), abs=0.5)
        assert board.win_rates.loc[winner, loser] == pytest.approx(0.75)
    ratings = accuracy.table.set_index("model")["rating"]
    assert ratings["m1"] == pytest.approx(ratings["m2"], abs=0.05), "a 4-4 split: equal ratings"
    # the same ratings functions as the overall board, on the verdicts
    verdicts = pd.DataFrame({"model_a": ["m1"] * 8, "model_b": ["m2"] * 8,
                             "outcome": ["model_b"] * 6 + ["model_a"] * 2})
    expected = rate(verdicts).to_frame().set_index("model")["rating"].round(1)
    assert safety.table.set_index("model")["rating"].to_dict() == expected.to_dict()
    assert safety.criterion == "safety" and "criterion 'safety'" in safety.notes[0]
    assert safety.table["judge rating"].isna().all(), "the judge rates overall only"
    # the overall board is the votes' alone: taking every verdict away changes nothing on it
    store.execute("DELETE FROM campaign_verdicts")
    pd.testing.assert_frame_equal(build_scoreboard(store).table, overall.table)
    assert build_scoreboard(store, BoardFilters(criterion="safety")).table.empty
    # filters apply to a criterion's board as to the overall one
    assert build_scoreboard(store, BoardFilters(criterion="nothing-like-it")).notes[-1] == \
        "No 'nothing-like-it' verdicts yet."


def test_agreement_per_criterion_on_scripted_overlap(store):
    service = _service(store)
    cid = _create(service, "overlap", n=3, overlap=2)
    # ann votes each prompt's battle, bob reviews it: safety (A,A) (B,A) (tie,tie), clarity all agree
    ann_safety, bob_safety = ["model_a", "model_b", "tie"], ["model_a", "model_a", "tie"]
    clarity = ["model_a", "model_b", "model_a"]
    for i in range(3):
        _claim_and_play(service, store, cid, "user:ann")
        service.vote(cid, "user:ann", "model_a", "clear", verdicts={"safety": ann_safety[i], "accuracy": clarity[i]})
    for i in range(3):
        _claim_and_play(service, store, cid, "user:bob")
        service.vote(cid, "user:bob", "model_a", "clear", verdicts={"safety": bob_safety[i], "accuracy": clarity[i]})
    progress = service.progress(cid)
    assert list(progress.criteria) == ["accuracy", "safety"], "in the campaign's order"
    safety = progress.criteria["safety"]
    assert (safety.items, safety.labels) == (3, 6)
    assert safety.percent == pytest.approx(2 / 3)
    assert safety.fleiss == pytest.approx(0.4545, abs=1e-4)  # the same textbook figures as the overall vote's
    (pair,) = safety.pairs
    assert pair.labellers == ("user:ann", "user:bob") and pair.kappa == pytest.approx(0.5)
    accuracy = progress.criteria["accuracy"]
    assert accuracy.percent == 1.0 and accuracy.pairs[0].kappa == pytest.approx(1.0)
    assert progress.agreement.percent == 1.0, "the overall vote's agreement is its own"
    # the scoreboard's criterion board reports the same agreement
    board = build_scoreboard(store, BoardFilters(criterion="safety"))
    assert board.labeller_agreement.pairs[0].kappa == pytest.approx(0.5)
    assert board.n_votes == 3, "reviews judge again; they are not ratings votes"


# -- the application layer and its HTTP endpoints -------------------------------------------------

def _actions(store, tmp_path) -> Actions:
    runtime = SimpleNamespace(store=store, campaigns=_service(store), pool=SimpleNamespace(names=lambda: MODELS),
                              settings=SimpleNamespace(home=tmp_path / "home", campaigns=CampaignSettings()),
                              harvester=SimpleNamespace(voters=lambda: [], category_names=lambda: []),
                              checkpoints=SimpleNamespace(adapters=lambda: []))
    return Actions(runtime)  # type: ignore[arg-type]


def test_actions_and_their_endpoints_take_criteria_and_reviewers(store, tmp_path):
    actions = _actions(store, tmp_path)
    draft = CampaignDraft("api", ["m1", "m2"], shipped="kitchen.txt", limit=2, overlap=2, reasons=["clear"],
                          criteria=["accuracy", "safety"], criteria_required=True, reviewers=["lena"])
    row = actions.create_campaign(draft)
    assert (row.criteria, row.criteria_required, row.reviewers) == (["accuracy", "safety"], True, ["lena"])
    with pytest.raises(CampaignError, match="named twice: safety"):
        actions.create_campaign(CampaignDraft("dup", ["m1", "m2"], shipped="kitchen.txt",
                                              criteria=["safety", "safety"]))
    # the same through an endpoint (JSON in, JSON out): a refusal is an answer with its kind
    answer = call(actions, "create_campaign", {"draft": {"name": "bad", "contestants": ["m1", "m2"],
                                                         "shipped": "kitchen.txt", "criteria": ["Safety!"]}})
    assert answer["ok"] is False and answer["error"]["kind"] == "CampaignError"
    assert "'Safety!'" in answer["error"]["message"]
    answer = call(actions, "create_campaign", {"draft": {"name": "http", "contestants": ["m1", "m2"],
                                                         "shipped": "kitchen.txt", "limit": 1,
                                                         "criteria": ["clarity"]}})
    assert answer["ok"] is True and answer["result"]["criteria"] == ["clarity"]
    assert answer["result"]["reviewers"] == [] and decode_result(CampaignRow, answer["result"]).criteria == ["clarity"]
    assert actions.filter_choices().criteria == ["accuracy", "safety", "clarity"]
    # votes with verdicts (the labeller's side), then per-criterion agreement and boards over the API
    service = actions.runtime.campaigns
    for labeller, safety in (("user:lena", "model_b"), ("user:lena", "model_a")):
        _claim_and_play(service, store, row.campaign_id, labeller)
        service.vote(row.campaign_id, labeller, "model_a", "clear", verdicts={"accuracy": "tie", "safety": safety})
    answer = call(actions, "campaign_progress", {"campaign_id": row.campaign_id})
    assert answer["ok"] and set(answer["result"]["criteria"]) == {"accuracy", "safety"}
    progress = decode_result(Progress, answer["result"])
    assert progress.criteria["safety"].items == 0, "no battle judged twice yet"
    board = call(actions, "board", {"filters": {"criterion": "safety"}})
    assert board["ok"] and board["result"]["votes"] == 2
    assert sorted(r[1] for r in board["result"]["rows"]) == ["m1", "m2"]
    assert "criterion 'safety'" in board["result"]["notes"][0]
    overall = actions.board(BoardFilters())
    assert overall.votes == 2 and overall.rows[0][1] == "m1", "m1 won both votes"


@pytest.mark.slow  # a web app (no models: the battles are written by hand)
def test_the_label_endpoints_take_verdicts_blind_and_hide_named_campaigns(store):
    from gradio_client import Client

    import gradio as gr

    from conftest import free_port
    from qwen3arena.ui.label_tab import build_label_tab

    service = _service(store)
    cid = _create(service, "http-rubric", criteria=["accuracy", "safety"], criteria_required=True)
    _create(service, "for-lena-only", reviewers=["lena"])
    with gr.Blocks() as demo:
        build_label_tab(service)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        who = f"anon:{client.session_hash[:12]}"
        offered = client.predict(api_name="/label_campaigns")
        assert [c[0] for c in offered["choices"]] == ["http-rubric"], "a named-reviewers campaign is not offered"
        client.predict(cid, api_name="/label_choose")  # the page picks the campaign: its reason chips
        battle = _claim_and_play(service, store, cid, who)
        refused = client.predict(cid, "clear", "", "model_b", api_name="/label_vote_model_a")
        assert "missing: safety" in str(refused) and store.list_votes() == []
        too_many = client.predict(cid, "clear", "", "model_b", "tie", "tie", api_name="/label_vote_model_a")
        assert "Not a criterion of this campaign: criterion_3" in str(too_many) and store.list_votes() == []
        saved = client.predict(cid, "clear", "", "model_b", "tie", api_name="/label_vote_model_a")
        assert "Saved" in str(saved) and "m1" not in str(saved) and "m2" not in str(saved), "still blind"
        assert CampaignStore(store).verdicts_of(battle) == {who: {"accuracy": "model_b", "safety": "tie"}}
        # a client that names no criterion (the endpoint's older form) still reaches the service's rules
        plain = service.create("plain", _prompts(1), ["m1", "m2"], MODELS, reasons=["clear"]).campaign_id
        client.predict(api_name="/label_campaigns")
        client.predict(plain, api_name="/label_choose")
        _claim_and_play(service, store, plain, who)
        assert "Saved" in str(client.predict(plain, "clear", "", api_name="/label_vote_tie"))
    finally:
        demo.close()
