"""Labelling campaigns: prompt sets served in turn to labellers, votes with reasons,
progress and inter-labeller agreement. All state is in DuckDB (tables in migration 5).

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

import json
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator

from qwen3arena.arena import Arena, ArenaError, TurnView
from qwen3arena.ratings.agreement import AgreementReport, agreement
from qwen3arena.campaigns.prompts import CampaignPrompt
from qwen3arena.config import CampaignSettings
from qwen3arena.store import OUTCOMES, Outcome, Store, VoteRejected, utcnow

MAX_VOTES_PER_PROMPT = 20
MAX_OVERLAP = 10


class CampaignError(ValueError):
    """A refused campaign action; the message is safe to show (it names no model)."""


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    status: str
    contestants: list[str]      # admin-only: never hand this to a labeller's page
    votes_per_prompt: int
    overlap: int
    rubric: str
    reasons: list[str]
    prompt_source: str | None
    created_by: str | None
    prompts: int


@dataclass(frozen=True)
class LabellerView:
    """What a labeller may see of a campaign: no contestants."""

    campaign_id: str
    name: str
    rubric: str
    reasons: list[str]


@dataclass(frozen=True)
class Assignment:
    campaign_id: str
    prompt_id: str
    slot: int
    kind: str                   # battle | review
    prompt: str
    battle_id: str | None
    resumed: bool


@dataclass
class Progress:
    prompts: int
    slots: int
    done: int
    claimed: int
    complete_prompts: int
    per_labeller: dict[str, dict[str, int]] = field(default_factory=dict)
    agreement: AgreementReport | None = None


@dataclass(frozen=True)
class MyProgress:
    done: int
    available: int              # slots this labeller could still take now
    total: int                  # all slots of the campaign


_CAMPAIGN_COLUMNS = ("campaign_id", "name", "status", "contestants", "votes_per_prompt", "overlap",
                     "rubric", "reasons", "prompt_source", "created_by")


class CampaignService:
    def __init__(self, store: Store, arena: Arena, settings: CampaignSettings):
        self.store = store
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
        campaign_id = uuid.uuid4().hex[:12]
        now = utcnow()
        with self.store.atomic() as execute:
            if execute("SELECT 1 FROM campaigns WHERE name = ?", [name]):
                raise CampaignError(f"A campaign named {name!r} already exists.")
            execute("INSERT INTO campaigns VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                    [campaign_id, name, now, created_by, json.dumps(chosen), int(votes_per_prompt),
                     int(overlap), (rubric or "").strip() or "Which answer is better overall?",
                     json.dumps(chips), prompt_source])
            for position, prompt in enumerate(prompts):
                execute("INSERT INTO campaign_prompts VALUES (?, ?, ?, ?)",
                        [campaign_id, prompt.prompt_id, position, prompt.text])
                for slot in range(int(votes_per_prompt) + int(overlap) - 1):
                    kind = "battle" if slot < int(votes_per_prompt) else "review"
                    execute("INSERT INTO campaign_slots (campaign_id, prompt_id, slot, kind, status) "
                            "VALUES (?, ?, ?, ?, 'open')", [campaign_id, prompt.prompt_id, slot, kind])
        return self.get(campaign_id)

    def get(self, campaign_id: str) -> Campaign:
        rows = self.store.execute(
            f"SELECT {', '.join(_CAMPAIGN_COLUMNS)}, (SELECT count(*) FROM campaign_prompts p "
            "WHERE p.campaign_id = c.campaign_id) FROM campaigns c WHERE campaign_id = ?", [campaign_id])
        if not rows:
            raise CampaignError("This campaign does not exist.")
        return _campaign(rows[0])

    def list_campaigns(self, status: str | None = None) -> list[Campaign]:
        rows = self.store.execute(
            f"SELECT {', '.join(_CAMPAIGN_COLUMNS)}, (SELECT count(*) FROM campaign_prompts p "
            "WHERE p.campaign_id = c.campaign_id) FROM campaigns c "
            + ("WHERE status = ? " if status else "") + "ORDER BY created_at",
            [status] if status else [])
        return [_campaign(row) for row in rows]

    def open_for_labellers(self) -> list[LabellerView]:
        return [LabellerView(c.campaign_id, c.name, c.rubric, c.reasons) for c in self.list_campaigns("open")]

    def view(self, campaign_id: str) -> LabellerView:
        c = self.get(campaign_id)
        return LabellerView(c.campaign_id, c.name, c.rubric, c.reasons)

    def set_status(self, campaign_id: str, status: str) -> None:
        if status not in ("open", "closed"):
            raise CampaignError(f"Unknown status {status!r}.")
        self.get(campaign_id)
        self.store.execute("UPDATE campaigns SET status = ? WHERE campaign_id = ?", [status, campaign_id])

    # -- labellers --------------------------------------------------------------------------

    def next_assignment(self, campaign_id: str, labeller: str) -> Assignment | None:
        """The labeller's claimed slot if they have one (resume), else a newly claimed one;
        None when nothing is left for them. Atomic (see the module docstring)."""
        campaign = self.get(campaign_id)
        if campaign.status != "open":
            raise CampaignError("This campaign is closed.")
        stale = utcnow() - timedelta(seconds=self.settings.claim_timeout_s)
        with self.store.atomic() as execute:
            mine = execute(
                "SELECT s.prompt_id, s.slot, s.kind, s.battle_id, b.status FROM campaign_slots s "
                "LEFT JOIN battles b ON b.battle_id = s.battle_id "
                "WHERE s.campaign_id = ? AND s.labeller = ? AND s.status = 'claimed'", [campaign_id, labeller])
            for prompt_id, slot, kind, battle_id, battle_status in mine:
                if kind == "battle" and battle_status == "voted":
                    # the vote landed but the slot was not closed (a crash in between): close it now
                    self._close_slot(execute, campaign_id, prompt_id, slot, battle_id)
                    continue
                execute("UPDATE campaign_slots SET updated_at = ? WHERE campaign_id = ? AND prompt_id = ? "
                        "AND slot = ?", [utcnow(), campaign_id, prompt_id, slot])
                return self._assignment(execute, campaign_id, prompt_id, slot, kind, battle_id, True)
            row = execute(
                """
                SELECT s.prompt_id, s.slot, s.kind FROM campaign_slots s
                JOIN campaign_prompts p ON p.campaign_id = s.campaign_id AND p.prompt_id = s.prompt_id
                WHERE s.campaign_id = ?
                  AND (s.status = 'open' OR (s.status = 'claimed' AND s.updated_at < ?))
                  AND NOT EXISTS (SELECT 1 FROM campaign_slots m WHERE m.campaign_id = s.campaign_id
                                  AND m.prompt_id = s.prompt_id AND m.labeller = ?)
                  AND (s.kind = 'battle' OR EXISTS (
                        SELECT 1 FROM campaign_slots f WHERE f.campaign_id = s.campaign_id
                        AND f.prompt_id = s.prompt_id AND f.slot = 0 AND f.status = 'done'))
                ORDER BY (s.kind = 'review') DESC, p.position, s.slot
                LIMIT 1
                """, [campaign_id, stale, labeller])
            if not row:
                return None
            prompt_id, slot, kind = row[0]
            now = utcnow()
            execute("UPDATE campaign_slots SET status = 'claimed', labeller = ?, claimed_at = ?, updated_at = ?, "
                    "battle_id = CASE WHEN kind = 'battle' THEN NULL ELSE battle_id END "
                    "WHERE campaign_id = ? AND prompt_id = ? AND slot = ?",
                    [labeller, now, now, campaign_id, prompt_id, slot])
            battle_id = execute("SELECT battle_id FROM campaign_slots WHERE campaign_id = ? AND prompt_id = ? "
                                "AND slot = ?", [campaign_id, prompt_id, slot])[0][0]
            return self._assignment(execute, campaign_id, prompt_id, slot, kind, battle_id, False)

    def current(self, campaign_id: str, labeller: str) -> Assignment | None:
        """The labeller's claimed slot, if any (nothing is claimed by this call)."""
        rows = self.store.execute(
            "SELECT s.prompt_id, s.slot, s.kind, s.battle_id, p.prompt FROM campaign_slots s "
            "JOIN campaign_prompts p ON p.campaign_id = s.campaign_id AND p.prompt_id = s.prompt_id "
            "WHERE s.campaign_id = ? AND s.labeller = ? AND s.status = 'claimed'", [campaign_id, labeller])
        if not rows:
            return None
        prompt_id, slot, kind, battle_id, prompt = rows[0]
        return Assignment(campaign_id, prompt_id, slot, kind, prompt, battle_id, True)

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
        self._touch(current, labeller)
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
                self.arena.vote(current.battle_id, outcome, labeller, reason, comment)
            except VoteRejected as exc:
                raise CampaignError(str(exc)) from exc
            with self.store.atomic() as execute:
                self._close_slot(execute, campaign_id, current.prompt_id, current.slot, current.battle_id)
        else:
            with self.store.atomic() as execute:
                if execute("SELECT 1 FROM campaign_reviews WHERE battle_id = ? AND labeller = ?",
                           [current.battle_id, labeller]):
                    raise CampaignError("You already judged this battle.")
                execute("INSERT INTO campaign_reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [campaign_id, current.battle_id, labeller, outcome, reason, comment, utcnow()])
                self._close_slot(execute, campaign_id, current.prompt_id, current.slot, current.battle_id)
        return current

    # -- progress ---------------------------------------------------------------------------

    def my_progress(self, campaign_id: str, labeller: str) -> MyProgress:
        done, total = self.store.execute(
            "SELECT count(*) FILTER (WHERE labeller = ? AND status = 'done'), count(*) FROM campaign_slots "
            "WHERE campaign_id = ?", [labeller, campaign_id])[0]
        available = self.store.execute(
            """
            SELECT count(DISTINCT s.prompt_id) FROM campaign_slots s WHERE s.campaign_id = ? AND s.status = 'open'
              AND NOT EXISTS (SELECT 1 FROM campaign_slots m WHERE m.campaign_id = s.campaign_id
                              AND m.prompt_id = s.prompt_id AND m.labeller = ?)
            """, [campaign_id, labeller])[0][0]
        return MyProgress(int(done), int(available), int(total))

    def progress(self, campaign_id: str) -> Progress:
        """Campaign totals, per-labeller counts and agreement (admin view)."""
        self.get(campaign_id)
        prompts, slots, done, claimed = self.store.execute(
            "SELECT count(DISTINCT prompt_id), count(*), count(*) FILTER (WHERE status = 'done'), "
            "count(*) FILTER (WHERE status = 'claimed') FROM campaign_slots WHERE campaign_id = ?",
            [campaign_id])[0]
        complete = self.store.execute(
            "SELECT count(*) FROM (SELECT prompt_id FROM campaign_slots WHERE campaign_id = ? "
            "GROUP BY prompt_id HAVING bool_and(status = 'done'))", [campaign_id])[0][0]
        per: dict[str, dict[str, int]] = {}
        for voter, n in self.store.execute(
                "SELECT voter, count(*) FROM votes WHERE campaign_id = ? GROUP BY voter", [campaign_id]):
            per.setdefault(voter, {"votes": 0, "reviews": 0})["votes"] = n
        for labeller, n in self.store.execute(
                "SELECT labeller, count(*) FROM campaign_reviews WHERE campaign_id = ? GROUP BY labeller",
                [campaign_id]):
            per.setdefault(labeller, {"votes": 0, "reviews": 0})["reviews"] = n
        return Progress(int(prompts), int(slots), int(done), int(claimed), int(complete),
                        dict(sorted(per.items())), self.agreement(campaign_id))

    def agreement(self, campaign_id: str) -> AgreementReport:
        """Agreement on the campaign's battles judged by several labellers (vote + reviews)."""
        judgements: dict[str, dict[str, str]] = {}
        for battle_id, voter, outcome in self.store.execute(
                "SELECT battle_id, voter, outcome FROM votes WHERE campaign_id = ? "
                "UNION ALL SELECT battle_id, labeller, outcome FROM campaign_reviews WHERE campaign_id = ?",
                [campaign_id, campaign_id]):
            judgements.setdefault(battle_id, {})[voter] = outcome
        return agreement(judgements)

    # -- internals --------------------------------------------------------------------------

    def _assignment(self, execute, campaign_id: str, prompt_id: str, slot: int, kind: str,
                    battle_id: str | None, resumed: bool) -> Assignment:
        prompt = execute("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND prompt_id = ?",
                         [campaign_id, prompt_id])[0][0]
        return Assignment(campaign_id, prompt_id, slot, kind, prompt, battle_id, resumed)

    def _mine(self, campaign_id: str, labeller: str) -> Assignment:
        current = self.current(campaign_id, labeller)
        if current is None:
            raise CampaignError("You have no prompt in hand (it may have been handed to someone else after "
                                "a long pause): press Next prompt.")
        return current

    def _attach(self, assignment: Assignment, labeller: str, battle_id: str) -> None:
        with self.store.atomic() as execute:
            updated = execute(
                "UPDATE campaign_slots SET battle_id = ?, updated_at = ? WHERE campaign_id = ? AND prompt_id = ? "
                "AND slot = ? AND labeller = ? AND status = 'claimed' RETURNING slot",
                [battle_id, utcnow(), assignment.campaign_id, assignment.prompt_id, assignment.slot, labeller])
        if not updated:
            self.arena.discard(battle_id)
            raise CampaignError("This prompt is no longer yours (it was handed on after a long pause): "
                                "press Next prompt.")

    def _touch(self, assignment: Assignment, labeller: str) -> None:
        self.store.execute("UPDATE campaign_slots SET updated_at = ? WHERE campaign_id = ? AND prompt_id = ? "
                           "AND slot = ? AND labeller = ?",
                           [utcnow(), assignment.campaign_id, assignment.prompt_id, assignment.slot, labeller])

    @staticmethod
    def _close_slot(execute, campaign_id: str, prompt_id: str, slot: int, battle_id: str | None) -> None:
        execute("UPDATE campaign_slots SET status = 'done', updated_at = ? WHERE campaign_id = ? AND prompt_id = ? "
                "AND slot = ?", [utcnow(), campaign_id, prompt_id, slot])
        if slot == 0 and battle_id:
            # the prompt's first battle is voted: its reviews (overlap) may now be served
            execute("UPDATE campaign_slots SET battle_id = ? WHERE campaign_id = ? AND prompt_id = ? "
                    "AND kind = 'review'", [battle_id, campaign_id, prompt_id])


def _campaign(row: tuple) -> Campaign:
    data = dict(zip(_CAMPAIGN_COLUMNS, row[:-1]))
    data["contestants"] = json.loads(data["contestants"])
    data["reasons"] = json.loads(data["reasons"])
    return Campaign(**data, prompts=int(row[-1]))


__all__ = ["ArenaError", "Assignment", "Campaign", "CampaignError", "CampaignService", "LabellerView",
           "MyProgress", "Progress"]
