"""The Arena tab: two anonymous chats side by side, four votes, then the reveal.

Only text and an opaque battle id reach the browser before the vote; the names come back
from Arena.vote(). The tab holds no rules of its own: it calls the Arena service. The chat
panes are outputs only: handlers take the battle id and the new message, and both panes are
drawn from the service's battle (TurnView.chats), never from what the browser sends back.
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from qwen3arena.arena import Arena, TurnView, voter_id
from qwen3arena.errors import Refused

VOTE_LABELS = {
    "model_a": "👈 A is better",
    "model_b": "👉 B is better",
    "tie": "🤝 Tie",
    "both_bad": "👎 Both are bad",
}
OUTCOME_TEXT = {
    "model_a": "you preferred Model A",
    "model_b": "you preferred Model B",
    "tie": "you called it a tie",
    "both_bad": "you found both answers bad",
}
INTRO = (
    "### ⚔️ Blind arena\n"
    "Ask anything: two anonymous models answer side by side. Vote for the better answer; "
    "the names are revealed only after your vote. Keep chatting for several turns if you like — "
    "the vote covers the whole conversation."
)


def _user_text(message: Any) -> str:
    """Gradio may hand over plain text or normalized content blocks."""
    if isinstance(message, str):
        return message
    if isinstance(message, list):
        return "".join(b.get("text", "") for b in message if isinstance(b, dict))
    if isinstance(message, dict):
        return str(message.get("text", ""))
    return str(message or "")


def build_arena_tab(arena: Arena, examples: list[str]) -> None:
    battle_id = gr.State(None)
    gr.Markdown(INTRO)
    status = gr.Markdown("", elem_id="arena-status")
    with gr.Row(equal_height=True):
        chat_a = gr.Chatbot(label="Model A", height=420, elem_id="chat-a", buttons=["copy"])
        chat_b = gr.Chatbot(label="Model B", height=420, elem_id="chat-b", buttons=["copy"])
    with gr.Row(visible=False, elem_id="vote-row") as vote_row:
        vote_buttons = {
            outcome: gr.Button(label, elem_id=f"vote-{outcome.replace('_', '-')}")
            for outcome, label in VOTE_LABELS.items()
        }
    with gr.Row():
        prompt = gr.Textbox(show_label=False, placeholder="Type your message and press Enter",
                            scale=6, elem_id="prompt", max_lines=8)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    with gr.Row():
        regenerate = gr.Button("🔄 Regenerate", elem_id="regenerate", interactive=False)
        new_round = gr.Button("🎲 New round", elem_id="new-round")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label="Try one of these")

    def send_message(text: Any, bid: str | None, request: gr.Request) -> Iterator[tuple]:
        try:
            message = arena.check_prompt(bid, _user_text(text))
            if bid is None:
                bid = arena.start_battle(voter_id(request.username, request.session_hash))
            yield from _stream(arena.play_turn(bid, message), bid)
        except Refused as exc:
            yield (gr.update(), gr.update(), text, bid, gr.update(), f"⚠️ {exc}", gr.update())

    def regenerate_turn(bid: str | None) -> Iterator[tuple]:
        if not bid:
            yield (gr.update(), gr.update(), gr.update(), bid, gr.update(), "⚠️ Nothing to regenerate yet.",
                   gr.update())
            return
        try:
            yield from _stream(arena.regenerate(bid), bid)
        except Refused as exc:
            yield (gr.update(), gr.update(), gr.update(), bid, gr.update(), f"⚠️ {exc}", gr.update())

    def _stream(turns: Iterator[TurnView], bid: str) -> Iterator[tuple]:
        view = None
        for view in turns:  # run to the end: the service frees the battle when its stream ends
            if view.finished:
                continue
            yield (*view.chats, "", bid, gr.update(visible=False), "⏳ Both models are answering...",
                   gr.update(interactive=False))
        if view is None:
            return
        if view.votable:
            note = "✅ Both answers are complete. Vote below, or keep chatting."
        else:
            note = ("⚠️ A model failed, so this battle cannot be voted. Press 🔄 Regenerate to retry "
                    "or 🎲 New round.")
        yield (*view.chats, "", bid, gr.update(visible=view.votable), note, gr.update(interactive=True))

    def cast_vote(outcome: str, bid: str | None, request: gr.Request) -> tuple:
        if not bid:
            return (bid, gr.update(), "⚠️ Start a battle before voting.", gr.update(), gr.update(),
                    gr.update(), gr.update(), gr.update())
        try:
            reveal = arena.vote(bid, outcome, voter_id(request.username, request.session_hash))
        except Refused as exc:
            return (bid, gr.update(visible=False), f"⚠️ {exc}", gr.update(), gr.update(),
                    gr.update(), gr.update(), gr.update())
        text = (f"### Thanks for voting — {OUTCOME_TEXT[reveal.outcome]}.\n"
                f"**Model A** was `{reveal.model_a}` · **Model B** was `{reveal.model_b}`.\n\n"
                "Press 🎲 New round to battle a new pair.")
        if reveal.identity_leak:
            text += ("\n\n_An answer revealed a model's identity, so this vote is kept but left out of "
                     "the ratings._")
        return (None, gr.update(visible=False), text,
                gr.update(label=f"Model A: {reveal.model_a}"), gr.update(label=f"Model B: {reveal.model_b}"),
                gr.update(interactive=False, placeholder="Battle over: press New round"),
                gr.update(interactive=False), gr.update(interactive=False))

    def start_new_round(bid: str | None) -> tuple:
        arena.discard(bid)
        return (None, gr.update(value=[], label="Model A"), gr.update(value=[], label="Model B"),
                gr.update(visible=False), "",
                gr.update(interactive=True, value="", placeholder="Type your message and press Enter"),
                gr.update(interactive=True), gr.update(interactive=False))

    stream_outputs = [chat_a, chat_b, prompt, battle_id, vote_row, status, regenerate]
    send.click(send_message, [prompt, battle_id], stream_outputs, api_name="send", concurrency_limit=None)
    prompt.submit(send_message, [prompt, battle_id], stream_outputs,
                  api_name="send_on_enter", api_visibility="private", concurrency_limit=None)
    regenerate.click(regenerate_turn, [battle_id], stream_outputs, api_name="regenerate", concurrency_limit=None)
    vote_outputs = [battle_id, vote_row, status, chat_a, chat_b, prompt, send, regenerate]
    for outcome, button in vote_buttons.items():
        button.click(_vote_handler(cast_vote, outcome), [battle_id], vote_outputs,
                     api_name=f"vote_{outcome}", concurrency_limit=None)
    new_round.click(start_new_round, [battle_id],
                    [battle_id, chat_a, chat_b, vote_row, status, prompt, send, regenerate],
                    api_name="new_round")


def _vote_handler(cast_vote, outcome: str):
    def vote(bid: str | None, request: gr.Request) -> tuple:
        return cast_vote(outcome, bid, request)

    vote.__name__ = f"vote_{outcome}"
    return vote
