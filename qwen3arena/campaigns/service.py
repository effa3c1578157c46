"""Labelling campaigns: prompt sets served in turn to labellers, votes with reasons,
progress and inter-labeller agreement. All state is in DuckDB (tables in migration 6, their
SQL in campaigns/store.py).

Slots: each prompt has `votes_per_prompt` battle slots (a fresh blind battle, its vote goes
to the ratings like any vote) and `overlap - 1` review slots on the prompt's first battle
(other labellers judge the very same answers; kept in campaign_reviews, never counted twice
in the ratings, used for agreement). A labeller takes at most one slot per prompt.

Claims are atomic: choosing a free slot and marking it claimed happen in one transaction
under the store's lock, so two labellers pressing "Next" at the same moment never get the
same slot. A labeller has at most one claimed slot per campaign; coming back (new tab,
after a restart) hands the same slot back: "leaving mid-battle" loses nothing. A claim
untouched for `claim_timeout_s` may be taken by someone else.

Rubric verdicts (issue 15, section 2): a campaign may name criteria (accuracy, safety...) that
the labeller judges A / B / tie besides the overall vote, optional or required. The rules are
checked here, once, whichever way a campaign or a vote comes in; the verdicts are written in the
vote's transaction and never enter the overall ratings. A campaign may also be open to named
reviewers only: the others do not see it offered and are refused when they claim.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator, Mapping

from qwen3arena.arena import Arena, ArenaError, Repaired, TurnView
from qwen3arena.ratings.agreement import AgreementReport, agreement
from qwen3arena.campaigns.prompts import CampaignPrompt
from qwen3arena.campaigns.store import Assignment, Campaign, CampaignError, CampaignStore, MyProgress
from qwen3arena.config import CampaignSettings
from qwen3arena.store import OUTCOMES, Outcome, Store, VoteRejected, utcnow

MAX_VOTES_PER_PROMPT = 20
MAX_OVERLAP = 10
MAX_CRITERIA = 8
MAX_REVIEWERS = 200
CRITERION_NAME = re.compile(r"[a-z][a-z0-9_-]{0,23}")   # a short lower-case slug
REVIEWER_NAME = re.compile(r"[^\s,:]{1,64}")             # a login, as `user:<login>` voter ids carry it
VERDICTS = ("model_a", "model_b", "tie")                 # a criterion's verdict: A, B or tie
_VERDICT_WORDS = {"a": "model_a", "b": "model_b", "model_a": "model_a", "model_b": "model_b", "tie": "tie"}
NOT_A_REVIEWER = ("This campaign is open to its named reviewers only, and you are not one of them "
                  "(log in with a named account, or ask the campaign's admin to add you).")


def check_criteria(names: list[str] | None) -> list[str]:
    """The campaign's criteria: short, unique, lower-case slugs (accuracy, safety, clarity), at
    most MAX_CRITERIA; CampaignError names each bad one. "overall" is the vote itself."""
    criteria = [(n or "").strip() for n in names or [] if n and str(n).strip()]
    bad = [n for n in criteria if not CRITERION_NAME.fullmatch(n) or n == "overall"]
    if bad:
        raise CampaignError(f"Criterion names must be short lower-case slugs (a letter, then up to 23 letters, "
                            f"digits, - or _; not 'overall'): {', '.join(repr(n) for n in bad)}.")
    twice = sorted({n for n in criteria if criteria.count(n) > 1})
    if twice:
        raise CampaignError(f"Criteria must be unique; named twice: {', '.join(twice)}.")
    if len(criteria) > MAX_CRITERIA:
        raise CampaignError(f"A campaign takes at most {MAX_CRITERIA} criteria; {len(criteria)} given.")
    return criteria


def check_reviewers(names: list[str] | None) -> list[str]:
    """Logins the campaign is open to ("lena" or "user:lena"); empty: every labeller."""
    reviewers = []
    for raw in names or []:
        name = (raw or "").strip()
        name = name[len("user:"):] if name.startswith("user:") else name
        if not name:
            continue
        if not REVIEWER_NAME.fullmatch(name):
            raise CampaignError(f"Reviewer {raw!r} is not a login name (no spaces, commas or colons; "
                                "anonymous visitors cannot be named).")
        if name not in reviewers:
            reviewers.append(name)
    if len(reviewers) > MAX_REVIEWERS:
        raise CampaignError(f"A campaign names at most {MAX_REVIEWERS} reviewers; {len(reviewers)} given.")
    return reviewers


def check_verdicts(campaign: Campaign, verdicts: Mapping[str, str | None] | None) -> dict[str, str]:
    """The verdicts a vote may carry: only the campaign's criteria, each A / B / tie, and every
    criterion when they are required. Empty answers are not given. CampaignError says what is
    wrong; the caller writes nothing then."""
    given = {str(k).strip(): v for k, v in (verdicts or {}).items() if v is not None and str(v).strip()}
    unknown = [k for k in given if k not in campaign.criteria]
    if unknown:
        known = ", ".join(campaign.criteria) if campaign.criteria else "it has none"
        raise CampaignError(f"Not a criterion of this campaign: {', '.join(unknown)} (its criteria: {known}).")
    checked = {}
    for name in campaign.criteria:  # in the campaign's order
        if name not in given:
            continue
        verdict = _VERDICT_WORDS.get(str(given[name]).strip().lower())
        if verdict is None:
            raise CampaignError(f"The verdict for {name} must be A, B or tie; got {given[name]!r}.")
        checked[name] = verdict
    missing = [n for n in campaign.criteria if n not in checked]
    if campaign.criteria_required and missing:
        raise CampaignError(f"Give a verdict (A, B or tie) for every criterion before voting; missing: "
                            f"{', '.join(missing)}. Nothing was saved.")
    return checked


@dataclass(frozen=True)
class LabellerView:
    """What a labeller may see of a campaign: no contestants."""

    campaign_id: str
    name: str
    rubric: str
    reasons: list[str]
    criteria: list[str] = field(default_factory=list)   # judged A / B / tie besides the overall vote
    criteria_required: bool = False


@dataclass
class Progress:
    prompts: int
    slots: int
    done: int
    claimed: int
    complete_prompts: int
    per_labeller: dict[str, dict[str, int]] = field(default_factory=dict)
    agreement: AgreementReport | None = None
    criteria: dict[str, AgreementReport] = field(default_factory=dict)  # agreement per rubric criterion


class CampaignService:
    def __init__(self, store: Store, arena: Arena, settings: CampaignSettings):
        self.store = store
        self.campaigns = CampaignStore(store)
        self.arena = arena
        self.settings = settings

    # -- admin ------------------------------------------------------------------------------

    def create(self, name: str, prompts: list[CampaignPrompt], contestants: list[str], known: list[str],
               votes_per_prompt: int = 1, overlap: int = 1, rubric: str = "",
               reasons: list[str] | None = None, created_by: str | None = None,
               prompt_source: str | None = None, criteria: list[str] | None = None,
               criteria_required: bool = False, reviewers: list[str] | None = None) -> Campaign:
        """Validates and stores a campaign with all its slots, in one transaction. `criteria`:
        rubric criteria judged besides the vote (required or not); `reviewers`: the logins it is
        open to (none: every labeller)."""
        name = (name or "").strip()
        if not name:
            raise CampaignError("Give the campaign a name.")
        chosen = list(dict.fromkeys(c for c in contestants or [] if c))
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise CampaignError(f"Unknown contestants: {', '.join(unknown)}.")
        if len(chosen) < 2:
            raise CampaignError(f"A campaign needs at least two contestants; {len(chosen)} chosen.")
        if not prompts:
            raise CampaignError("The campaign has no prompts: upload a JSONL file or choose a shipped set.")
        if not 1 <= int(votes_per_prompt) <= MAX_VOTES_PER_PROMPT:
            raise CampaignError(f"Votes per prompt must be between 1 and {MAX_VOTES_PER_PROMPT}.")
        if not 1 <= int(overlap) <= MAX_OVERLAP:
            raise CampaignError(f"Overlap (labellers per shared battle) must be between 1 and {MAX_OVERLAP}.")
        chips = [r.strip() for r in (reasons or []) if r and r.strip()] or list(self.settings.default_reasons)
        names = check_criteria(criteria)
        if criteria_required and not names:
            raise CampaignError("Required criteria: name at least one criterion (accuracy, safety...).")
        campaign = Campaign(uuid.uuid4().hex[:12], name, "open", chosen, int(votes_per_prompt), int(overlap),
                            (rubric or "").strip() or "Which answer is better overall?", chips, prompt_source,
                            created_by, len(prompts), names, bool(criteria_required), check_reviewers(reviewers))
        self.campaigns.create(campaign, prompts, utcnow())
        return self.get(campaign.campaign_id)

    def get(self, campaign_id: str) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignError("This campaign does not exist.")
        return campaign

    def list_campaigns(self, status: str | None = None) -> list[Campaign]:
        return self.campaigns.list_campaigns(status)

    def open_for_labellers(self, labeller: str | None = None) -> list[LabellerView]:
        """Open campaigns; given a labeller, only those open to them (assigned reviewers)."""
        return [_labeller_view(c) for c in self.list_campaigns("open") if labeller is None or c.open_to(labeller)]

    def view(self, campaign_id: str, labeller: str | None = None) -> LabellerView:
        c = self.get(campaign_id)
        if labeller is not None and not c.open_to(labeller):
            raise CampaignError(NOT_A_REVIEWER)
        return _labeller_view(c)

    def criteria_names(self) -> list[str]:
        """Every criterion any campaign names, in first-seen order (the Scoreboard's boards)."""
        return list(dict.fromkeys(n for c in self.list_campaigns() for n in c.criteria))

    def set_status(self, campaign_id: str, status: str) -> None:
        if status not in ("open", "closed"):
            raise CampaignError(f"Unknown status {status!r}.")
        self.get(campaign_id)
        self.campaigns.set_status(campaign_id, status)

    # -- labellers --------------------------------------------------------------------------

    def next_assignment(self, campaign_id: str, labeller: str) -> Assignment | None:
        """The labeller's claimed slot if they have one (resume), else a newly claimed one;
        None when nothing is left for them. Atomic (see the module docstring)."""
        campaign = self.get(campaign_id)
        if campaign.status != "open":
            raise CampaignError("This campaign is closed.")
        if not campaign.open_to(labeller):
            raise CampaignError(NOT_A_REVIEWER)
        stale = utcnow() - timedelta(seconds=self.settings.claim_timeout_s)
        return self.campaigns.claim(campaign_id, labeller, stale)

    def current(self, campaign_id: str, labeller: str) -> Assignment | None:
        """The labeller's claimed slot, if any (nothing is claimed by this call)."""
        return self.campaigns.current(campaign_id, labeller)

    def play(self, assignment: Assignment, labeller: str) -> Iterator[TurnView]:
        """Serves the assignment's prompt as the first turn of a fresh blind battle (no typing).
        For a resumed battle still live and finished, yields its last view instead."""
        if assignment.kind != "battle":
            raise CampaignError("This prompt is a review: its answers are already written.")
        if assignment.battle_id:
            view = self.arena.resume(assignment.battle_id)
            if view is not None:
                yield view
                return
            self.arena.discard(assignment.battle_id)
        campaign = self.get(assignment.campaign_id)
        battle_id = self.arena.start_battle(labeller, campaign.contestants, campaign.campaign_id,
                                            assignment.prompt_id)
        self._attach(assignment, labeller, battle_id)
        yield from self.arena.play_turn(battle_id, assignment.prompt)

    def follow_up(self, campaign_id: str, labeller: str, text: str) -> Iterator[TurnView]:
        """A further turn in the labeller's current battle (allowed before the vote)."""
        current = self._mine(campaign_id, labeller)
        if current.kind != "battle" or not current.battle_id:
            raise CampaignError("Follow-ups are for battles; a review is judged as written.")
        self.campaigns.touch(current, labeller)
        yield from self.arena.play_turn(current.battle_id, text)

    def history(self, assignment: Assignment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Both conversations to show: a live battle's, or a reviewed battle's from the store."""
        if assignment.kind == "battle":
            return self.arena.history(assignment.battle_id) if assignment.battle_id else ([], [])
        record = self.store.get_battle(assignment.battle_id or "")
        if record is None:
            raise CampaignError("The battle to review is missing.")
        return list(record.conversation_a), list(record.conversation_b)

    def vote(self, campaign_id: str, labeller: str, outcome: Outcome, reason: str | None,
             comment: str | None = None, verdicts: Mapping[str, str | None] | None = None) -> Assignment:
        """Records the labeller's judgement of their current slot and closes it, with a verdict
        per rubric criterion (`verdicts`: criterion -> A / B / tie; check_verdicts) written in the
        same transaction. Names are not revealed in a campaign (the labeller goes on labelling,
        unbiased)."""
        if outcome not in OUTCOMES:
            raise CampaignError(f"Unknown vote {outcome!r}.")
        campaign = self.get(campaign_id)
        checked = check_verdicts(campaign, verdicts)
        current = self._mine(campaign_id, labeller)
        reason = (reason or "").strip() or None
        if campaign.reasons and reason not in campaign.reasons:
            raise CampaignError("Choose a reason for your vote first.")
        comment = (comment or "").strip()[:2000] or None
        if current.kind == "battle":
            if not current.battle_id:
                raise CampaignError("The answers are not there yet: press Next prompt.")
            try:
                # the vote and its slot's close are one transaction: both are written or neither
                def then(execute: Any) -> None:
                    self.campaigns.close_slot(execute, current, labeller)
                    self.campaigns.record_verdicts(execute, current, labeller, "vote", checked)

                self.arena.vote(current.battle_id, outcome, labeller, reason, comment, then=then)
            except VoteRejected as exc:
                raise CampaignError(str(exc)) from exc
        else:
            self.campaigns.record_review(current, labeller, outcome, reason, comment, checked)
        return current

    def repair(self, battle_id: str | None, labeller: str, text: str | None) -> Repaired:
        """The labeller's own better answer, kept with their vote on `battle_id` (the arena's
        rules: Arena.repair; a review is not a vote and takes none)."""
        return self.arena.repair(battle_id, labeller, text)

    def preferred_answer(self, battle_id: str) -> str | None:
        """What a repair of the vote on `battle_id` starts from (None: a tie or both bad)."""
        return self.arena.preferred_answer(battle_id)

    # -- progress ---------------------------------------------------------------------------

    def my_progress(self, campaign_id: str, labeller: str) -> MyProgress:
        return self.campaigns.my_progress(campaign_id, labeller)

    def progress(self, campaign_id: str) -> Progress:
        """Campaign totals, per-labeller counts and agreement (admin view)."""
        campaign = self.get(campaign_id)
        return Progress(*self.campaigns.slot_counts(campaign_id), self.campaigns.per_labeller(campaign_id),
                        self.agreement(campaign_id), self.criteria_agreement(campaign_id, campaign.criteria))

    def agreement(self, campaign_id: str) -> AgreementReport:
        """Agreement on the campaign's battles judged by several labellers (vote + reviews)."""
        return agreement(self.campaigns.judgements(campaign_id))

    def criteria_agreement(self, campaign_id: str | None, criteria: list[str] | None = None
                           ) -> dict[str, AgreementReport]:
        """Agreement per rubric criterion, from the same function as the overall vote's: the
        verdicts on battles judged by several labellers (vote + reviews). `campaign_id` None:
        over every campaign; `criteria`: these, in order (one without verdicts gets an empty report)."""
        judged = self.campaigns.criterion_judgements(campaign_id)
        names = criteria if criteria is not None else sorted(judged)
        return {name: agreement(judged.get(name, {})) for name in names}

    # -- internals --------------------------------------------------------------------------

    def _mine(self, campaign_id: str, labeller: str) -> Assignment:
        current = self.current(campaign_id, labeller)
        if current is None:
            raise CampaignError("You have no prompt in hand (it may have been handed to someone else after "
                                "a long pause): press Next prompt.")
        return current

    def _attach(self, assignment: Assignment, labeller: str, battle_id: str) -> None:
        if not self.campaigns.attach_battle(assignment, labeller, battle_id):
            self.arena.discard(battle_id)
            raise CampaignError("This prompt is no longer yours (it was handed on after a long pause): "
                                "press Next prompt.")


def _labeller_view(c: Campaign) -> LabellerView:
    return LabellerView(c.campaign_id, c.name, c.rubric, c.reasons, list(c.criteria), c.criteria_required)


__all__ = ["ArenaError", "Assignment", "Campaign", "CampaignError", "CampaignService", "LabellerView",
           "MyProgress", "Progress"]
