"""The campaign tables (migration 6): campaigns, campaign_prompts, campaign_slots and
campaign_reviews. Every statement on them lives here and runs through Store.execute or
Store.atomic (the store's lock and transactions); the service holds the rules, no SQL.

A battle slot closes inside its vote's transaction (`close_slot` is handed to
Store.record_vote through Arena.vote), so a vote and its slot are written together or not at all.
Rubric verdicts (campaign_verdicts, migration 9) are written in that same transaction (or the
review's), and every read of them joins the vote or review they came with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

from qwen3arena.campaigns.prompts import CampaignPrompt
from qwen3arena.errors import Refused
from qwen3arena.store import Execute, Outcome, Store, utcnow


class CampaignError(Refused, ValueError):
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
    criteria: list[str] = field(default_factory=list)   # rubric criteria (slugs), asked besides the vote
    criteria_required: bool = False                     # a vote without every criterion's verdict is refused
    reviewers: list[str] = field(default_factory=list)  # logins it is open to; empty: every labeller

    def open_to(self, labeller: str) -> bool:
        """Whether this labeller (a voter id: user:<login>) may take the campaign's prompts."""
        return not self.reviewers or labeller in {f"user:{name}" for name in self.reviewers}


@dataclass(frozen=True)
class Assignment:
    campaign_id: str
    prompt_id: str
    slot: int
    kind: str                   # battle | review
    prompt: str
    battle_id: str | None
    resumed: bool


@dataclass(frozen=True)
class MyProgress:
    done: int
    available: int              # slots this labeller could still take now
    total: int                  # all slots of the campaign


_CAMPAIGN_COLUMNS = ("campaign_id", "name", "status", "contestants", "votes_per_prompt", "overlap",
                     "rubric", "reasons", "prompt_source", "created_by", "criteria", "criteria_required",
                     "reviewers")
_SELECT_CAMPAIGNS = (f"SELECT {', '.join(_CAMPAIGN_COLUMNS)}, (SELECT count(*) FROM campaign_prompts p "
                     "WHERE p.campaign_id = c.campaign_id) FROM campaigns c ")
_SLOT = "campaign_id = ? AND prompt_id = ? AND slot = ?"
# a verdict (alias d) counts while the vote or review it came with exists
_VERDICT_KEPT = ("(CASE d.source WHEN 'vote' THEN EXISTS (SELECT 1 FROM votes v WHERE v.vote_id = d.vote_id) "
                 "ELSE EXISTS (SELECT 1 FROM campaign_reviews r WHERE r.battle_id = d.battle_id "
                 "AND r.labeller = d.labeller) END)")


