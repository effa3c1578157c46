"""Campaign service on a real DuckDB store: validation, atomic claims under threads, resume,
overlap reviews, progress, and agreement on hand-made votes. Battles are written to the store
by hand here; tests/test_browser_campaign.py plays real ones."""

from __future__ import annotations

import threading

import pytest

from qwen3arena.arena import Arena
from qwen3arena.campaigns import (
    CampaignError,
    CampaignPrompt,
    CampaignService,
    PromptFileError,
    agreement,
    cohen_kappa,
    fleiss_kappa,
    load_shipped,
    parse_prompt_jsonl,
    percent_agreement,
)
from qwen3arena.campaigns.store import CampaignStore
from qwen3arena.config import ArenaSettings, CampaignSettings
from qwen3arena.serve import ContestantPool
from qwen3arena.store import BattleRecord, Store

MODELS = ["m1", "m2", "m3"]


@pytest.fixture
def store(store_target):
    """The campaign tables on each backend (DuckDB, PostgreSQL)."""
    s = Store(store_target)
    yield s
    s.close()


def _service(store, **settings) -> CampaignService:
    return CampaignService(store, Arena(store, ContestantPool(None), ArenaSettings()), CampaignSettings(**settings))


def _prompts(n: int) -> list[CampaignPrompt]:
    return [CampaignPrompt(f"q{i}", f"Question {i}?") for i in range(1, n + 1)]


def _play_by_hand(store: Store, assignment, labeller: str) -> str:
    """What CampaignService.play does with a live model: a ready battle for the slot."""
    battle_id = f"b-{assignment.prompt_id}-{assignment.slot}"
    store.save_battle(BattleRecord(battle_id, labeller, "m1", "m2", status="ready", turns=1,
                                   campaign_id=assignment.campaign_id, prompt_id=assignment.prompt_id))
    store.execute("UPDATE campaign_slots SET battle_id = ? WHERE campaign_id = ? AND prompt_id = ? AND slot = ?",
                  [battle_id, assignment.campaign_id, assignment.prompt_id, assignment.slot])
    return battle_id


def test_a_malformed_prompt_file_names_each_bad_row():
    text = ('{"id": "a", "prompt": "fine"}\n{not json}\n{"text": "no prompt key"}\n\n'
            '{"id": "a", "prompt": "dup"}\n[1]\n')
    with pytest.raises(PromptFileError) as error:
        parse_prompt_jsonl(text)
    message = str(error.value)
    assert "line 2: not valid JSON" in message
    assert 'line 3: missing "prompt"' in message
    assert "line 5: id 'a' was already used on line 1" in message
    assert "line 6: expected an object" in message
    assert "nothing was created" in message
    with pytest.raises(PromptFileError, match="no prompts"):
        parse_prompt_jsonl("\n\n")
    good = parse_prompt_jsonl('{"prompt": "one"}\n{"prompt": "two", "id": 7}\n')
    assert [(p.prompt_id, p.text) for p in good] == [("p1", "one"), ("7", "two")]
    assert len(load_shipped("kitchen.txt")) > 3


def test_campaigns_are_validated(store):
    service = _service(store)
    with pytest.raises(CampaignError, match="at least two contestants; 1 chosen"):
        service.create("c", _prompts(2), ["m1"], MODELS)
    with pytest.raises(CampaignError, match="Unknown contestants: ghost"):
        service.create("c", _prompts(2), ["m1", "ghost"], MODELS)
    with pytest.raises(CampaignError, match="no prompts"):
        service.create("c", [], ["m1", "m2"], MODELS)
    with pytest.raises(CampaignError, match="Overlap"):
        service.create("c", _prompts(2), ["m1", "m2"], MODELS, overlap=0)
    campaign = service.create("c", _prompts(2), ["m1", "m2"], MODELS, votes_per_prompt=2, overlap=2)
    assert campaign.prompts == 2 and campaign.contestants == ["m1", "m2"]
    assert service.progress(campaign.campaign_id).slots == 2 * (2 + 1)
    with pytest.raises(CampaignError, match="already exists"):
        service.create("c", _prompts(2), ["m1", "m2"], MODELS)
    view = service.open_for_labellers()[0]
    assert not hasattr(view, "contestants"), "labellers never get the contestants"


