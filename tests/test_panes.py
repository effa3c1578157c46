"""The chat panes drawn from a battle's server-side state (no server needed)."""

from qwen3arena.arena import render_pane
from qwen3arena.arena.panes import LiveAnswer

TURNS = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]


def test_finished_turns_keep_their_folded_thinking_and_copies_are_fresh():
    pane = render_pane(TURNS, ["why"], LiveAnswer("a1", "why", None, pending=False))
    assert [(m["role"], m["content"]) for m in pane] == [("user", "q1"), ("assistant", "why"), ("assistant", "a1")]
    assert pane[1]["metadata"]["status"] == "done"
    pane[0]["content"] = "edited"
    assert TURNS[0]["content"] == "q1", "the battle's own messages are never handed out"
    assert render_pane(TURNS) == [dict(m) for m in TURNS]


def test_the_turn_in_flight_follows_the_users_message():
    asked = TURNS + [{"role": "user", "content": "q2"}]
    assert render_pane(asked, [None], LiveAnswer("", "", None, pending=True))[-1] == asked[-1]
    streaming = render_pane(asked, [None], LiveAnswer("par", "hmm", None, pending=True))
    assert streaming[-2]["metadata"]["status"] == "pending" and streaming[-1]["content"] == "par"
    failed = render_pane(asked, [None], LiveAnswer("par", "", "the model timed out", pending=False))
    assert failed[-1]["content"] == "⚠️ This model failed: the model timed out."
    # the other side of a failed turn: its answer is shown, though not added to the conversation
    assert render_pane(asked, [None], LiveAnswer("a2", "", None, pending=False))[-1]["content"] == "a2"
