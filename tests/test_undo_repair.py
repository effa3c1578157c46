"""Issue 15, sections 3 and 1: undo without bias, and repairs (the voter's own better answer).

Undo: a vote is stored at once but shows no name; its voter may undo it on the same page within
`arena.undo_window_s`, never after the names were shown; exactly one vote per battle holds, and
nothing (ratings, sampler, harvest) counts a vote that can still be undone. Repair: kept with
the vote (who, when, the answer it replaced), only by its voter, within `arena.repair_window_s`,
capped; the harvest trains on it (docs/harvest.md). The service and store rules run here against
stub endpoints; the pages' API per role is in test_undo_repair_pages.py."""

from __future__ import annotations

import json
import threading
import time

import duckdb
import pytest

from qwen3arena.api import plain
from qwen3arena.arena import ArenaError, BattleClosed, NoBattle, NotYourVote, RepairRejected, UndoRejected, VoteFinal
from qwen3arena.harvest import Harvester, HarvestRules, VotedBattle, harvest
from qwen3arena.scoreboard import build_scoreboard
from qwen3arena.store import BattleRecord, Store, VoteRejected
from qwen3arena.store.migrations import MIGRATIONS
from test_arena_integrity import NAMES, arena_of, finish, store  # noqa: F401 (the store fixture; stubs: conftest)


def _names(value) -> list[str]:
    text = json.dumps(plain(value), default=str)
    return [n for n in NAMES if n in text]


def played(arena, page: str = "page-1", prompt: str = "How should I store rice?") -> str:
    final = finish(arena.send(page, f"anon:{page}", prompt))[-1]
    assert final.votable
    return final.battle_id


# -- undo ----------------------------------------------------------------------------------------

