"""The scoreboard: agreement statistics, filters, a real judge run on the local vLLM server,
and the tab through the API and in a browser."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import pandas as pd
import pytest
from gradio_client import Client

from qwen3arena.config import JudgeSettings
from qwen3arena.judge import JudgeStore
from qwen3arena.judge.runs import judge_voted_battles
from qwen3arena.scoreboard import BoardFilters, _kappa, agreement, build_scoreboard
from qwen3arena.store import BattleRecord, Store

from conftest import seed_unfinished_votes


def test_cohens_kappa_on_a_hand_made_case():
    pairs = [("model_a", "model_a"), ("model_b", "model_b"), ("tie", "model_a"), ("model_a", "model_a")]
    result = _kappa(pairs)
    assert result["agreement"] == pytest.approx(0.75)
    # expected agreement .5*.75 + .25*.25 + .25*0 = .4375 -> (0.75 - .4375) / (1 - .4375)
    assert result["kappa"] == pytest.approx((0.75 - 0.4375) / 0.5625)


def test_agreement_uses_only_battles_with_both_and_counts_both_bad_as_tie():
    class J:
        def __init__(self, battle_id, outcome):
            self.battle_id, self.outcome = battle_id, outcome

    human = pd.DataFrame([
        {"battle_id": "b1", "model_a": "x", "model_b": "y", "outcome": "both_bad"},
        {"battle_id": "b2", "model_a": "x", "model_b": "z", "outcome": "model_a"},
        {"battle_id": "b3", "model_a": "y", "model_b": "z", "outcome": "model_b"},
    ])
    result = agreement(human, [J("b1", "tie"), J("b2", "model_b"), J("b9", "model_a")])
    assert result["battles"] == 2 and result["agreement"] == 0.5
    assert result["per_model"]["x"]["battles"] == 2 and result["per_model"]["z"]["agreement"] == 0.0


def _store_with_votes(tmp_path, n=300) -> Store:
    store = Store(tmp_path / "db.duckdb")
    rng = random.Random(0)
    strength = {"strong": 0.8, "middle": 0.5, "weak": 0.2}
    for i in range(n):
        a, b = rng.sample(sorted(strength), 2)
        store.save_battle(BattleRecord(f"b{i}", f"anon:{i % 3}", a, b, status="ready", turns=1,
                                       identity_leak=(i % 50 == 0), campaign_id="c1" if i < 40 else None))
        p = strength[a] / (strength[a] + strength[b])
        outcome = rng.choices(["model_a", "model_b", "tie"], [p * 0.9, (1 - p) * 0.9, 0.1])[0]
        store.record_vote(f"b{i}", outcome, f"anon:{i % 3}")
    return store


def test_the_board_orders_models_and_applies_filters(tmp_path):
    store = _store_with_votes(tmp_path)
    board = build_scoreboard(store)
    assert list(board.table["model"]) == ["strong", "middle", "weak"]
    assert board.n_votes == 300 - 6  # identity leaks left out
    assert "6 of 300 votes left out" in board.notes[0]
    assert board.win_rates.loc["strong", "weak"] > 0.6
    assert board.battle_counts.loc["strong", "weak"] > 50
    one_voter = build_scoreboard(store, BoardFilters(voter="anon:1"))
    assert one_voter.n_votes < 110
    assert build_scoreboard(store, BoardFilters(since=date.today() + timedelta(days=1))).table.empty
    assert build_scoreboard(store, BoardFilters(min_votes=10_000)).table.empty
    no_ties = build_scoreboard(store, BoardFilters(include_ties=False))
    assert no_ties.n_votes < board.n_votes
    campaign = build_scoreboard(store, BoardFilters(campaign="c1", exclude_identity_leaks=False))
    assert campaign.n_votes == 40
    some = build_scoreboard(store, BoardFilters(battle_ids=frozenset({"b1", "b2", "b3"}), exclude_identity_leaks=False))
    assert some.n_votes == 3 and set(some.table["votes"]) <= {1, 2, 3}


def test_the_board_says_how_its_intervals_were_computed(tmp_path):
    from qwen3arena.api import typed
    from qwen3arena.config import ConfigError

    store = _store_with_votes(tmp_path)
    default = build_scoreboard(store)
    assert default.notes[0].startswith("6 of 300 votes left out")
    assert "95% intervals: closed form (sandwich" in default.notes[1]
    boot = build_scoreboard(store, BoardFilters(intervals="bootstrap", bootstrap_rounds=50))
    assert "percentile bootstrap, 50 rounds" in boot.notes[1]
    assert boot.intervals["rating"].equals(default.intervals["rating"])  # same fit, other bounds
    assert not boot.intervals["lower"].equals(default.intervals["lower"])
    weighted = build_scoreboard(store, BoardFilters(reweight_pairs=True))
    assert "inverse pair frequency" in weighted.notes[1] and "inverse pair" not in default.notes[1]
    assert not weighted.intervals["rating"].equals(default.intervals["rating"])
    # the options cross the API as typed fields; a method that does not exist is refused
    assert typed(BoardFilters, {"intervals": "bootstrap", "reweight_pairs": True}) == BoardFilters(
        intervals="bootstrap", reweight_pairs=True)
    with pytest.raises(ConfigError, match="intervals"):
        typed(BoardFilters, {"intervals": "jackknife"})


def test_an_empty_store_gives_an_empty_board_with_a_hint(tmp_path):
    board = build_scoreboard(Store(tmp_path / "db.duckdb"))
    assert board.table.empty and "No votes yet" in board.notes[-1]


def test_a_real_judge_run_on_the_local_model_records_unparseable_replies(runtime, tmp_path):
    from qwen3arena.arena import Arena
    from qwen3arena.config import ArenaSettings

    store = Store(tmp_path / "db.duckdb")  # only this test's battles
    arena = Arena(store, runtime.pool, ArenaSettings())
    for prompt in ("Can I freeze bread?", "How do I cook bacon?"):
        battle = arena.start_battle("anon:judge-test")
        list(arena.play_turn(battle, prompt))
        arena.vote(battle, "model_a", "anon:judge-test")
    settings = JudgeSettings(base_url=runtime.server.base_url, model="tiny-qwen3-base", api_key_env=None,
                             max_tokens=48, max_retries=1, concurrency=2)
    lines = list(judge_voted_battles(store, settings, limit=10))
    assert lines[-1].startswith("Done:") and "of 2 battles" in lines[-1]
    judged = JudgeStore(store).list_judgements(judge_model="tiny-qwen3-base")
    assert len(judged) == 2
    games = [g for j in judged for g in j.games]
    assert len(games) == 4
    # the tiny model rarely writes a verdict tag: such games are errors, never ties
    for game in games:
        assert (game.verdict is None) == (game.error is not None)
    assert all(j.outcome is None for j in judged if all(g.verdict is None for g in j.games))
    # a second run pays for nothing: every battle is already judged
    assert list(judge_voted_battles(store, settings, limit=10)) == ["Every voted battle is already judged."]
    board = build_scoreboard(store)
    assert not board.table.empty
    store.close()


def test_style_control_takes_away_a_lead_won_by_length(tmp_path):
    """"wordy" and "terse" are equally good; voters pick the longer answer 80% of the time and
    wordy's answers are about twice as long (but not always the longer one)."""
    store = Store(tmp_path / "db.duckdb")
    rng = random.Random(1)
    for i in range(400):
        a, b = rng.sample(["terse", "wordy"], 2)
        sizes = {m: int(rng.lognormvariate(6.0 if m == "wordy" else 5.3, 0.6)) for m in (a, b)}
        conversation = lambda m: [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x" * sizes[m]}]  # noqa: E731
        store.save_battle(BattleRecord(f"s{i}", "anon:1", a, b, status="ready", turns=1,
                                       conversation_a=conversation(a), conversation_b=conversation(b)))
        longer_a = sizes[a] > sizes[b]
        store.record_vote(f"s{i}", "model_a" if longer_a == (rng.random() < 0.8) else "model_b", "anon:1")
    plain = build_scoreboard(store, BoardFilters(bootstrap_rounds=20))
    assert "style-controlled" not in plain.table.columns and plain.style is None
    board = build_scoreboard(store, BoardFilters(bootstrap_rounds=20, style_control=True))
    rows = board.table.set_index("model")
    plain_gap = rows.loc["wordy", "rating"] - rows.loc["terse", "rating"]
    styled_gap = rows.loc["wordy", "style-controlled"] - rows.loc["terse", "style-controlled"]
    assert plain_gap > 60 and abs(styled_gap) < plain_gap / 3, (plain_gap, styled_gap)
    assert rows.loc["wordy", "style 95% CI"].startswith("+")
    note = next(n for n in board.notes if n.startswith("Style control"))
    assert "length +" in note and "headers" not in note  # no markdown anywhere: not listed


def test_style_control_with_few_votes_says_so_instead(tmp_path):
    board = build_scoreboard(_store_with_votes(tmp_path, n=12), BoardFilters(style_control=True))
    assert board.style is None and "style-controlled" not in board.table.columns
    assert any("needs at least 30 votes (11 so far)" in n for n in board.notes), board.notes


def test_the_scoreboard_through_the_api(app_url, runtime):
    battle = runtime.arena.start_battle("anon:api-board")
    list(runtime.arena.play_turn(battle, "How should I store eggs?"))
    runtime.arena.vote(battle, "tie", "anon:api-board")
    other = runtime.arena.start_battle("anon:api-board")
    list(runtime.arena.play_turn(other, "Can I freeze apples?"))  # category "freezer"
    runtime.arena.vote(other, "model_a", "anon:api-board")
    client = Client(app_url, verbose=False)
    answer = client.predict({"filters": {}}, api_name="/scoreboard")  # the typed API: filters by name
    assert answer["ok"], answer
    result = answer["result"]
    models = [row[result["columns"].index("model")] for row in result["rows"]]
    assert {"tiny-qwen3-base", "tiny-qwen3-concise", "tiny-qwen3-chatty"} & set(models)
    with open(result["csv"]) as f:
        assert f.readline().startswith("rank,model,rating")
    storage = client.predict({"category": "storage"}, api_name="/scoreboard")["result"]
    from qwen3arena.harvest import BattleFilters as HarvestFilters

    rows = runtime.harvester.browse(HarvestFilters(category="storage"))  # the eggs battle among them
    expected = sum(1 for r in rows if not r.battle.identity_leak)
    assert expected >= 1 and storage["votes"] == expected, storage
    assert result["votes"] > expected  # the freezer vote counts only without the filter
    seed_unfinished_votes(runtime.store, "tiny-qwen3-base", "tiny-qwen3-concise", "api-style")  # style needs 30
    styled = client.predict({"filters": {"style_control": True}}, api_name="/scoreboard")["result"]
    assert "style-controlled" in styled["columns"] and any("Style control" in n for n in styled["notes"])
    bad = client.predict({"filters": {"since": "last tuesday"}}, api_name="/scoreboard")
    assert not bad["ok"] and bad["error"]["kind"] == "ConfigError"
    assert "is not a date like 2026-11-27" in bad["error"]["message"]
