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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator

from qwen3arena.arena import Arena, ArenaError, TurnView
from qwen3arena.ratings.agreement import AgreementReport, agreement
from qwen3arena.campaigns.prompts import CampaignPrompt
from qwen3arena.campaigns.store import Assignment, Campaign, CampaignError, CampaignStore, MyProgress
from qwen3arena.config import CampaignSettings
from qwen3arena.store import OUTCOMES, Outcome, Store, VoteRejected, utcnow

MAX_VOTES_PER_PROMPT = 20
MAX_OVERLAP = 10


@dataclass(frozen=True)
class LabellerView:
    """What a labeller may see of a campaign: no contestants."""

    campaign_id: str
    name: str
    rubric: str
    reasons: list[str]


@dataclass
class Progress:
    prompts: int
    slots: int
    done: int
    claimed: int
    complete_prompts: int
    per_labeller: dict[str, dict[str, int]] = field(default_factory=dict)
    agreement: AgreementReport | None = None


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
               prompt_source: str | None = None) -> Campaign:
        """Validates and stores a campaign with all its slots, in one transaction."""
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
        campaign = Campaign(uuid.uuid4().hex[:12], name, "open", chosen, int(votes_per_prompt), int(overlap),
                            (rubric or "").strip() or "Which answer is better overall?", chips, prompt_source,
                            created_by, len(prompts))
        self.campaigns.create(campaign, prompts, utcnow())
        return self.get(campaign.campaign_id)

    def get(self, campaign_id: str) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignError("This campaign does not exist.")
        return campaign

    def list_campaigns(self, status: str | None = None) -> list[Campaign]:
        return self.campaigns.list_campaigns(status)

    def open_for_labellers(self) -> list[LabellerView]:
        return [LabellerView(c.campaign_id, c.name, c.rubric, c.reasons) for c in self.list_campaigns("open")]

    def view(self, campaign_id: str) -> LabellerView:
        c = self.get(campaign_id)
        return LabellerView(c.campaign_id, c.name, c.rubric, c.reasons)

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
             comment: str | None = None) -> Assignment:
        """Records the labeller's judgement of their current slot and closes it. Names are not
        revealed in a campaign (the labeller goes on labelling, unbiased)."""
        if outcome not in OUTCOMES:
            raise CampaignError(f"Unknown vote {outcome!r}.")
        campaign = self.get(campaign_id)
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
                self.arena.vote(current.battle_id, outcome, labeller, reason, comment,
                                then=lambda execute: self.campaigns.close_slot(execute, current, labeller))
            except VoteRejected as exc:
                raise CampaignError(str(exc)) from exc
        else:
            self.campaigns.record_review(current, labeller, outcome, reason, comment)
        return current

    # -- progress ---------------------------------------------------------------------------

    def my_progress(self, campaign_id: str, labeller: str) -> MyProgress:
        return self.campaigns.my_progress(campaign_id, labeller)

    def progress(self, campaign_id: str) -> Progress:
        """Campaign totals, per-labeller counts and agreement (admin view)."""
        self.get(campaign_id)
        return Progress(*self.campaigns.slot_counts(campaign_id), self.campaigns.per_labeller(campaign_id),
                        self.agreement(campaign_id))

    def agreement(self, campaign_id: str) -> AgreementReport:
        """Agreement on the campaign's battles judged by several labellers (vote + reviews)."""
        return agreement(self.campaigns.judgements(campaign_id))

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


__all__ = ["ArenaError", "Assignment", "Campaign", "CampaignError", "CampaignService", "LabellerView",
           "MyProgress", "Progress"]