def test_a_vote_is_stored_at_once_shows_no_name_and_can_be_undone_then_cast_again(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    battle = played(arena)
    ballot = arena.cast(battle, "model_a", "anon:page-1", session="page-1")
    assert 4 < ballot.undo_s <= 5 and ballot.outcome == "model_a"
    assert _names(ballot) == [], "no name before the reveal"
    assert store.get_vote(battle).outcome == "model_a", "stored at once: nothing lost if the page closes"
    assert store.list_votes(final_only=True) == [] and store.vote_tallies() == {}, "not counted yet"
    assert arena.pending("page-1").vote_id == ballot.vote_id
    with pytest.raises(ArenaError, match="undo your vote to go on"):
        next(arena.send("page-1", "anon:page-1", "A follow-up while the vote waits"))

    undone = arena.undo(None, "anon:page-1", session="page-1")
    assert undone.outcome == "model_a" and store.get_vote(battle) is None and store.list_votes() == []
    (audit,) = store.undone_votes(battle)
    assert audit["vote_id"] == ballot.vote_id and audit["vote"]["outcome"] == "model_a"
    assert store.get_battle(battle).status == "ready", "votable again"
    assert arena.pending("page-1") is None

    again = arena.cast(battle, "model_b", "anon:page-1", session="page-1")
    reveal = arena.reveal(None, "anon:page-1", session="page-1")
    assert {reveal.model_a, reveal.model_b} == set(NAMES) and reveal.outcome == "model_b"
    (vote,) = store.list_votes(final_only=True)
    assert (vote.vote_id, vote.outcome) == (again.vote_id, "model_b")
    board = build_scoreboard(store)
    assert board.n_votes == 1, "the undone vote is not rated"


def test_undo_after_the_reveal_twice_or_by_someone_else_is_refused(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    battle = played(arena)
    arena.cast(battle, "tie", "anon:page-1", session="page-1")
    with pytest.raises(NotYourVote):  # another page, even naming the battle
        arena.undo(battle, "anon:page-2", session="page-2")
    with pytest.raises(NotYourVote):  # another voter, straight at the store
        store.undo_vote(battle, "anon:page-2")
    arena.undo(battle, "anon:page-1", session="page-1")
    with pytest.raises(UndoRejected, match="no vote to undo"):
        arena.undo(battle, "anon:page-1", session="page-1")
    with pytest.raises(NoBattle, match="no vote to reveal"):
        arena.reveal(battle, "anon:page-1", session="page-1")
    arena.cast(battle, "model_a", "anon:page-1", session="page-1")
    arena.reveal(battle, "anon:page-1", session="page-1")
    with pytest.raises(VoteFinal, match="final"):
        arena.undo(battle, "anon:page-1", session="page-1")
    with pytest.raises(VoteFinal):
        store.undo_vote(battle, "anon:page-1")
    (vote,) = store.list_votes(final_only=True)
    assert vote.outcome == "model_a" and len(store.undone_votes()) == 1
    assert arena.reveal(battle, "anon:page-1").outcome == "model_a", "shown again, still the same vote"
    with pytest.raises(NotYourVote):
        arena.reveal(battle, "anon:page-2")


def test_the_undo_window_closes_by_itself_and_zero_disables_undo(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"), undo_window_s=0.3)
    battle = played(arena)
    arena.cast(battle, "model_a", "anon:page-1", session="page-1")
    time.sleep(0.4)
    assert arena.pending("page-1").undo_s == 0, "the page shows the names now"
    assert len(store.list_votes(final_only=True)) == 1, "final once the window closed, revealed or not"
    with pytest.raises(VoteFinal):
        arena.undo(battle, "anon:page-1", session="page-1")
    assert arena.reveal(None, "anon:page-1", session="page-1").outcome == "model_a"

    arena = arena_of(store, stubs("left"), stubs("right"), undo_window_s=0)
    battle = played(arena, "page-3")
    ballot = arena.cast(battle, "model_b", "anon:page-3", session="page-3")
    assert ballot.undo_s == 0 and store.get_vote(battle).final()
    with pytest.raises(VoteFinal):
        arena.undo(battle, "anon:page-3", session="page-3")


def test_double_clicks_and_concurrent_undo_and_reveal_leave_exactly_one_vote(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    battle = played(arena)
    outcomes: list[str] = []

    def click(outcome: str) -> None:
        try:
            arena.cast(battle, outcome, "anon:page-1", session="page-1")
            outcomes.append(outcome)
        except (BattleClosed, VoteRejected):
            pass

    threads = [threading.Thread(target=click, args=(o,)) for o in ("model_a", "model_b", "tie") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 1 and store.get_vote(battle).outcome == outcomes[0]
    # undo and reveal at once: either the vote stands (revealed) or it is gone (undone), never both
    results: dict[str, object] = {}

    def act(name, fn):
        try:
            results[name] = fn()
        except (UndoRejected, NoBattle) as exc:
            results[name] = exc

    pair = [threading.Thread(target=act, args=("undo", lambda: arena.undo(battle, "anon:page-1", "page-1"))),
            threading.Thread(target=act, args=("reveal", lambda: arena.reveal(battle, "anon:page-1", "page-1")))]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    vote = store.get_vote(battle)
    if isinstance(results["undo"], Exception):
        assert vote is not None and vote.final() and not isinstance(results["reveal"], Exception)
    else:
        assert vote is None and isinstance(results["reveal"], Exception)
        assert store.get_battle(battle).status == "ready"
    assert len(store.execute("SELECT * FROM votes WHERE battle_id = ?", [battle])) <= 1


def test_a_vote_that_may_still_be_undone_reaches_no_round(store, stubs, tmp_path):
    arena = arena_of(store, stubs("A finished answer."), stubs("Another finished answer."))
    harvester = Harvester(store, tmp_path / "rounds")
    battle = played(arena)
    arena.cast(battle, "model_a", "anon:page-1", session="page-1")
    assert harvester.browse() == [] and harvester.preview().harvest.used_vote_ids == []
    arena.undo(battle, "anon:page-1", session="page-1")
    ballot = arena.cast(battle, "model_b", "anon:page-1", session="page-1")
    arena.reveal(battle, "anon:page-1", session="page-1")
    (row,) = harvester.browse()
    assert (row.battle.vote_id, row.battle.outcome) == (ballot.vote_id, "model_b")


# -- repair --------------------------------------------------------------------------------------

def test_a_repair_is_kept_with_its_vote_who_when_and_the_original(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"))
    battle = played(arena)
    ballot = arena.cast(battle, "model_a", "anon:page-1", session="page-1")
    record = store.get_battle(battle)
    winner = record.conversation_a[-1]["content"]
    assert ballot.preferred == winner, "the box starts from the preferred answer"
    repaired = arena.repair(battle, "anon:page-1", "  A better answer: keep it cool and dry.  ")
    assert repaired.repair == "A better answer: keep it cool and dry." and repaired.original == winner
    vote = store.get_vote(battle)
    assert (vote.repair, vote.repair_original, vote.repaired_by) == (repaired.repair, winner, "anon:page-1")
    assert vote.repaired_at is not None
    arena.repair(battle, "anon:page-1", "Second thoughts.")
    assert store.get_vote(battle).repair == "Second thoughts.", "a later repair replaces an earlier one"
    arena.undo(battle, "anon:page-1", session="page-1")
    with pytest.raises(RepairRejected, match="vote first"):
        arena.repair(battle, "anon:page-1", "After the undo")
    arena.cast(battle, "both_bad", "anon:page-1", session="page-1")
    both = arena.repair(battle, "anon:page-1", "Neither said: rice keeps a year in an airtight jar.")
    assert both.original is None and store.get_vote(battle).repair_original is None


@pytest.mark.parametrize("text, error, says", [
    ("", RepairRejected, "empty repair"),
    ("   \n ", RepairRejected, "empty repair"),
    ("x" * 61, RepairRejected, "61 characters; the limit is 60"),
])
def test_an_empty_or_overlong_repair_is_refused_and_nothing_kept(store, stubs, text, error, says):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"), max_repair_chars=60)
    battle = played(arena)
    arena.cast(battle, "model_b", "anon:page-1", session="page-1")
    with pytest.raises(error, match=says):
        arena.repair(battle, "anon:page-1", text)
    assert store.get_vote(battle).repair is None
    assert arena.repair(battle, "anon:page-1", "x" * 60).repair == "x" * 60


def test_a_repair_of_someone_elses_vote_no_vote_or_after_the_window_is_refused(store, stubs):
    arena = arena_of(store, stubs("left answer"), stubs("right answer"), repair_window_s=0.3)
    battle = played(arena)
    with pytest.raises(RepairRejected, match="vote first"):
        arena.repair(battle, "anon:page-1", "Before any vote")
    with pytest.raises(RepairRejected, match="vote first"):
        arena.repair(None, "anon:page-1", "No battle at all")
    arena.vote(battle, "model_a", "anon:page-1", session="page-1")
    with pytest.raises(NotYourVote, match="your own vote"):
        arena.repair(battle, "anon:page-2", "Mine now")
    time.sleep(0.4)
    with pytest.raises(RepairRejected, match="Too late"):
        arena.repair(battle, "anon:page-1", "Too late")
    assert store.get_vote(battle).repair is None


# -- the harvest's rules for repairs -----------------------------------------------------------

def conv(*texts: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def repaired(outcome: str, repair: str | None, a=("Q?", "answer A"), b=("Q?", "answer B"), **kw) -> VotedBattle:
    turns = len(a) // 2
    return VotedBattle(battle_id="b", vote_id="v", outcome=outcome, model_a="ma", model_b="mb",
                       conversation_a=conv(*a), conversation_b=conv(*b), finish_reasons_a=["stop"] * turns,
                       finish_reasons_b=["stop"] * turns, repair=repair, **kw)


def _pairs(result) -> list[tuple[str, str, str]]:
    return [(r.side, r.row["chosen"][0]["content"], r.row["rejected"][0]["content"]) for r in result.preference]


def test_a_decisive_repair_is_the_sft_target_and_beats_loser_then_winner():
    result = harvest([repaired("model_b", "better B")], HarvestRules())
    assert [r.row for r in result.sft] == [{"messages": conv("Q?", "better B")}]
    assert [r.side for r in result.sft] == ["repair"]
    assert _pairs(result) == [("repair>model_a", "better B", "answer A"), ("repair>model_b", "better B", "answer B")]
    assert result.preference[0].row["prompt"] == [{"role": "user", "content": "Q?"}]
    unchanged = harvest([repaired("model_b", " answer  B ")], HarvestRules())  # the same after whitespace
    assert _pairs(unchanged) == [("repair>model_a", "answer  B", "answer A")], "no pair of an answer with itself"


def test_both_bad_and_tie_with_a_repair_reject_both_answers():
    for outcome, rules in (("both_bad", HarvestRules()), ("tie", HarvestRules()), ("tie", HarvestRules(ties="both"))):
        result = harvest([repaired(outcome, "the right answer")], rules)
        assert [r.row["messages"][-1]["content"] for r in result.sft] == ["the right answer"], (outcome, rules)
        assert _pairs(result) == [("repair>model_a", "the right answer", "answer A"),
                                  ("repair>model_b", "the right answer", "answer B")]
    assert harvest([repaired("both_bad", None)], HarvestRules()).excluded == {"b": "both bad"}
    assert harvest([repaired("tie", None)], HarvestRules()).excluded == {"b": "tie"}


def test_multi_turn_repairs_and_the_usual_exclusions():
    multi = dict(a=("Q1", "A1", "Q2", "A2"), b=("Q1", "B1", "Q2", "B2"))
    decisive = harvest([repaired("model_a", "better A2", **multi)], HarvestRules())
    assert [r.row["messages"] for r in decisive.sft] == [conv("Q1", "A1", "Q2", "better A2")]
    assert decisive.preference == [], "each side saw its own history: no pair"
    assert harvest([repaired("both_bad", "x", **multi)], HarvestRules()).excluded == {
        "b": "repair without a shared conversation"}
    assert harvest([repaired("model_a", "x", identity_leak=True)], HarvestRules()).excluded == {"b": "identity leak"}
    assert harvest([repaired("model_a", "x", excluded="off-topic")], HarvestRules()).excluded == {
        "b": "excluded by hand"}


def test_a_round_trains_on_the_repair(store, stubs, tmp_path):
    arena = arena_of(store, stubs("Keep it dry."), stubs("Keep it cold."))
    battle = played(arena)
    arena.vote(battle, "model_a", "anon:page-1", session="page-1")
    arena.repair(battle, "anon:page-1", "Keep it dry, in an airtight jar.")
    record = Harvester(store, tmp_path / "rounds").build_round(HarvestRules(include_previous_rounds=False))
    sft = [json.loads(line) for line in record.sft_path.read_text().splitlines()]
    pairs = [json.loads(line) for line in record.preference_path.read_text().splitlines()]
    sources = [json.loads(line) for line in (record.sft_path.parent / "sources.jsonl").read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in sft] == ["Keep it dry, in an airtight jar."]
    battle_record = store.get_battle(battle)
    winner, loser = battle_record.conversation_a[-1]["content"], battle_record.conversation_b[-1]["content"]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("Keep it dry, in an airtight jar.", loser), ("Keep it dry, in an airtight jar.", winner)]
    assert [s["side"] for s in sources] == ["repair", "repair>model_b", "repair>model_a"]


# -- the repair as the Data tab shows it ----------------------------------------------------------

def test_a_safe_pane_stays_safe_after_gradio_copies_it_for_an_update():
    """The Data tab shows a repair with gr.update(visible=True, value=...): Gradio answers an
    update by building a fresh gr.Chatbot from the pane's constructor arguments, and keeps that
    copy for the session. The copy must still render through ui.render (it used not to: an
    image in a repair, or in any answer shown after a pane's label changed, reached the page)."""
    import gradio as gr

    from qwen3arena.ui.render import safe_chatbot

    chat = safe_chatbot(label="Repair", visible=False)
    copy = gr.Chatbot(**{**chat.constructor_args, "visible": True, "render": False})
    for pane in (chat, copy):
        shown = pane.postprocess([{"role": "assistant", "content": "Keep it **dry** <img src=x onerror=y()>"}])
        assert shown.root[0].content[0].text == "<p>Keep it <strong>dry</strong> &lt;img src=x onerror=y()&gt;</p>"
    plain = gr.Chatbot(render=False).postprocess([{"role": "assistant", "content": "**as is**"}])
    assert plain.root[0].content[0].text == "**as is**", "other chat boxes are left alone"


# -- the store's migration -------------------------------------------------------------------------

def test_votes_from_before_the_migration_are_final_and_unrepaired(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for version, sql in enumerate(MIGRATIONS[:7], start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
    con.execute("INSERT INTO votes (vote_id, battle_id, created_at, voter, outcome, model_a, model_b, turns, "
                "identity_leak) VALUES ('v1', 'b1', now() - INTERVAL 1 MINUTE, 'anon:x', 'model_a', 'm1', 'm2', 1, false)")
    con.close()
    store = Store(path)
    try:
        assert store.schema_version() == len(MIGRATIONS) >= 8
        (vote,) = store.list_votes(final_only=True)
        assert vote.final() and vote.final_at == vote.created_at and vote.repair is None
        with pytest.raises(VoteFinal):
            store.undo_vote("b1", "anon:x")
        assert store.undone_votes() == []
        store.save_battle(BattleRecord("b2", "anon:y", "m1", "m2", status="ready", turns=1))
        store.record_vote("b2", "tie", "anon:y", undo_window_s=60)
        assert [v.battle_id for v in store.list_votes(final_only=True)] == ["b1"]
        assert store.vote_counts() == {"m1": 1, "m2": 1}, "the sampler's boost counts final votes only"
    finally:
        store.close()
