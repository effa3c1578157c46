"""The scoreboard: human ratings, judge ratings and benchmark scores side by side.

It reads the store and hands plain data to the pure rating functions; the three sources stay
in separate columns (never blended), as on Chatbot Arena's full leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from qwen3arena.campaigns.store import CampaignStore
from qwen3arena.evals.store import latest_primary_scores
from qwen3arena.judge import JudgeStore
from qwen3arena.ratings import (MIN_PAIR_VOTES, RatingDifference, VoteArrays, battle_count_matrix, cohen_kappa,
                                online_elo, rate, rating_difference, votes_to_arrays, win_rate_matrix)
from qwen3arena.ratings.agreement import AgreementReport
from qwen3arena.ratings.agreement import agreement as labeller_agreement
from qwen3arena.ratings.style import StyleControlled, answer_style, fit_style_controlled, style_difference
from qwen3arena.store import Store

MIN_STYLE_VOTES = 30  # below this the style fit is mostly noise (intervals of thousands of points)
TABLE_COLUMNS = ["rank", "model", "rating", "95% CI", "votes", "win rate", "elo", "judge rating", "judge pairs"]


@dataclass(frozen=True)
class BoardFilters:
    min_votes: int = 0
    include_ties: bool = True
    both_bad_as_tie: bool = True
    exclude_identity_leaks: bool = True
    voter: str | None = None
    since: date | None = None
    until: date | None = None
    campaign: str | None = None                 # a labelling campaign's votes only
    battle_ids: frozenset[str] | None = None    # only these battles (e.g. one prompt category)
    # sandwich: closed-form (CLT) intervals, as LMArena since 2025-07; bootstrap: percentile
    # intervals of bootstrap_rounds refits (slower, kept to compare)
    intervals: Literal["sandwich", "bootstrap"] = "sandwich"
    bootstrap_rounds: int = 200
    # each vote weighs 1 / (votes of its pair): over-sampled pairs (target pairs) do not dominate
    reweight_pairs: bool = False
    style_control: bool = False                 # add ratings with answer length and markdown regressed out
    # a rubric criterion's board (issue 15 §2): ratings from that criterion's verdicts given with
    # campaign votes, instead of the votes' outcomes; None: the overall board
    criterion: str | None = None


@dataclass
class Scoreboard:
    table: pd.DataFrame
    intervals: pd.DataFrame          # model, rating, lower, upper (for the plot)
    win_rates: pd.DataFrame
    battle_counts: pd.DataFrame
    agreement: dict[str, Any]
    n_votes: int
    notes: list[str] = field(default_factory=list)
    style: StyleControlled | None = None
    rated_votes: VoteArrays | None = None  # the votes the ratings were fitted on
    both_bad_as_tie: bool = True
    criterion: str | None = None           # the rubric criterion this board rates (None: overall)
    labeller_agreement: AgreementReport | None = None  # a criterion board: labellers' agreement on it

    def difference(self, a: str, b: str) -> RatingDifference | None:
        """rating(a) - rating(b) with its interval, from the same votes as the board."""
        if self.rated_votes is None or not len(self.rated_votes):
            return None
        return rating_difference(self.rated_votes, a, b, both_bad_as_tie=self.both_bad_as_tie)


def vote_frame(store: Store, filters: BoardFilters) -> pd.DataFrame:
    """Votes as a DataFrame (fast path for the ratings), filtered by voter and date."""
    since = datetime.combine(filters.since, datetime.min.time(), timezone.utc) if filters.since else None
    before = (datetime.combine(filters.until + timedelta(days=1), datetime.min.time(), timezone.utc)
              if filters.until else None)
    rows = [(v.battle_id, v.model_a, v.model_b, v.outcome, v.identity_leak, v.voter, v.created_at)
            for v in store.list_votes(filters.voter or None, since, before, filters.campaign or None,
                                      final_only=True)]  # a vote that may still be undone counts later
    if filters.criterion:  # a criterion's board: its verdicts stand in for the votes' outcomes
        rows = CampaignStore(store).criterion_votes(filters.criterion, filters.voter or None, since, before,
                                                    filters.campaign or None)
    frame = pd.DataFrame(rows, columns=["battle_id", "model_a", "model_b", "outcome", "identity_leak",
                                        "voter", "created_at"])
    if filters.battle_ids is not None:
        frame = frame[frame["battle_id"].isin(filters.battle_ids)]
    return frame


def agreement(human: pd.DataFrame, judged: Iterable[Any]) -> dict[str, Any]:
    """Percent agreement and Cohen's kappa between human votes and judge verdicts, on battles
    that have both; both_bad counts as a tie. Overall and per model."""
    verdicts = {j.battle_id: j.outcome for j in judged if getattr(j, "battle_id", None) and j.outcome}
    pairs = []
    for row in human.itertuples():
        if row.battle_id in verdicts:
            h = "tie" if row.outcome == "both_bad" else row.outcome
            pairs.append((row.model_a, row.model_b, h, verdicts[row.battle_id]))
    result: dict[str, Any] = {"battles": len(pairs), **_kappa([(h, j) for _, _, h, j in pairs])}
    models = sorted({m for a, b, _, _ in pairs for m in (a, b)})
    result["per_model"] = {m: {"battles": len(sub), **_kappa(sub)} for m in models
                           for sub in [[(h, j) for a, b, h, j in pairs if m in (a, b)]]}
    return result


def _kappa(pairs: list[tuple[str, str]]) -> dict[str, float | None]:
    """Percent agreement and Cohen's kappa of (human, judge) outcome pairs."""
    if not pairs:
        return {"agreement": None, "kappa": None}
    human, judge = zip(*pairs)
    return {"agreement": sum(h == j for h, j in pairs) / len(pairs), "kappa": cohen_kappa(human, judge)}


