"""Style-controlled Bradley-Terry: ratings with answer length and markdown regressed out.

Voters (and judges) prefer longer, more formatted answers; a fine-tune that only learned to
write more climbs the board. Chatbot Arena's style control fits one logistic regression over
battles in which each battle has, besides the +1/-1 model columns, one column per style
feature: the normalised difference between the two sides, (a - b) / (a + b), standardised
over the battles. The model coefficients are then ratings "at equal style", and each style
coefficient says how much the feature itself is worth.

Ties (and both_bad, as in the plain board) count half a win for each side. Intervals are
Wald intervals from the Fisher information (see ``fit_style_controlled`` for why).
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


def fit_style_controlled(votes: VoteArrays, differences: np.ndarray, *, l2: float = 1e-4,
                         offset: float = 1000.0) -> StyleControlled:
    """votes[i] and differences[i] (n x features, from ``style_difference``) describe battle i.

    Intervals are Wald intervals from the fit's Fisher information (one matrix of a few
    numbers squared), not a bootstrap: features are continuous, so battles cannot be
    aggregated into counts, and refitting a bootstrap cost 6 s per 20 rounds at 100k votes."""
    a, b, outcome = votes.a, votes.b, votes.outcome
    diff = np.asarray(differences, dtype=float).reshape(len(a), -1)
    models = list(votes.models)
    n, m = len(a), len(models)
    names = list(STYLE_FEATURES[:diff.shape[1]]) + [f"feature {i}" for i in range(len(STYLE_FEATURES), diff.shape[1])]
    if n == 0:
        return StyleControlled(pd.DataFrame(columns=["model", "rating", "lower", "upper"]),
                               pd.DataFrame(columns=["feature", "points", "lower", "upper"]))
    rows = np.arange(n)
    X = np.zeros((n, m + diff.shape[1]))
    X[rows, a] += 1.0
    X[rows, b] -= 1.0
    spread = diff.std(axis=0)
    X[:, m:] = np.divide(diff - diff.mean(axis=0), spread, out=np.zeros_like(diff), where=spread > 0)
    # P(a wins); ties and both_bad are half a win each way
    y = np.select([outcome == MODEL_A, outcome == MODEL_B, np.isin(outcome, (TIE, BOTH_BAD))], [1.0, 0.0, 0.5])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ theta
        value = -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() + l2 / 2 * theta @ theta
        return value, -X.T @ (y - expit(z)) + l2 * theta

    theta = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B").x
    p = expit(X @ theta)
    covariance = np.linalg.pinv(X.T @ (X * (p * (1 - p))[:, None]) + l2 * np.eye(X.shape[1]))

    rated = np.zeros(m, dtype=bool)
    rated[np.unique(np.concatenate([a, b]))] = True
    centre = np.eye(m) - np.outer(np.ones(m), rated / rated.sum())  # rating minus the rated models' mean
    strengths = centre @ theta[:m]
    strength_se = np.sqrt(np.clip(np.diag(centre @ covariance[:m, :m] @ centre.T), 0, None))
    coef_se = np.where(spread > 0, np.sqrt(np.clip(np.diag(covariance[m:, m:]), 0, None)), 0.0)  # unvaried: 0
    half = 1.959964  # 95%
    rating = offset + POINTS * strengths
    ratings = pd.DataFrame({"model": models, "rating": rating, "lower": rating - half * POINTS * strength_se,
                            "upper": rating + half * POINTS * strength_se})[rated]
    coef = POINTS * theta[m:]
    coefficients = pd.DataFrame({"feature": names, "points": coef, "lower": coef - half * POINTS * coef_se,
                                 "upper": coef + half * POINTS * coef_se})
    return StyleControlled(ratings.sort_values("rating", ascending=False).reset_index(drop=True), coefficients)
