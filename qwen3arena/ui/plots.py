"""Figures for the tabs, and panels that fail alone.

Figures are `matplotlib.figure.Figure` objects, never pyplot's: pyplot keeps every figure it
makes in one global registry until `plt.close`, so a figure whose builder raised half way stayed
there for good (the Scoreboard's 30-second refresh added one each time), and that registry is
state shared by Gradio's worker threads. A bare Figure is freed like any other object.

A tab event fills several components at once; one exception in its handler makes Gradio show
"Error" on every one of them. `panel` and `figure_panel` turn a failing part into a message in
its own place, so the rest of the tab still shows.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

import matplotlib
import numpy as np

matplotlib.use("Agg")  # the server only draws images; never a GUI backend (Gradio imports pyplot)
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure with one axes, outside pyplot's registry (see the module's docstring)."""
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def interval_errors(center, lower, upper) -> np.ndarray:
    """Error-bar lengths (2 x n: below, above) for intervals [lower, upper] around `center`.

    Intervals are asymmetric in general, and a collapsed one (all votes ties) can put its bound a
    rounding error on the wrong side of the point: matplotlib refuses any negative length, so
    lengths are clamped at 0. A missing bound (NaN, None) draws no whisker on that side."""
    center = np.asarray(center, dtype=float)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)  # None -> NaN
    below = np.nan_to_num(center - lower, nan=0.0, posinf=0.0, neginf=0.0)
    above = np.nan_to_num(upper - center, nan=0.0, posinf=0.0, neginf=0.0)
    return np.vstack([np.clip(below, 0.0, None), np.clip(above, 0.0, None)])


def message_figure(text: str, width: float = 7, height: float = 3.2) -> Figure:
    """A figure holding only a line of text (no data yet, or why a plot could not be drawn)."""
    fig, ax = new_figure(width, height)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def panel(what: str, build: Callable[[], T], fallback: T) -> tuple[T, str | None]:
    """`build()`, or `fallback` and a line saying that `what` failed: one failing part of a tab
    never takes the others of its event down. The traceback goes to the log."""
    try:
        return build(), None
    except Exception as exc:  # any failure of one panel stays in that panel
        log.exception("the %s failed", what)
        return fallback, f"⚠️ The {what} could not be shown ({type(exc).__name__}: {exc})."


def figure_panel(what: str, build: Callable[[], Figure]) -> Figure | None:
    """A figure drawn here, or a figure that says why it could not be: the figure is laid out
    now, so a drawing error surfaces in this panel and not later in Gradio's conversion of the
    event's outputs (which would fail all of them)."""

    def drawn() -> Figure:
        fig = build()
        fig.draw_without_rendering()
        return fig

    fig, problem = panel(f"{what} plot", drawn, None)
    if problem is None:
        return fig
    try:
        return message_figure(problem)
    except Exception:  # matplotlib itself is broken: an empty plot rather than a failed tab
        log.exception("cannot draw even a message figure")
        return None
