"""The Scoreboard's and the Data tab's plots: asymmetric and collapsed intervals are drawn, a
failing panel fails alone with a message, and no figure is left behind (issue 18, items 2, 10)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import gradio as gr
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from qwen3arena.harvest import LineageEntry
from qwen3arena.scoreboard import build_scoreboard
from qwen3arena.store import BattleRecord, Store
from qwen3arena.ui import data_tab, scoreboard_tab
from qwen3arena.ui.plots import interval_errors


def _store(tmp_path, n: int = 60) -> Store:
    store = Store(tmp_path / "db.duckdb")
    rng = random.Random(1)
    for i in range(n):
        a, b = rng.sample(["x", "y", "z"], 2)
        store.save_battle(BattleRecord(f"b{i}", "anon:1", a, b, status="ready", turns=1))
        store.record_vote(f"b{i}", rng.choice(["model_a", "model_b", "tie"]), "anon:1")
    return store


def _collapsed(board):
    """The board as stub contestants that always tie leave it: each bound a rounding error on
    the wrong side of the rating (a negative error bar before the fix)."""
    intervals = board.intervals.copy()
    intervals["lower"] = intervals["rating"] + 1e-9
    intervals["upper"] = intervals["rating"] - 1e-9
    board.intervals = intervals
    return board


def _bars(fig: Figure, axis: int) -> list[tuple[float, float]]:
    """(start, end) of every error bar drawn along `axis` (0: x, 1: y)."""
    (ax,) = fig.axes
    spans = []
    for container in ax.containers:
        for collection in container.lines[2]:
            for segment in collection.get_segments():
                spans.append((float(segment[:, axis].min()), float(segment[:, axis].max())))
    return spans


def test_interval_errors_are_asymmetric_and_never_negative():
    errors = interval_errors([10.0, 5.0, 7.0], [8.0, 5.0 + 1e-12, None], [15.0, 5.0 - 1e-12, 9.0])
    assert errors.tolist() == [[2.0, 0.0, 0.0], [5.0, 0.0, 2.0]]


def test_the_scoreboard_plot_draws_asymmetric_and_collapsed_intervals(tmp_path):
    board = build_scoreboard(_store(tmp_path))
    asymmetric = board.intervals.copy()
    asymmetric["lower"] = asymmetric["rating"] - 30.0
    asymmetric["upper"] = asymmetric["rating"] + 5.0
    board.intervals = asymmetric
    spans = sorted(_bars(scoreboard_tab._interval_plot(board), 0))
    assert spans == pytest.approx(sorted(zip(asymmetric["lower"], asymmetric["upper"])))
    fig = scoreboard_tab._interval_plot(_collapsed(board))  # ValueError: 'xerr' must not contain negative values
    assert all(end - start == pytest.approx(0.0, abs=1e-6) for start, end in _bars(fig, 0))


def test_the_lineage_plot_draws_asymmetric_and_collapsed_intervals():
    def entry(name, rating, lower, upper, parent=None, round=1):
        return LineageEntry(round, name, parent, "sft", None, None, None, rating, lower, upper, 10)

    entries = [entry("base", 1000.0, 1000.0 + 1e-9, 1000.0 - 1e-9, round=0),
               entry("r1", 1010.0, 990.0, 1012.0, parent="base"), entry("r1b", 1005.0, None, None)]
    spans = sorted(_bars(data_tab._lineage_plot(entries), 1))
    assert spans[0] == pytest.approx((990.0, 1012.0))
    assert all(end - start < 1e-6 for start, end in spans[1:])  # the collapsed and the unknown one


def _handler(demo: gr.Blocks, name: str):
    return next(f for f in demo.fns.values() if f.fn is not None and f.fn.__name__ == name)


def test_a_failing_scoreboard_panel_fails_alone_and_leaves_no_figure(tmp_path, monkeypatch):
    board = build_scoreboard(_store(tmp_path))
    actions = SimpleNamespace(runtime=None, scoreboard=lambda filters, category: board,
                              export_scoreboard=lambda filters, category, b: SimpleNamespace(path=None))
    with gr.Blocks() as demo:
        scoreboard_tab.build_scoreboard_tab(actions)
    load = _handler(demo, "load")
    data = {component: getattr(component, "value", None) for component in load.inputs}

    def broken(*args, **kwargs):
        raise RuntimeError("the win-rate matrix broke")

    monkeypatch.setattr(scoreboard_tab, "_matrix_plot", broken)
    plt.close("all")
    note, table, csv, ratings, wins, counts, agreement = load.fn(data)
    assert "votes rated" in note and not table.empty and "agreement" in agreement
    assert isinstance(ratings, Figure) and "could not" not in " ".join(t.get_text() for t in ratings.axes[0].texts)
    for failed in (wins, counts):  # in their own place, saying why
        assert "the win-rate matrix broke" in " ".join(t.get_text() for t in failed.axes[0].texts)
    assert plt.get_fignums() == []  # nothing left in pyplot's registry for good


def test_a_failing_lineage_plot_leaves_the_rest_of_the_data_tab(monkeypatch):
    entries = [LineageEntry(1, "r1", None, "sft", None, None, None, 1000.0, 990.0, 1010.0, 5)]
    monkeypatch.setattr(data_tab, "_lineage_plot", lambda e: (_ for _ in ()).throw(RuntimeError("lineage broke")))
    figure, table = data_tab.lineage_panels(entries)
    assert "lineage broke" in " ".join(t.get_text() for t in figure.axes[0].texts)
    assert isinstance(table, pd.DataFrame) and list(table["checkpoint"]) == ["r1"]
