"""Harvest rules on hand-made battles, and round building on a real DuckDB store."""

from __future__ import annotations

import json
import threading

import pytest

from qwen3arena.harvest import (
    BattleFilters, Harvester, HarvestError, HarvestRules, VotedBattle, harvest, lineage, lineage_frame, preference_pair,
)
from qwen3arena.store import BattleRecord, Store


def conv(*texts: str) -> list[dict]:
    """user, assistant, user, assistant, ..."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def battle(bid: str, outcome: str, a=("Q?", "answer A"), b=("Q?", "answer B"), **kw) -> VotedBattle:
    turns = len(a) // 2
    return VotedBattle(battle_id=bid, vote_id="v-" + bid, outcome=outcome, model_a="ma", model_b="mb",
                       conversation_a=conv(*a), conversation_b=conv(*b),
                       finish_reasons_a=kw.pop("fa", ["stop"] * turns), finish_reasons_b=kw.pop("fb", ["stop"] * turns),
                       **kw)


# -- rules --------------------------------------------------------------------------------------

def test_decisive_vote_gives_winner_sft_row_and_pair():
    result = harvest([battle("1", "model_b")], HarvestRules())
    assert [r.row for r in result.sft] == [{"messages": conv("Q?", "answer B")}]
    assert result.sft[0].side == "model_b" and result.sft[0].vote_id == "v-1"
    assert [r.row for r in result.preference] == [{
        "prompt": [{"role": "user", "content": "Q?"}],
        "chosen": [{"role": "assistant", "content": "answer B"}],
        "rejected": [{"role": "assistant", "content": "answer A"}],
    }]
    assert result.used_vote_ids == ["v-1"]


def test_ties_and_both_bad_follow_the_stated_rules():
    battles = [battle("t", "tie"), battle("x", "both_bad")]
    skipped = harvest(battles, HarvestRules())
    assert not skipped.sft and not skipped.preference
    assert skipped.excluded == {"t": "tie", "x": "both bad"}
    both = harvest(battles, HarvestRules(ties="both"))
    assert [r.row["messages"][-1]["content"] for r in both.sft] == ["answer A", "answer B"]
    assert not both.preference  # a tie never makes a pair
    assert both.excluded == {"x": "both bad"}


@pytest.mark.parametrize("kwargs, reason", [
    ({"identity_leak": True}, "identity leak"),
    ({"status": "error"}, "battle error"),
    ({"fa": ["length"]}, "unfinished answer"),
    ({"fb": [None]}, "unfinished answer"),
    ({"a": ("Q?", "  ")}, "unfinished answer"),
    ({"excluded": "off-topic"}, "excluded by hand"),
])
def test_battles_that_never_give_data(kwargs, reason):
    result = harvest([battle("1", "model_a", **kwargs)], HarvestRules())
    assert not result.sft and not result.preference
    assert result.excluded == {"1": reason}


def test_judge_filter_keeps_only_agreeing_votes():
    battles = [battle("agree", "model_a", judge_outcome="model_a"),
               battle("disagree", "model_a", judge_outcome="model_b"),
               battle("unjudged", "model_a")]
    result = harvest(battles, HarvestRules(judge_agrees_only=True))
    assert [r.battle_id for r in result.sft] == ["agree"]
    assert result.excluded == {"disagree": "judge disagrees", "unjudged": "no judge verdict"}
    assert not harvest(battles, HarvestRules()).excluded  # without the filter all three count


def test_multi_turn_gives_sft_of_whole_conversation_but_no_pair():
    b = battle("m", "model_a", a=("Q1", "A1", "Q2", "A2"), b=("Q1", "B1", "Q2", "B2"))
    assert preference_pair(b) is None  # each side saw its own first answer
    result = harvest([b], HarvestRules())
    assert result.sft[0].row["messages"] == conv("Q1", "A1", "Q2", "A2")
    assert not result.preference
    assert harvest([b], HarvestRules(include_multi_turn=False)).excluded == {"m": "multi-turn"}


def test_identical_answers_give_no_pair():
    result = harvest([battle("same", "model_a", a=("Q?", "Same."), b=("Q?", " Same. "))], HarvestRules())
    assert len(result.sft) == 1 and not result.preference


def test_duplicates_are_kept_once_oldest_first():
    battles = [battle("1", "model_a", a=("Q?", "same  answer")), battle("2", "model_a", a=("Q?", "same answer")),
               battle("3", "model_b")]
    result = harvest(battles, HarvestRules())
    assert [r.battle_id for r in result.sft] == ["1", "3"]
    assert result.duplicates == 2  # the sft row and the pair of battle 2


# -- rounds on a real store ---------------------------------------------------------------------

def add_vote(store: Store, bid: str, outcome: str, a: str = "answer A", b: str = "answer B",
             prompt: str = "How should I store eggs?", finish: str = "stop", voter: str = "user:ann",
             campaign: str | None = None) -> None:
    store.save_battle(BattleRecord(
        battle_id=bid, voter=voter, model_a="ma", model_b="mb", status="ready", turns=1, campaign_id=campaign,
        conversation_a=conv(prompt, a), conversation_b=conv(prompt, b),
        metrics_a=[{"finish_reason": finish}], metrics_b=[{"finish_reason": "stop"}]))
    store.record_vote(bid, outcome, voter)


@pytest.fixture
def harvester(tmp_path, store_target):
    store = Store(store_target)
    yield Harvester(store, tmp_path / "rounds", categories={"How should I store eggs?": "storage"})
    store.close()


def test_no_decisive_votes_is_a_clear_refusal(harvester):
    with pytest.raises(HarvestError, match="No votes give training data"):
        harvester.build_round()
    add_vote(harvester.store, "b1", "tie")
    add_vote(harvester.store, "b2", "model_a", finish="length")
    with pytest.raises(HarvestError, match="tie: 1.*unfinished answer: 1|unfinished answer: 1.*tie: 1"):
        harvester.build_round()
    assert harvester.rounds() == [] and not list((harvester.rounds_dir).glob("*"))


def test_round_files_manifest_and_second_round(harvester, tmp_path):
    store = harvester.store
    add_vote(store, "b1", "model_a", a="Keep them in the carton.")
    add_vote(store, "b2", "model_b", b="In the fridge.", prompt="Where do eggs go?")
    first = harvester.build_round(created_by="user:admin")
    assert first.round == 1 and sorted(first.vote_ids) == sorted(v.vote_id for v in store.list_votes())
    from datasets import load_dataset

    sft = load_dataset("json", data_files=str(first.sft_path))["train"]
    assert sorted(r["messages"][-1]["content"] for r in sft) == ["In the fridge.", "Keep them in the carton."]
    pairs = load_dataset("json", data_files=str(first.preference_path))["train"]
    assert len(pairs) == 2 and set(pairs.column_names) == {"prompt", "chosen", "rejected"}
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["round"] == 1 and manifest["counts"]["sft"] == 2 and manifest["content_sha"] == first.content_sha
    sources = [json.loads(line) for line in (first.sft_path.parent / "sources.jsonl").read_text().splitlines()]
    assert {s["battle_id"] for s in sources} == {"b1", "b2"}

    # built twice with no new vote: refused, nothing written
    with pytest.raises(HarvestError, match="Nothing new since round 1"):
        harvester.build_round()
    # one new vote: round 2 holds the new row plus round 1's rows (mixed, deduplicated)
    add_vote(store, "b3", "model_a", a="Cool and dry.", prompt="Flour?")
    second = harvester.build_round()
    assert second.round == 2 and second.counts["sft"] == 3 and second.counts["sft from earlier rounds"] == 0
    assert set(second.vote_ids) == {v.vote_id for v in store.list_votes()}
    assert [r.round for r in harvester.rounds()] == [1, 2]
    alone = harvester.preview(HarvestRules(include_previous_rounds=False))
    assert alone.counts["sft"] == 3  # the votes themselves still give all three rows


def test_votes_arriving_during_a_build_are_not_in_the_manifest(harvester):
    store = harvester.store
    for i in range(20):
        add_vote(store, f"a{i}", "model_a", a=f"answer {i}", prompt=f"question {i}")
    before = {v.vote_id for v in store.list_votes()}
    late = threading.Thread(target=lambda: [add_vote(store, f"late{i}", "model_b", b=f"late {i}",
                                                     prompt=f"late q {i}") for i in range(10)])
    late.start()
    record = harvester.build_round()
    late.join()
    rows = [json.loads(line) for line in record.sft_path.read_text().splitlines()]
    used = set(record.vote_ids)
    assert before <= used <= {v.vote_id for v in store.list_votes()}
    assert len(rows) == len(used)  # the files hold exactly the manifest's votes
    after = harvester.build_round()  # the late votes make the next round
    assert set(after.vote_ids) - used == {v.vote_id for v in store.list_votes()} - used


def test_filters_exclusions_and_categories(harvester):
    store = harvester.store
    add_vote(store, "b1", "model_a")
    add_vote(store, "b2", "model_b", prompt="Something else?", voter="user:bob")
    add_vote(store, "b3", "tie", campaign="c-1")
    assert [r.category for r in harvester.browse()] == ["storage", "uncategorized", "storage"]
    assert [r.battle.battle_id for r in harvester.browse(BattleFilters(campaign="c-1"))] == ["b3"]
    assert [r.battle.battle_id for r in harvester.browse(BattleFilters(category="storage"))] == ["b1", "b3"]
    assert [r.battle.battle_id for r in harvester.browse(BattleFilters(voter="user:bob"))] == ["b2"]
    assert [r.battle.battle_id for r in harvester.browse(BattleFilters(outcomes=("tie",)))] == ["b3"]
    assert [r.battle.battle_id for r in harvester.browse(BattleFilters(judge="no verdict"))] == ["b1", "b2", "b3"]
    harvester.exclude("b1", "wrong facts", by="user:admin")
    assert harvester.battle("b1").battle.excluded == "wrong facts"
    plan = harvester.preview(filters=BattleFilters())
    assert plan.counts["sft"] == 1 and plan.harvest.excluded["b1"] == "excluded by hand"
    harvester.include("b1")
    assert harvester.preview().counts["sft"] == 2
    with pytest.raises(HarvestError):
        harvester.exclude("nope", "x")
    # a round built from a filter uses only the filtered votes
    record = harvester.build_round(filters=BattleFilters(voter="user:bob"))
    assert record.vote_ids == [store.execute("SELECT vote_id FROM votes WHERE battle_id = 'b2'")[0][0]]


def _duel(store: Store, prefix: str, a: str, b: str, wins_a: int, wins_b: int) -> None:
    """Votes between two models: `wins_a` for a, `wins_b` for b."""
    for k in range(wins_a + wins_b):
        bid = f"{prefix}{k}"
        store.save_battle(BattleRecord(
            battle_id=bid, voter="user:ann", model_a=a, model_b=b, status="ready", turns=1,
            conversation_a=conv("Q?", "x"), conversation_b=conv("Q?", "y"),
            metrics_a=[{"finish_reason": "stop"}], metrics_b=[{"finish_reason": "stop"}]))
        store.record_vote(bid, "model_a" if k < wins_a else "model_b", "user:ann")


def test_lineage_puts_checkpoints_in_rounds_and_judges_each_against_its_parent(harvester):
    from qwen3arena.store import ModelRecord, RunRecord

    store = harvester.store
    store.upsert_model(ModelRecord("base", "base"))
    for name in ("r1", "r2", "r3"):
        store.upsert_model(ModelRecord(name, "adapter", base_model="base"))
        store.save_run(RunRecord(f"run-{name}", name, "succeeded", {"dataset": "/x/round-001/sft.jsonl"},
                                 "/out", parent="base", round=1, metrics={"rows": 12}))
    _duel(store, "a", "r1", "base", 30, 10)   # clearly better
    _duel(store, "b", "r2", "base", 11, 11)   # even: unclear
    _duel(store, "c", "r3", "base", 4, 0)     # 4 of 4, but too few votes to say
    entries = lineage(store)
    assert [(e.round, e.checkpoint, e.parent) for e in entries] == [
        (0, "base", None), (1, "r1", "base"), (1, "r2", "base"), (1, "r3", "base")]
    by = {e.checkpoint: e for e in entries}
    assert by["r1"].data == "round-001/sft.jsonl" and by["r1"].rows == 12
    r1 = by["r1"].vs_parent
    assert r1 is not None and r1.verdict == "better" and r1.lower > 0 and r1.votes_a == 40
    assert by["r1"].change_vs_parent() == f"{r1.difference:+.0f} [{r1.lower:+.0f}, {r1.upper:+.0f}] (better)"
    assert by["r2"].vs_parent.verdict == "unclear" and by["r2"].vs_parent.lower < 0 < by["r2"].vs_parent.upper
    assert by["r3"].vs_parent.difference > 0 and by["r3"].vs_parent.verdict == "too few votes"
    assert by["base"].vs_parent is None and by["base"].change_vs_parent() == ""
    frame = lineage_frame(entries)
    assert frame.set_index("checkpoint").loc["r3", "vs parent"].endswith("(too few votes)")


def test_export_as_hugging_face_dataset(harvester, tmp_path):
    from datasets import load_from_disk

    add_vote(harvester.store, "b1", "model_a")
    add_vote(harvester.store, "b2", "model_b", prompt="Other?")
    record = harvester.build_round()
    saved = harvester.export_hf(record.round, tmp_path / "hf")
    assert saved.needs_token and not saved.pushed and saved.kinds == ["sft", "preference"]
    sft = load_from_disk(str(tmp_path / "hf" / "sft"))
    assert len(sft) == 2 and sft[0]["messages"][0]["role"] == "user"
    assert len(load_from_disk(str(tmp_path / "hf" / "preference"))) == 2
    # no network here: the push fails with a message and the local copy stays
    failed = harvester.export_hf(record.round, tmp_path / "hf2", repo_id="org/none", token="hf_invalid")
    assert failed.repo_id == "org/none" and not failed.pushed and failed.push_error
    assert (tmp_path / "hf2" / "sft").exists()
    with pytest.raises(HarvestError, match="no round 9"):
        harvester.export_hf(9, tmp_path / "x")
