"""Style-controlled Bradley-Terry: ratings with answer length and markdown regressed out.

Voters (and judges) prefer longer, more formatted answers; a fine-tune that only learned to
write more climbs the board. Chatbot Arena's style control fits one logistic regression over
battles in which each battle has, besides the +1/-1 model columns, one column per style
feature: the normalised difference between the two sides, (a - b) / (a + b), standardised
over the battles. The model coefficients are then ratings "at equal style", and each style
coefficient says how much the feature itself is worth.

Ties (and both_bad, as in the plain board) count half a win for each side. Intervals come
from resampling battles (bootstrap), like the plain board's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from qwen3arena.ratings.matrices import BOTH_BAD, MODEL_A, MODEL_B, TIE, VoteArrays

STYLE_FEATURES: tuple[str, ...] = ("length", "headers", "list items", "bold")
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
POINTS = 400 / math.log(10)  # natural-log strength -> rating points (base 10, scale 400)


def answer_style(conversation: Sequence[dict[str, Any]]) -> np.ndarray:
    """Characters, markdown headers, list items and bold spans over a side's answers."""
    text = "\n".join(str(m.get("content") or "") for m in conversation if m.get("role") == "assistant")
    return np.array([len(text), len(_HEADER.findall(text)), len(_LIST_ITEM.findall(text)),
                     len(_BOLD.findall(text))], dtype=float)


def style_difference(style_a: np.ndarray, style_b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) per feature, 0 where both sides have none: in [-1, 1] whatever the scale."""
    total = style_a + style_b
    return np.divide(style_a - style_b, total, out=np.zeros_like(total), where=total > 0)


@dataclass(frozen=True)
class StyleControlled:
    ratings: pd.DataFrame        # model, rating, lower, upper (mean rating 1000)
    coefficients: pd.DataFrame   # feature, points, lower, upper: rating points per standard deviation


def fit_style_controlled(votes: VoteArrays, differences: np.ndarray, *, rounds: int = 100, seed: int = 0,
                         l2: float = 1e-4, offset: float = 1000.0) -> StyleControlled:
    """votes[i] and differences[i] (n x features, from ``style_difference``) describe battle i."""
    a, b, outcome = votes.a, votes.b, votes.outcome
    diff = np.asarray(differences, dtype=float).reshape(len(a), -1)
    models = list(votes.models)
    n, m = len(a), len(models)
    if n == 0:
        empty = pd.DataFrame(columns=["model", "rating", "lower", "upper"])
        return StyleControlled(empty, pd.DataFrame(columns=["feature", "points", "lower", "upper"]))
    rows = np.arange(n)
    X = np.zeros((n, m + diff.shape[1]))
    X[rows, a] += 1.0
    X[rows, b] -= 1.0
    spread = diff.std(axis=0)
    X[:, m:] = np.divide(diff - diff.mean(axis=0), spread, out=np.zeros_like(diff), where=spread > 0)
    # P(a wins); ties and both_bad are half a win each way
    y = np.select([outcome == MODEL_A, outcome == MODEL_B, np.isin(outcome, (TIE, BOTH_BAD))], [1.0, 0.0, 0.5])

    def fit(weights: np.ndarray, start: np.ndarray) -> np.ndarray:
        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = X @ theta
            value = -(weights * (y * log_expit(z) + (1 - y) * log_expit(-z))).sum() + l2 / 2 * theta @ theta
            grad = -X.T @ (weights * (y - expit(z))) + l2 * theta
            return value, grad

        return minimize(loss, start, jac=True, method="L-BFGS-B").x

    theta = fit(np.ones(n), np.zeros(X.shape[1]))
    rng = np.random.default_rng(seed)
    draws = np.array([fit(rng.multinomial(n, np.full(n, 1 / n)).astype(float), theta) for _ in range(rounds)])
    rated = np.zeros(m, dtype=bool)
    rated[np.unique(np.concatenate([a, b]))] = True

    def to_points(strengths: np.ndarray) -> np.ndarray:
        centred = strengths - strengths[..., rated].mean(axis=-1, keepdims=True)
        return offset + POINTS * centred

    point = to_points(theta[:m])
    low, high = (np.percentile(to_points(draws[:, :m]), q, axis=0) if rounds else point for q in (2.5, 97.5))
    ratings = pd.DataFrame({"model": models, "rating": point, "lower": low, "upper": high})[rated]
    coef = POINTS * theta[m:]
    coef_low, coef_high = (np.percentile(POINTS * draws[:, m:], q, axis=0) if rounds else coef for q in (2.5, 97.5))
    names = list(STYLE_FEATURES[:diff.shape[1]]) + [f"feature {i}" for i in range(len(STYLE_FEATURES), diff.shape[1])]
    coefficients = pd.DataFrame({"feature": names, "points": coef, "lower": coef_low, "upper": coef_high})
    return StyleControlled(ratings.sort_values("rating", ascending=False).reset_index(drop=True), coefficients)