class CampaignStore:
    def __init__(self, store: Store):
        self.store = store

    # -- campaigns --------------------------------------------------------------------------

    def create(self, campaign: Campaign, prompts: Sequence[CampaignPrompt], created_at: datetime) -> None:
        """The campaign, its prompts and every slot, in one transaction; a taken name writes nothing."""
        with self.store.atomic() as execute:
            if execute("SELECT 1 FROM campaigns WHERE name = ?", [campaign.name]):
                raise CampaignError(f"A campaign named {campaign.name!r} already exists.")
            execute("INSERT INTO campaigns (campaign_id, name, created_at, created_by, status, contestants, "
                    "votes_per_prompt, overlap, rubric, reasons, prompt_source, criteria, criteria_required, "
                    "reviewers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [campaign.campaign_id, campaign.name, created_at, campaign.created_by, campaign.status,
                     json.dumps(campaign.contestants), campaign.votes_per_prompt, campaign.overlap,
                     campaign.rubric, json.dumps(campaign.reasons), campaign.prompt_source,
                     json.dumps(campaign.criteria), campaign.criteria_required, json.dumps(campaign.reviewers)])
            for position, prompt in enumerate(prompts):
                execute("INSERT INTO campaign_prompts VALUES (?, ?, ?, ?)",
                        [campaign.campaign_id, prompt.prompt_id, position, prompt.text])
                for slot in range(campaign.votes_per_prompt + campaign.overlap - 1):
                    kind = "battle" if slot < campaign.votes_per_prompt else "review"
                    execute("INSERT INTO campaign_slots (campaign_id, prompt_id, slot, kind, status) "
                            "VALUES (?, ?, ?, ?, 'open')", [campaign.campaign_id, prompt.prompt_id, slot, kind])

    def get(self, campaign_id: str) -> Campaign | None:
        rows = self.store.execute(_SELECT_CAMPAIGNS + "WHERE campaign_id = ?", [campaign_id])
        return _campaign(rows[0]) if rows else None

    def list_campaigns(self, status: str | None = None) -> list[Campaign]:
        rows = self.store.execute(_SELECT_CAMPAIGNS + ("WHERE status = ? " if status else "") + "ORDER BY created_at",
                                  [status] if status else [])
        return [_campaign(row) for row in rows]

    def set_status(self, campaign_id: str, status: str) -> None:
        self.store.execute("UPDATE campaigns SET status = ? WHERE campaign_id = ?", [status, campaign_id])

    # -- slots ------------------------------------------------------------------------------

    def claim(self, campaign_id: str, labeller: str, stale_before: datetime) -> Assignment | None:
        """The labeller's claimed slot (touched, resumed) or else a free one claimed now, in one
        transaction so that two labellers never get the same slot; None when nothing is left.
        Across app processes (PostgreSQL) the free slot is picked passing over rows another
        process is claiming (SKIP LOCKED), and taken only if it is still free when written
        (compare-and-set); one taken meanwhile sends the claim to the next."""
        with self.store.atomic() as execute:
            mine = execute("SELECT prompt_id, slot, kind, battle_id FROM campaign_slots "
                           "WHERE campaign_id = ? AND labeller = ? AND status = 'claimed' LIMIT 1",
                           [campaign_id, labeller])
            if mine:
                prompt_id, slot, kind, battle_id = mine[0]
                execute(f"UPDATE campaign_slots SET updated_at = ? WHERE {_SLOT}",
                        [utcnow(), campaign_id, prompt_id, slot])
                return _assignment(execute, campaign_id, prompt_id, slot, kind, battle_id, True)
            while True:  # again only when another process took the slot between the read and the write
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
                    """ + self.store.backend.skip_locked("s"), [campaign_id, stale_before, labeller])
                if not row:
                    return None
                prompt_id, slot, kind = row[0]
                now = utcnow()
                taken = execute(
                    "UPDATE campaign_slots SET status = 'claimed', labeller = ?, claimed_at = ?, updated_at = ?, "
                    f"battle_id = CASE WHEN kind = 'battle' THEN NULL ELSE battle_id END WHERE {_SLOT} "
                    "AND (status = 'open' OR (status = 'claimed' AND updated_at < ?)) RETURNING battle_id",
                    [labeller, now, now, campaign_id, prompt_id, slot, stale_before])
                if taken:
                    return _assignment(execute, campaign_id, prompt_id, slot, kind, taken[0][0], False)

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

    def attach_battle(self, assignment: Assignment, labeller: str, battle_id: str) -> bool:
        """Ties a fresh battle to the slot; False when the slot is no longer this labeller's."""
        return bool(self.store.execute(
            f"UPDATE campaign_slots SET battle_id = ?, updated_at = ? WHERE {_SLOT} "
            "AND labeller = ? AND status = 'claimed' RETURNING slot",
            [battle_id, utcnow(), *_key(assignment), labeller]))

    def touch(self, assignment: Assignment, labeller: str) -> None:
        """Keeps a claim in use from being handed on."""
        self.store.execute(f"UPDATE campaign_slots SET updated_at = ? WHERE {_SLOT} AND labeller = ?",
                           [utcnow(), *_key(assignment), labeller])

    @staticmethod
    def close_slot(execute: Execute, assignment: Assignment, labeller: str) -> None:
        """Marks the slot done inside the caller's transaction (the vote's or the review's); a slot
        no longer claimed by this labeller for this battle raises, which rolls the judgement back."""
        closed = execute(
            f"UPDATE campaign_slots SET status = 'done', updated_at = ? WHERE {_SLOT} "
            "AND labeller = ? AND status = 'claimed' AND battle_id = ? RETURNING slot",
            [utcnow(), *_key(assignment), labeller, assignment.battle_id])
        if not closed:
            raise CampaignError("This prompt is no longer yours (it was handed on after a long pause): "
                                "press Next prompt.")
        if assignment.slot == 0:
            # the prompt's first battle is judged: its reviews (overlap) may now be served
            execute("UPDATE campaign_slots SET battle_id = ? WHERE campaign_id = ? AND prompt_id = ? "
                    "AND kind = 'review'", [assignment.battle_id, assignment.campaign_id, assignment.prompt_id])

    def record_review(self, assignment: Assignment, labeller: str, outcome: Outcome, reason: str | None,
                      comment: str | None, verdicts: Mapping[str, str] | None = None) -> None:
        """A review (overlap judgement), its rubric verdicts and its slot's close, in one transaction."""
        with self.store.atomic() as execute:
            if execute("SELECT 1 FROM campaign_reviews WHERE battle_id = ? AND labeller = ?",
                       [assignment.battle_id, labeller]):
                raise CampaignError("You already judged this battle.")
            execute("INSERT INTO campaign_reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [assignment.campaign_id, assignment.battle_id, labeller, outcome, reason, comment, utcnow()])
            self.record_verdicts(execute, assignment, labeller, "review", verdicts or {})
            self.close_slot(execute, assignment, labeller)

    # -- rubric verdicts (migration 9) --------------------------------------------------------

    @staticmethod
    def record_verdicts(execute: Execute, assignment: Assignment, labeller: str, source: str,
                        verdicts: Mapping[str, str]) -> None:
        """The labeller's verdict per criterion, inside the caller's transaction (the vote's, or
        the review's): they are written with their judgement or not at all. A vote's verdicts
        carry its vote id; verdicts a labeller left on the battle with an earlier vote since
        undone are replaced."""
        columns = "campaign_id, battle_id, labeller, source, vote_id, criterion, verdict, created_at"
        if source == "vote":
            execute("DELETE FROM campaign_verdicts WHERE battle_id = ? AND labeller = ? AND source = 'vote'",
                    [assignment.battle_id, labeller])
        now = utcnow()
        for criterion, verdict in verdicts.items():
            if source == "review":
                execute(f"INSERT INTO campaign_verdicts ({columns}) VALUES (?, ?, ?, 'review', NULL, ?, ?, ?)",
                        [assignment.campaign_id, assignment.battle_id, labeller, criterion, verdict, now])
                continue
            # a vote's verdict takes its vote id from the vote written just before, in this transaction
            if not execute(f"INSERT INTO campaign_verdicts ({columns}) SELECT ?, battle_id, voter, 'vote', vote_id, "
                           "?, ?, ? FROM votes WHERE battle_id = ? AND voter = ? RETURNING criterion",
                           [assignment.campaign_id, criterion, verdict, now, assignment.battle_id, labeller]):
                raise CampaignError("The vote these verdicts belong to was not written; nothing was kept.")

    def criterion_judgements(self, campaign_id: str | None = None,
                             criterion: str | None = None) -> dict[str, dict[str, dict[str, str]]]:
        """criterion -> battle -> labeller -> verdict, over votes and reviews (what agreement is
        computed from); narrowed to one campaign and one criterion when given. A verdict counts
        only while the vote or review it came with exists."""
        judged: dict[str, dict[str, dict[str, str]]] = {}
        for name, battle_id, labeller, verdict in self.store.execute(
                f"SELECT d.criterion, d.battle_id, d.labeller, d.verdict FROM campaign_verdicts d "
                f"WHERE {_VERDICT_KEPT} AND (? IS NULL OR d.campaign_id = ?) AND (? IS NULL OR d.criterion = ?) "
                "ORDER BY d.criterion, d.battle_id, d.labeller", [campaign_id, campaign_id, criterion, criterion]):
            judged.setdefault(name, {}).setdefault(battle_id, {})[labeller] = verdict
        return judged

    def criterion_votes(self, criterion: str, voter: str | None = None, since: datetime | None = None,
                        before: datetime | None = None, campaign_id: str | None = None) -> list[tuple]:
        """A criterion's verdicts given with votes, as the scoreboard reads votes: (battle_id,
        model_a, model_b, verdict as the outcome, identity_leak, voter, created_at), oldest first,
        narrowed by whichever filters are given. Reviews are left out, as in the overall ratings."""
        return self.store.execute(
            "SELECT v.battle_id, v.model_a, v.model_b, d.verdict, v.identity_leak, v.voter, v.created_at "
            "FROM campaign_verdicts d JOIN votes v ON v.vote_id = d.vote_id "
            "WHERE d.source = 'vote' AND d.criterion = ? AND (? IS NULL OR v.voter = ?) "
            "AND (?::TIMESTAMPTZ IS NULL OR v.created_at >= ?) AND (?::TIMESTAMPTZ IS NULL OR v.created_at < ?) "
            "AND (? IS NULL OR v.campaign_id = ?) ORDER BY v.created_at",
            [criterion, voter, voter, since, since, before, before, campaign_id, campaign_id])

    def verdicts_of(self, battle_id: str) -> dict[str, dict[str, str]]:
        """labeller -> criterion -> verdict on one battle (kept ones only)."""
        found: dict[str, dict[str, str]] = {}
        for labeller, name, verdict in self.store.execute(
                f"SELECT d.labeller, d.criterion, d.verdict FROM campaign_verdicts d WHERE {_VERDICT_KEPT} "
                "AND d.battle_id = ? ORDER BY d.labeller, d.criterion", [battle_id]):
            found.setdefault(labeller, {})[name] = verdict
        return found

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

    def slot_counts(self, campaign_id: str) -> tuple[int, int, int, int, int]:
        """Prompts, slots, done slots, claimed slots, and prompts with every slot done."""
        prompts, slots, done, claimed = self.store.execute(
            "SELECT count(DISTINCT prompt_id), count(*), count(*) FILTER (WHERE status = 'done'), "
            "count(*) FILTER (WHERE status = 'claimed') FROM campaign_slots WHERE campaign_id = ?",
            [campaign_id])[0]
        complete = self.store.execute(
            "SELECT count(*) FROM (SELECT prompt_id FROM campaign_slots WHERE campaign_id = ? "
            "GROUP BY prompt_id HAVING bool_and(status = 'done')) AS complete", [campaign_id])[0][0]
        return int(prompts), int(slots), int(done), int(claimed), int(complete)

    def per_labeller(self, campaign_id: str) -> dict[str, dict[str, int]]:
        """Votes and reviews per labeller, by name."""
        per: dict[str, dict[str, int]] = {}
        for who, kind, n in self.store.execute(
                "SELECT voter, 'votes', count(*) FROM votes WHERE campaign_id = ? GROUP BY voter "
                "UNION ALL SELECT labeller, 'reviews', count(*) FROM campaign_reviews WHERE campaign_id = ? "
                "GROUP BY labeller", [campaign_id, campaign_id]):
            per.setdefault(who, {"votes": 0, "reviews": 0})[kind] = int(n)
        return dict(sorted(per.items()))

    def judgements(self, campaign_id: str) -> dict[str, dict[str, str]]:
        """battle -> labeller -> outcome, over the campaign's votes and reviews."""
        judged: dict[str, dict[str, str]] = {}
        for battle_id, voter, outcome in self.store.execute(
                "SELECT battle_id, voter, outcome FROM votes WHERE campaign_id = ? "
                "UNION ALL SELECT battle_id, labeller, outcome FROM campaign_reviews WHERE campaign_id = ?",
                [campaign_id, campaign_id]):
            judged.setdefault(battle_id, {})[voter] = outcome
        return judged


def _key(assignment: Assignment) -> list[str | int]:
    return [assignment.campaign_id, assignment.prompt_id, assignment.slot]


def _assignment(execute: Execute, campaign_id: str, prompt_id: str, slot: int, kind: str,
                battle_id: str | None, resumed: bool) -> Assignment:
    prompt = execute("SELECT prompt FROM campaign_prompts WHERE campaign_id = ? AND prompt_id = ?",
                     [campaign_id, prompt_id])[0][0]
    return Assignment(campaign_id, prompt_id, slot, kind, prompt, battle_id, resumed)


def _campaign(row: tuple) -> Campaign:
    data = dict(zip(_CAMPAIGN_COLUMNS, row[:-1]))
    data["contestants"] = json.loads(data["contestants"])
    data["reasons"] = json.loads(data["reasons"])
    data["criteria"] = json.loads(data["criteria"] or "[]")
    data["criteria_required"] = bool(data["criteria_required"])
    data["reviewers"] = json.loads(data["reviewers"] or "[]")
    return Campaign(**data, prompts=int(row[-1]))
