"""Harvest rules: which votes become training data, and in what shape. Pure functions.

The rules (docs/harvest.md says the same for people):

* A vote for A or B is *decisive*. The winner's whole conversation up to the voted (last)
  turn becomes one SFT example in trl's ``{"messages": [...]}`` format, answers exactly as the
  voter read them (no thinking text: it was never judged).
* The same vote becomes one preference pair ``{"prompt", "chosen", "rejected"}`` (trl's
  conversational preference format) when both sides answered the same conversation, i.e. the
  messages before the last answer are identical and the two answers differ. That holds for
  single-turn battles; in a multi-turn battle each side saw its own earlier answers, so it gives
  SFT data only.
* A tie gives nothing by default (``ties="skip"``); with ``ties="both"`` both answers become
  SFT examples (the voter found them equally good) and never a pair.
* "Both bad" never gives data: there is no answer to imitate and no better side.
* A *repair* (the voter's own better answer, kept with the vote) replaces what the vote would
  give. Decisive vote: SFT = the winner's conversation with the repair as its last answer;
  pairs (single-turn) chosen = repair, rejected = the loser's answer, and where the repair
  differs from the winner's answer a second pair, rejected = the winner's (original) answer.
  Tie or both bad: SFT = the shared conversation with the repair as its answer, pairs chosen =
  repair and each answer rejected (both were judged no better than each other, and the voter
  wrote a better one), whatever ``ties`` says; in a multi-turn battle the two sides answered
  different conversations, so a tie's or a both-bad repair gives nothing ("repair without a
  shared conversation"). Pairs never hold the same answer twice. Every other rule (leaks,
  unfinished answers, exclusions, the judge filter) applies as without a repair.
* Never harvested: battles with an identity leak (the vote may not have been blind), battles
  not in the voted state (errors, interruptions), any answer that did not finish
  (``finish_reason`` other than ``stop``: cut off by the token limit, or aborted), empty answers,
  and battles an admin excluded by hand.
* ``judge_agrees_only``: keep a vote only when the LLM judge reached the same outcome on the
  battle (a vote with no judge verdict is then left out, with that reason).
* Duplicates (same conversation after whitespace normalisation) are kept once, the oldest vote
  first; the others are counted as duplicates.
* Mixing: rows from the previous rounds and from a base dataset are added after the new rows and
  deduplicated against them, so a round is the full training set of its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

TiePolicy = Literal["skip", "both"]


@dataclass(frozen=True)
class HarvestRules:
    """The knobs of a harvest. Defaults are the conservative choice."""

    ties: TiePolicy = "skip"
    judge_agrees_only: bool = False
    include_multi_turn: bool = True      # multi-turn battles give SFT examples (never pairs)
    include_previous_rounds: bool = True  # mix every earlier round's rows into this one
    base_dataset: str | None = None       # a trl-format file mixed in too (e.g. the original SFT set)


@dataclass(frozen=True)
class VotedBattle:
    """One battle with its vote: what the rules look at."""

    battle_id: str
    vote_id: str
    outcome: str                          # model_a | model_b | tie | both_bad
    model_a: str
    model_b: str
    conversation_a: list[dict[str, Any]]
    conversation_b: list[dict[str, Any]]
    finish_reasons_a: list[str | None] = field(default_factory=list)
    finish_reasons_b: list[str | None] = field(default_factory=list)
    status: str = "voted"
    identity_leak: bool = False
    judge_outcome: str | None = None      # model_a | model_b | tie, None: not judged / no verdict
    excluded: str | None = None           # an admin's reason for leaving it out
    voter: str = ""
    created_at: Any = None
    repair: str | None = None             # the voter's own better answer (plain text)
    repair_original: str | None = None    # the preferred answer it replaced (None: tie, both bad)
    repaired_by: str | None = None
    repaired_at: Any = None


@dataclass(frozen=True)
class SourcedRow:
    """A harvested row and where it came from (kept beside the data, not in it)."""

    row: dict[str, Any]
    battle_id: str
    vote_id: str
    side: str                              # model_a | model_b | pair | repair | repair>model_a | repair>model_b


@dataclass
class Harvest:
    sft: list[SourcedRow] = field(default_factory=list)
    preference: list[SourcedRow] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)     # battle_id -> why
    duplicates: int = 0

    @property
    def used_vote_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for item in (*self.sft, *self.preference):
            seen.setdefault(item.vote_id, None)
        return list(seen)

    def counts(self) -> dict[str, int]:
        reasons: dict[str, int] = {}
        for reason in self.excluded.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        return {"sft": len(self.sft), "preference": len(self.preference),
                "votes_used": len(self.used_vote_ids), "excluded": len(self.excluded),
                "duplicates": self.duplicates, **{f"excluded: {k}": v for k, v in sorted(reasons.items())}}


def exclusion_reason(battle: VotedBattle, rules: HarvestRules) -> str | None:
    """Why a battle gives no data at all, or None."""
    if battle.excluded:
        return "excluded by hand"
    if battle.status != "voted":
        return f"battle {battle.status}"
    if battle.identity_leak:
        return "identity leak"
    repaired = bool(battle.repair and battle.repair.strip())
    if battle.outcome == "both_bad" and not repaired:
        return "both bad"
    if battle.outcome == "tie" and rules.ties == "skip" and not repaired:
        return "tie"
    if not _complete(battle.conversation_a, battle.finish_reasons_a) or \
            not _complete(battle.conversation_b, battle.finish_reasons_b):
        return "unfinished answer"
    if repaired and repair_conversation(battle) is None:
        return "repair without a shared conversation"
    if rules.judge_agrees_only:
        if battle.judge_outcome is None:
            return "no judge verdict"
        if battle.judge_outcome != battle.outcome:
            return "judge disagrees"
    if not rules.include_multi_turn and _user_turns(battle.conversation_a) > 1:
        return "multi-turn"
    return None


def harvest(battles: Sequence[VotedBattle], rules: HarvestRules) -> Harvest:
    """Applies the rules to battles (oldest first); the result says what each vote gave."""
    result = Harvest()
    seen_sft: set[str] = set()
    seen_pairs: set[str] = set()
    for battle in battles:
        reason = exclusion_reason(battle, rules)
        if reason:
            result.excluded[battle.battle_id] = reason
            continue
        if battle.repair and battle.repair.strip():
            _harvest_repair(battle, result, seen_sft, seen_pairs)
            continue
        sides = ["model_a", "model_b"] if battle.outcome == "tie" else [battle.outcome]
        for side in sides:
            messages = _clean(battle.conversation_a if side == "model_a" else battle.conversation_b)
            key = content_key(messages)
            if key in seen_sft:
                result.duplicates += 1
                continue
            seen_sft.add(key)
            result.sft.append(SourcedRow({"messages": messages}, battle.battle_id, battle.vote_id, side))
        if battle.outcome in ("model_a", "model_b"):
            pair = preference_pair(battle)
            if pair is not None:
                key = content_key(pair)
                if key in seen_pairs:
                    result.duplicates += 1
                else:
                    seen_pairs.add(key)
                    result.preference.append(SourcedRow(pair, battle.battle_id, battle.vote_id, "pair"))
    return result


def preference_pair(battle: VotedBattle) -> dict[str, Any] | None:
    """trl conversational preference row, or None when the sides answered different histories."""
    a, b = _clean(battle.conversation_a), _clean(battle.conversation_b)
    if not a or not b or a[:-1] != b[:-1] or a[-1]["role"] != "assistant" or b[-1]["role"] != "assistant":
        return None
    chosen, rejected = (a, b) if battle.outcome == "model_a" else (b, a)
    if content_key(chosen[-1]) == content_key(rejected[-1]):
        return None  # the same answer twice teaches no preference
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


def repair_conversation(battle: VotedBattle) -> list[dict[str, Any]] | None:
    """The conversation the repair answers, with the repair as its last answer: the winner's
    (decisive vote), or the one both sides answered (tie, both bad; None when they answered
    different conversations: a multi-turn battle)."""
    a, b = _clean(battle.conversation_a), _clean(battle.conversation_b)
    if battle.outcome in ("model_a", "model_b"):
        base = a if battle.outcome == "model_a" else b
    elif a and b and a[:-1] == b[:-1]:
        base = a
    else:
        return None
    if not base or base[-1]["role"] != "assistant":
        return None
    return [*base[:-1], {"role": "assistant", "content": (battle.repair or "").strip()}]


def repair_pairs(battle: VotedBattle) -> list[tuple[str, dict[str, Any]]]:
    """(side rejected, pair) with the repair chosen: the loser's answer first, then the winner's
    where the repair differs from it (decisive vote), or each answer (tie, both bad). Only when
    both sides answered the same conversation (single-turn), as for preference_pair."""
    a, b = _clean(battle.conversation_a), _clean(battle.conversation_b)
    repaired = repair_conversation(battle)
    if repaired is None or not a or not b or a[:-1] != b[:-1] or a[-1]["role"] != "assistant" \
            or b[-1]["role"] != "assistant":
        return []
    if battle.outcome in ("model_a", "model_b"):
        loser = "model_b" if battle.outcome == "model_a" else "model_a"
        order = [loser, battle.outcome]
    else:
        order = ["model_a", "model_b"]
    chosen = repaired[-1]
    pairs, seen = [], {content_key(chosen)}
    for side in order:
        rejected = (a if side == "model_a" else b)[-1]
        key = content_key(rejected)
        if key in seen:
            continue  # the same answer on both sides teaches no preference
        seen.add(key)
        pairs.append((f"repair>{side}", {"prompt": repaired[:-1], "chosen": [chosen], "rejected": [rejected]}))
    return pairs


def _harvest_repair(battle: VotedBattle, result: Harvest, seen_sft: set[str], seen_pairs: set[str]) -> None:
    messages = repair_conversation(battle)
    assert messages is not None  # exclusion_reason checked it
    key = content_key(messages)
    if key in seen_sft:
        result.duplicates += 1
    else:
        seen_sft.add(key)
        result.sft.append(SourcedRow({"messages": messages}, battle.battle_id, battle.vote_id, "repair"))
    for side, pair in repair_pairs(battle):
        key = content_key(pair)
        if key in seen_pairs:
            result.duplicates += 1
            continue
        seen_pairs.add(key)
        result.preference.append(SourcedRow(pair, battle.battle_id, battle.vote_id, side))


def mix(new_rows: Sequence[dict[str, Any]], earlier: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """New rows first, then earlier rows not already present; returns (rows, duplicates dropped)."""
    seen = {content_key(r) for r in new_rows}
    rows, dropped = list(new_rows), 0
    for row in earlier:
        key = content_key(row)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        rows.append(row)
    return rows, dropped


def content_key(value: Any) -> str:
    """Identity of a row for deduplication: whitespace-normalised, order of keys ignored."""
    return hashlib.sha256(json.dumps(_normalise(value), sort_keys=True).encode()).hexdigest()


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


def _clean(conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in conversation]


def _complete(conversation: list[dict[str, Any]], finish_reasons: list[str | None]) -> bool:
    answers = [m for m in conversation if m.get("role") == "assistant"]
    if not answers or any(not isinstance(m.get("content"), str) or not m["content"].strip() for m in answers):
        return False
    if len(finish_reasons) < len(answers):
        return False
    return all(reason == "stop" for reason in finish_reasons[:len(answers)])


def _user_turns(conversation: list[dict[str, Any]]) -> int:
    return sum(1 for m in conversation if m.get("role") == "user")