def build_scoreboard(store: Store, filters: BoardFilters = BoardFilters()) -> Scoreboard:
    notes: list[str] = []
    votes = vote_frame(store, filters)
    human_votes = votes
    if filters.exclude_identity_leaks:
        human_votes = human_votes[~human_votes["identity_leak"].astype(bool)]
    if not filters.include_ties:
        human_votes = human_votes[human_votes["outcome"].isin(["model_a", "model_b"])]
    rated = rate(votes_to_arrays(human_votes), exclude_identity_leak=False,
                 both_bad_as_tie=filters.both_bad_as_tie, intervals=filters.intervals,
                 rounds=filters.bootstrap_rounds, reweight=filters.reweight_pairs)
    table = rated.to_frame()
    if len(votes) and len(human_votes) < len(votes):
        notes.append(f"{len(votes) - len(human_votes)} of {len(votes)} votes left out by the filters "
                     "(identity leaks, ties).")
    if len(table):
        notes.append(interval_note(filters))
    # the judge and the benchmarks rate answers overall: a criterion's board has only its verdicts
    judged = [] if filters.criterion else JudgeStore(store).list_judgements()
    judge_votes = [j for j in judged if j.outcome is not None for _ in range(j.weight)]
    judge_table = rate(votes_to_arrays(judge_votes), intervals="none").to_frame() if judge_votes else None
    elo = online_elo(votes_to_arrays(human_votes)) if len(human_votes) else pd.Series(dtype=float)

    style = None
    if filters.style_control and len(human_votes) < MIN_STYLE_VOTES:
        notes.append(f"Style control needs at least {MIN_STYLE_VOTES} votes ({len(human_votes)} so far): with "
                     "fewer, length and the models cannot be told apart.")
    elif filters.style_control:
        style = style_controlled(store, human_votes)
        notes.append(style_note(style))
    styled = style.ratings.set_index("model") if style is not None else None

    rows = []
    for r in table.itertuples():
        if r.votes < filters.min_votes:
            continue
        judge_row = judge_table[judge_table["model"] == r.model] if judge_table is not None else None
        rows.append({
            "rank": int(r.rank), "model": r.model, "rating": round(r.rating, 1),
            "95% CI": f"+{r.upper - r.rating:.0f} / -{r.rating - r.lower:.0f}" if np.isfinite(r.lower) else "",
            "votes": int(r.votes), "win rate": round(r.win_rate, 3) if np.isfinite(r.win_rate) else None,
            "elo": round(float(elo.get(r.model, np.nan)), 1),
            "judge rating": round(float(judge_row["rating"].iloc[0]), 1) if judge_row is not None and len(judge_row) else None,
            "judge pairs": int(judge_row["votes"].iloc[0]) if judge_row is not None and len(judge_row) else 0,
        })
        if styled is not None and r.model in styled.index:
            s_row = styled.loc[r.model]
            rows[-1]["style-controlled"] = round(float(s_row["rating"]), 1)
            rows[-1]["style 95% CI"] = (f"+{s_row['upper'] - s_row['rating']:.0f} / "
                                        f"-{s_row['rating'] - s_row['lower']:.0f}")
    columns = TABLE_COLUMNS + (["style-controlled", "style 95% CI"] if styled is not None else [])
    frame = pd.DataFrame(rows, columns=columns)
    # models that only have judge or benchmark scores still get a row
    for score in ([] if filters.criterion else latest_primary_scores(store)):
        column = f"{score.dataset} ({score.metric})"
        if score.model not in set(frame["model"]):
            frame = pd.concat([frame, pd.DataFrame([{"model": score.model, "votes": 0}])], ignore_index=True)
        frame.loc[frame["model"] == score.model, column] = round(score.score, 4)
    if judge_table is not None:
        for r in judge_table.itertuples():
            if r.model not in set(frame["model"]):
                frame = pd.concat([frame, pd.DataFrame([{"model": r.model, "votes": 0,
                                                         "judge rating": round(r.rating, 1),
                                                         "judge pairs": int(r.votes)}])], ignore_index=True)
    labellers = None
    if filters.criterion:
        notes.insert(0, f"Board of the criterion '{filters.criterion}': Bradley-Terry ratings from the labellers' "
                        f"{filters.criterion} verdicts (A / B / tie) given with campaign votes. The overall ratings "
                        "come from the votes alone; verdicts never change them.")
        judged_by = CampaignStore(store).criterion_judgements(filters.campaign or None, filters.criterion)
        labellers = labeller_agreement(judged_by.get(filters.criterion, {}))
    if not len(votes):
        notes.append(f"No '{filters.criterion}' verdicts yet." if filters.criterion
                     else "No votes yet: play a few battles in the Arena tab.")
    shown = set(frame["model"])
    arrays = votes_to_arrays(human_votes)
    return Scoreboard(
        table=frame.sort_values(["rank", "rating"], ascending=[True, False], na_position="last").reset_index(drop=True),
        intervals=table[table["model"].isin(shown)][["model", "rating", "lower", "upper"]],
        win_rates=win_rate_matrix(arrays) if len(human_votes) else pd.DataFrame(),
        battle_counts=battle_count_matrix(arrays) if len(human_votes) else pd.DataFrame(),
        agreement=agreement(votes, judged),
        n_votes=len(human_votes),
        notes=notes,
        style=style,
        rated_votes=arrays,
        both_bad_as_tie=filters.both_bad_as_tie,
        criterion=filters.criterion or None,
        labeller_agreement=labellers,
    )


