"""One side of a battle as its chat pane shows it: pure, text only, no model names.

The server renders both panes from its own battle state and never reads the browser's copy
back, so what a person sees is what the models were sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

THINKING_TITLE = "💭 Thinking"


@dataclass(frozen=True)
class LiveAnswer:
    """The turn in flight on one side, or the last one when a model failed (the conversation
    then ends on the user's message: a failed turn is never added to it)."""

    answer: str
    reasoning: str
    error: str | None
    pending: bool
    note: str | None = None  # shown under the answer (it was cut off at the arena's limit)


def render_pane(messages: Sequence[Mapping[str, Any]], thinking: Sequence[str | None] = (),
                live: LiveAnswer | None = None, notes: Sequence[str | None] = ()) -> list[dict[str, Any]]:
    """Chat messages for one side: each finished turn (its thinking folded above the answer,
    its note below it), then `live` when the conversation ends on an unanswered user message.

    `thinking` and `notes` hold one entry per user turn; pass thinking (and `live.reasoning`)
    empty when thinking is not shown. Fresh dicts: the caller may hand them to a UI that
    mutates them."""
    pane: list[dict[str, Any]] = []
    turn = -1
    for message in messages:
        if message["role"] == "user":
            turn += 1
        elif 0 <= turn < len(thinking) and thinking[turn]:
            pane.append(_thinking(thinking[turn] or "", pending=False))
        pane.append({"role": message["role"], "content": message["content"]})
        if message["role"] == "assistant" and 0 <= turn < len(notes) and notes[turn]:
            pane.append({"role": "assistant", "content": notes[turn]})
    if live is None or not messages or messages[-1]["role"] != "user":
        return pane
    if live.reasoning:
        pane.append(_thinking(live.reasoning, live.pending))
    if live.error:
        pane.append({"role": "assistant", "content": f"⚠️ This model failed: {live.error}."})
    elif live.answer or not live.pending:
        pane.append({"role": "assistant", "content": live.answer})
        if live.note:
            pane.append({"role": "assistant", "content": live.note})
    return pane


def _thinking(text: str, pending: bool) -> dict[str, Any]:
    return {"role": "assistant", "content": text,
            "metadata": {"title": THINKING_TITLE, "status": "pending" if pending else "done"}}