def test_two_labellers_never_claim_the_same_slot(store):
    service = _service(store)
    campaign = service.create("race", _prompts(6), ["m1", "m2"], MODELS)
    results: dict[str, object] = {}
    barrier = threading.Barrier(12)

    def claim(who: str) -> None:
        barrier.wait()
        results[who] = service.next_assignment(campaign.campaign_id, who)

    threads = [threading.Thread(target=claim, args=(f"user:l{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [(a.prompt_id, a.slot) for a in results.values() if a is not None]
    assert len(claimed) == 6 and len(set(claimed)) == 6, claimed
    assert sum(a is None for a in results.values()) == 6
    rows = store.execute("SELECT count(*), count(DISTINCT labeller) FROM campaign_slots "
                         "WHERE campaign_id = ? AND status = 'claimed'", [campaign.campaign_id])
    assert rows == [(6, 6)]


def test_a_labeller_who_leaves_gets_the_same_prompt_back(store):
    service = _service(store)
    cid = service.create("resume", _prompts(3), ["m1", "m2"], MODELS).campaign_id
    first = service.next_assignment(cid, "user:ann")
    again = service.next_assignment(cid, "user:ann")
    assert (again.prompt_id, again.slot, again.resumed) == (first.prompt_id, first.slot, True)
    # the vote closes the slot in its own transaction: the next call hands a new prompt
    _play_by_hand(store, first, "user:ann")
    service.vote(cid, "user:ann", "tie", "more accurate")
    following = service.next_assignment(cid, "user:ann")
    assert following.prompt_id != first.prompt_id and not following.resumed
    assert service.my_progress(cid, "user:ann").done == 1


def test_votes_reviews_progress_and_agreement(store):
    service = _service(store)
    cid = service.create("flow", _prompts(2), ["m1", "m2"], MODELS, votes_per_prompt=1, overlap=2,
                         reasons=["accurate", "clear"]).campaign_id
    a1 = service.next_assignment(cid, "user:ann")
    assert a1.kind == "battle" and a1.prompt == "Question 1?"
    # the review of q1 waits until q1's battle is voted, so bob gets q2's battle meanwhile
    b1 = service.next_assignment(cid, "user:bob")
    assert (b1.prompt_id, b1.kind) == ("q2", "battle")
    battle = _play_by_hand(store, a1, "user:ann")
    with pytest.raises(CampaignError, match="reason"):
        service.vote(cid, "user:ann", "model_a", None)
    service.vote(cid, "user:ann", "model_a", "accurate", "  A names the temperature  ")
    (vote,) = [v for v in store.list_votes() if v.battle_id == battle]
    assert (vote.campaign_id, vote.voter, vote.reason, vote.comment) == (cid, "user:ann", "accurate",
                                                                         "A names the temperature")
    assert store.get_battle(battle).prompt_id == "q1"
    battle2 = _play_by_hand(store, b1, "user:bob")
    service.vote(cid, "user:bob", "model_b", "clear")
    # now bob is served ann's q1 battle to judge again (overlap), with the same answers
    review = service.next_assignment(cid, "user:bob")
    assert (review.kind, review.prompt_id, review.battle_id) == ("review", "q1", battle)
    service.vote(cid, "user:bob", "model_a", "clear")
    with pytest.raises(CampaignError):
        service.vote(cid, "user:bob", "model_a", "clear")  # nothing in hand any more: not counted twice
    progress = service.progress(cid)
    assert (progress.done, progress.slots, progress.complete_prompts) == (3, 4, 1)
    assert progress.per_labeller == {"user:ann": {"votes": 1, "reviews": 0},
                                     "user:bob": {"votes": 1, "reviews": 1}}
    assert progress.agreement.items == 1 and progress.agreement.percent == 1.0
    assert len([v for v in store.list_votes() if v.campaign_id == cid]) == 2, "reviews are not ratings votes"
    ann = service.next_assignment(cid, "user:ann")
    assert (ann.kind, ann.battle_id) == ("review", battle2)
    assert service.my_progress(cid, "user:ann").done == 1


def _slot_status(store: Store, assignment) -> tuple:
    return store.execute("SELECT status, labeller FROM campaign_slots WHERE campaign_id = ? AND prompt_id = ? "
                         "AND slot = ?", [assignment.campaign_id, assignment.prompt_id, assignment.slot])[0]


def test_a_vote_and_its_slot_are_written_together_or_not_at_all(store, monkeypatch):
    service = _service(store)
    cid = service.create("atomic", _prompts(1), ["m1", "m2"], MODELS).campaign_id
    mine = service.next_assignment(cid, "user:ann")
    battle = _play_by_hand(store, mine, "user:ann")

    def crash(*args, **kwargs):
        raise RuntimeError("the process died between the vote and its slot")

    # a failure after the vote row is written and before the slot closes: neither is kept
    with monkeypatch.context() as patch:
        patch.setattr(CampaignStore, "close_slot", staticmethod(crash))
        with pytest.raises(RuntimeError, match="died"):
            service.vote(cid, "user:ann", "model_a", "more accurate")
    assert store.list_votes() == [] and store.get_battle(battle).status == "ready"
    assert _slot_status(store, mine) == ("claimed", "user:ann")
    # the same vote again lands with its slot closed, once
    service.vote(cid, "user:ann", "model_a", "more accurate")
    assert [v.battle_id for v in store.list_votes()] == [battle]
    assert _slot_status(store, mine) == ("done", "user:ann")
    with pytest.raises(CampaignError):
        service.vote(cid, "user:ann", "model_a", "more accurate")
    assert len(store.list_votes()) == 1


def test_a_vote_on_a_slot_handed_on_meanwhile_is_refused_whole(store, monkeypatch):
    service = _service(store, claim_timeout_s=0)
    cid = service.create("handed", _prompts(1), ["m1", "m2"], MODELS).campaign_id
    ann = service.next_assignment(cid, "user:ann")
    battle = _play_by_hand(store, ann, "user:ann")
    # ann's page read her slot just before bob took it over (her claim had gone stale)
    held = service.current(cid, "user:ann")
    monkeypatch.setattr(service, "_mine", lambda *args: held)
    service.next_assignment(cid, "user:bob")
    with pytest.raises(CampaignError, match="no longer yours"):
        service.vote(cid, "user:ann", "tie", "more accurate")
    assert store.list_votes() == [] and store.get_battle(battle).status == "ready"
    assert _slot_status(store, ann) == ("claimed", "user:bob")


def test_a_claim_left_too_long_goes_to_someone_else(store):
    service = _service(store, claim_timeout_s=0)
    cid = service.create("stale", _prompts(1), ["m1", "m2"], MODELS).campaign_id
    first = service.next_assignment(cid, "user:ann")
    taken = service.next_assignment(cid, "user:bob")
    assert (taken.prompt_id, taken.slot) == (first.prompt_id, first.slot)
    with pytest.raises(CampaignError, match="Next prompt"):
        service.vote(cid, "user:ann", "tie", "more accurate")


def test_agreement_statistics_on_textbook_data():
    # Fleiss (1971) as in Wikipedia's worked example: 10 items, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    cats = ["c1", "c2", "c3", "c4", "c5"]
    items = [[c for c, n in zip(cats, row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items, cats) == pytest.approx(0.2099, abs=1e-4)
    # Cohen: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert percent_agreement([["x", "x", "y"], ["x", "x"]]) == pytest.approx((1 / 3 + 1) / 2)
    assert fleiss_kappa([["tie", "tie"], ["tie", "tie"]]) is None, "undefined, not a fake 1.0"


def test_campaign_agreement_on_hand_made_votes(store):
    service = _service(store)
    cid = service.create("agree", _prompts(3), ["m1", "m2"], MODELS).campaign_id
    labels = {"b1": ("model_a", "model_a"), "b2": ("model_b", "model_a"), "b3": ("tie", "tie")}
    for battle, (first, second) in labels.items():
        store.save_battle(BattleRecord(battle, "user:ann", "m1", "m2", status="ready", turns=1, campaign_id=cid))
        store.record_vote(battle, first, "user:ann")
        store.execute("INSERT INTO campaign_reviews VALUES (?, ?, 'user:bob', ?, NULL, NULL, now())",
                      [cid, battle, second])
    report = service.agreement(cid)
    assert (report.items, report.labels) == (3, 6)
    assert report.percent == pytest.approx(2 / 3)
    assert report.fleiss == pytest.approx(0.4545, abs=1e-4)
    (pair,) = report.pairs
    assert pair.labellers == ("user:ann", "user:bob") and pair.kappa == pytest.approx(0.5)
    assert agreement({"x": {"ann": "tie"}}).items == 0, "a battle judged once says nothing"