def interval_note(filters: BoardFilters) -> str:
    """How the board's intervals were computed, in words: the one place the table, the API and
    the CSV's page learn it (the reweighting is named whenever it is on)."""
    method = ("closed form (sandwich / CLT, as LMArena since 2025-07)" if filters.intervals == "sandwich"
              else f"percentile bootstrap, {filters.bootstrap_rounds} rounds")
    weights = (f"; votes reweighted by inverse pair frequency (a pair's votes count as one pair, "
               f"pairs under {MIN_PAIR_VOTES} votes alike)" if filters.reweight_pairs else "")
    return f"95% intervals: {method}{weights}."


def style_controlled(store: Store, votes: pd.DataFrame) -> StyleControlled:
    """Each vote's battle gives the two sides' answer styles; a battle that is gone counts as
    equal style (it still carries its vote)."""
    conversations = store.conversations(votes["battle_id"])
    differences = [style_difference(answer_style(pair[0]), answer_style(pair[1])) if pair else np.zeros(4)
                   for pair in map(conversations.get, votes["battle_id"])]
    return fit_style_controlled(votes_to_arrays(votes), np.array(differences).reshape(len(votes), -1))


def style_note(style: StyleControlled) -> str:
    """What each style feature is worth, in rating points per standard deviation."""
    parts = [f"{c.feature} {c.points:+.0f} (95%: {c.lower:+.0f} to {c.upper:+.0f})"
             for c in style.coefficients.itertuples() if abs(c.points) >= 0.5]
    return ("Style control: ratings at equal answer length and markdown. What style itself earned, "
            "in rating points per standard deviation: " + ("; ".join(parts) if parts else "nothing") + ".")
