"""The Arena tab: two anonymous chats side by side, four votes, then the reveal.

Only text and an opaque battle id reach the browser before the vote; the names come back
from Arena.vote(). The tab holds no rules of its own: it calls the Arena service. The chat
panes are outputs only: handlers take the new message, the service knows the battle this page
(session) holds, and both panes are drawn from it (TurnView.chats), never from what the browser
sends back; they are ui.render's safe_chatbot panes: answers shown as safe HTML, no editing
control. A vote carries the battle id the page shows, and the service refuses it unless that is
the battle the page holds; every refusal is said on the page.

A vote is recorded at once but the names wait (docs/arena.md, "Undo without bias"): the page
says "Recorded: A is better" with ↩️ Undo for `arena.undo_window_s`, and shows the names when
that window closes (a timer asks the service) or on 👀 Show the models; after that the vote is
final. Admins and labellers (never anonymous visitors) may then repair the preferred answer, or
write one when both were bad: the box appears only after the vote.
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from qwen3arena.arena import Arena, Ballot, Reveal, TurnView, voter_id
from qwen3arena.auth import AccessControl
from qwen3arena.errors import Refused
from qwen3arena.ui.render import chat_styles, code_span, safe_chatbot

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
RECORDED_TEXT = {
    "model_a": "A is better",
    "model_b": "B is better",
    "tie": "a tie",
    "both_bad": "both are bad",
}
REPAIR_ROLES = ("admin", "labeller")
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


def build_arena_tab(arena: Arena, examples: list[str], access: AccessControl | None = None) -> None:
    """`access`: who may repair an answer (admins and labellers); None: everyone (auth off)."""
    # The battle the page shows: an opaque id (it names no model), held by the browser so a vote
    # names the battle its voter sees, even across a restart of the app. The service knows which
    # battle each page holds and refuses a vote for any other (Arena.vote).
    shown = gr.Textbox("", visible=False, elem_id="arena-battle")
    gr.Markdown(INTRO)
    status = gr.Markdown("", elem_id="arena-status")
    chat_styles()
    with gr.Row(equal_height=True):
        chat_a = safe_chatbot(label="Model A", height=420, elem_id="chat-a")
        chat_b = safe_chatbot(label="Model B", height=420, elem_id="chat-b")
    with gr.Row(visible=False, elem_id="vote-row") as vote_row:
        vote_buttons = {
            outcome: gr.Button(label, elem_id=f"vote-{outcome.replace('_', '-')}")
            for outcome, label in VOTE_LABELS.items()
        }
    with gr.Row(visible=False, elem_id="undo-row") as undo_row:
        undo = gr.Button("↩️ Undo", elem_id="vote-undo")
        show = gr.Button("👀 Show the models", elem_id="vote-reveal")
    ticker = gr.Timer(1.0, active=False)  # counts the undo window down, then shows the names
    with gr.Group(visible=False, elem_id="repair-box") as repair_box:
        repair_text = gr.Textbox(label="✏️ Repair: edit the answer you preferred, or write a better one "
                                       "(optional; used as training data)", lines=6, elem_id="repair-text")
        repair_save = gr.Button("💾 Save my answer", elem_id="repair-save")
        repair_note = gr.Markdown("", elem_id="repair-status")
    with gr.Row():
        prompt = gr.Textbox(show_label=False, placeholder="Type your message and press Enter",
                            scale=6, elem_id="prompt", max_lines=8)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    with gr.Row():
        regenerate = gr.Button("🔄 Regenerate", elem_id="regenerate", interactive=False)
        new_round = gr.Button("🎲 New round", elem_id="new-round")
    if examples:
        gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label="Try one of these")

    def refused(exc: Refused) -> str:
        """A refusal is always said: a toast (it outlives the frames of a turn still streaming)
        and the status line."""
        gr.Warning(str(exc))
        return f"⚠️ {exc}"

    def send_message(text: Any, request: gr.Request) -> Iterator[tuple]:
        try:
            voter = voter_id(request.username, request.session_hash)
            yield from _stream(arena.send(request.session_hash or "", voter, _user_text(text)), clear_prompt=True)
        except Refused as exc:  # the message stays in the box
            yield (gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), refused(exc), gr.update())

    def regenerate_turn(request: gr.Request) -> Iterator[tuple]:
        try:
            yield from _stream(arena.regenerate(arena.current(request.session_hash or "")), clear_prompt=False)
        except Refused as exc:
            yield (gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), refused(exc), gr.update())

    def _stream(turns: Iterator[TurnView], clear_prompt: bool) -> Iterator[tuple]:
        view = None
        prompt_update: Any = "" if clear_prompt else gr.update()  # once: what is typed meanwhile stays
        for view in turns:  # run to the end: the service frees the battle when its stream ends
            if view.finished:
                continue
            yield (*view.chats, prompt_update, view.battle_id, gr.update(visible=False),
                   "⏳ Both models are answering...", gr.update(interactive=False))
            prompt_update = gr.update()
        if view is None or not view.finished:
            return  # the battle was closed (a new round): none of it may reach the page again
        if view.votable:
            note = "✅ Both answers are complete. Vote below, or keep chatting."
            cut = [side for side, kind in zip("AB", view.cut_off) if kind]
            if cut:
                note = (f"✂️ Answer {' and '.join(cut)} {'was' if len(cut) == 1 else 'were'} cut off at the arena's "
                        "limit. You may vote on what you see; a cut-off answer is never used as training data.")
        else:
            failed = [f"Model {side}: {error}" for side, error in zip("AB", view.errors) if error]
            note = (f"⚠️ A model failed ({'; '.join(failed)}), so this battle cannot be voted. Press 🔄 Regenerate "
                    "to retry or 🎲 New round.")
        yield (*view.chats, prompt_update, view.battle_id, gr.update(visible=view.votable), note,
               gr.update(interactive=True))

    def may_repair(request: gr.Request) -> bool:
        return access is None or access.user_for(request).role in REPAIR_ROLES

    def voter(request: gr.Request) -> str:
        return voter_id(request.username, request.session_hash)

    keep = gr.update()

    def revealed(reveal: Reveal) -> tuple:
        """The page after the names are shown (the battle id stays: a repair names it)."""
        text = (f"### Thanks for voting — {OUTCOME_TEXT[reveal.outcome]}.\n"
                f"**Model A** was {code_span(reveal.model_a)} · **Model B** was {code_span(reveal.model_b)}.\n\n"
                "Press 🎲 New round to battle a new pair.")
        if reveal.identity_leak:
            text += ("\n\n_An answer revealed a model's identity, so this vote is kept but left out of "
                     "the ratings._")
        return (keep, gr.update(visible=False), gr.update(visible=False), text,
                gr.update(label=f"Model A: {reveal.model_a}"), gr.update(label=f"Model B: {reveal.model_b}"),
                gr.update(interactive=False, placeholder="Battle over: press New round"),
                gr.update(interactive=False), gr.update(interactive=False), gr.Timer(active=False),
                keep, keep, keep)

    def recorded(ballot: Ballot) -> str:
        return (f"✅ Recorded: **{RECORDED_TEXT[ballot.outcome]}** · ↩️ Undo ({ballot.undo_s:.0f} s). "
                "The models are shown when the time is up, or now with 👀 Show the models.")

    def cast_vote(outcome: str, battle: str | None, request: gr.Request) -> tuple:
        try:
            ballot = arena.cast(battle or None, outcome, voter(request), session=request.session_hash or "")  # type: ignore[arg-type]
            if ballot.undo_s <= 0:  # no undo window: the names at once
                return reveal_page(ballot.battle_id, request, repair_from=ballot)
        except Refused as exc:
            return (keep, gr.update(visible=False), keep, refused(exc), keep, keep, keep, keep, keep, keep,
                    keep, keep, keep)
        return (ballot.battle_id, gr.update(visible=False), gr.update(visible=True), recorded(ballot), keep, keep,
                gr.update(interactive=False), gr.update(interactive=False), gr.update(interactive=False),
                gr.Timer(active=True), *repair_fields(ballot, request))

    def repair_fields(ballot: Ballot, request: gr.Request) -> tuple:
        if not may_repair(request):
            return gr.update(visible=False), keep, keep
        return gr.update(visible=True), gr.update(value=ballot.preferred or ""), ""

    def reveal_page(battle: str | None, request: gr.Request, repair_from: Ballot | None = None) -> tuple:
        page = revealed(arena.reveal(battle or None, voter(request), session=request.session_hash or ""))
        if repair_from is not None:
            page = (repair_from.battle_id, *page[1:10], *repair_fields(repair_from, request))
        return page

    def show_models(battle: str | None, request: gr.Request) -> tuple:
        """👀 Show the models: ends the undo window now; the vote is final."""
        try:
            return reveal_page(battle, request)
        except Refused as exc:
            return (keep, keep, keep, refused(exc), keep, keep, keep, keep, keep, gr.Timer(active=False),
                    keep, keep, keep)

    def tick(battle: str | None, request: gr.Request) -> tuple:
        """The undo window's countdown; the names once it is over."""
        ballot = arena.pending(request.session_hash or "")
        if ballot is None:  # undone, revealed, or a new round: nothing to count down
            return (keep,) * 9 + (gr.Timer(active=False), keep, keep, keep)
        if ballot.undo_s > 0:
            return (keep, keep, gr.update(visible=True), recorded(ballot)) + (keep,) * 9
        try:
            return reveal_page(ballot.battle_id, request)
        except Refused as exc:
            return (keep, keep, gr.update(visible=False), refused(exc)) + (keep,) * 5 + (
                gr.Timer(active=False), keep, keep, keep)

    def undo_vote(battle: str | None, request: gr.Request) -> tuple:
        """↩️ Undo: the vote is taken back (before the names were shown); vote again."""
        try:
            undone = arena.undo(battle or None, voter(request), session=request.session_hash or "")
        except Refused as exc:
            return (keep, keep, keep, refused(exc)) + (keep,) * 9
        return (undone.battle_id, gr.update(visible=True), gr.update(visible=False),
                f"↩️ Your vote ({RECORDED_TEXT[undone.outcome]}) was undone. Vote again, or keep chatting.",
                keep, keep, gr.update(interactive=True), gr.update(interactive=True), gr.update(interactive=True),
                gr.Timer(active=False), gr.update(visible=False), gr.update(value=""), "")

    def save_repair(battle: str | None, text: str | None, request: gr.Request) -> str:
        """💾 Save my answer: the repair is kept with the voter's vote (admins and labellers)."""
        try:
            if access is not None:
                access.require_role(request, *REPAIR_ROLES)
            repaired = arena.repair(battle or None, voter(request), text)
        except Refused as exc:
            return refused(exc)
        return (f"💾 Saved your answer ({len(repaired.repair):,} characters) with your vote. You may edit and "
                "save it again.")

    def start_new_round(request: gr.Request) -> tuple:
        arena.close_session(request.session_hash or "")
        return ("", gr.update(value=[], label="Model A"), gr.update(value=[], label="Model B"),
                gr.update(visible=False), "",
                gr.update(interactive=True, value="", placeholder="Type your message and press Enter"),
                gr.update(interactive=True), gr.update(interactive=False), gr.update(visible=False),
                gr.Timer(active=False), gr.update(visible=False), gr.update(value=""), "")

    def redraw(request: gr.Request) -> tuple:
        """The panes again from the server's battle (a browser emptied its copy)."""
        view = arena.view(arena.current(request.session_hash or ""))
        return view.chats if view is not None else (gr.update(), gr.update())

    stream_outputs = [chat_a, chat_b, prompt, shown, vote_row, status, regenerate]
    # trigger_mode "multiple": a message sent while both models answer reaches the service, which
    # refuses it out loud (the default would drop the click without a word)
    send.click(send_message, [prompt], stream_outputs, api_name="send", concurrency_limit=None,
               trigger_mode="multiple")
    prompt.submit(send_message, [prompt], stream_outputs, api_name="send_on_enter",
                  api_visibility="private", concurrency_limit=None, trigger_mode="multiple")
    regenerate.click(regenerate_turn, None, stream_outputs, api_name="regenerate", concurrency_limit=None)
    vote_outputs = [shown, vote_row, undo_row, status, chat_a, chat_b, prompt, send, regenerate, ticker,
                    repair_box, repair_text, repair_note]
    for outcome, button in vote_buttons.items():
        button.click(_vote_handler(cast_vote, outcome), [shown], vote_outputs,
                     api_name=f"vote_{outcome}", concurrency_limit=None)
    # the service decides what a second click, or a click after the reveal, gets (a refusal, said)
    undo.click(undo_vote, [shown], vote_outputs, api_name="vote_undo", concurrency_limit=None)
    show.click(show_models, [shown], vote_outputs, api_name="vote_reveal", concurrency_limit=None)
    ticker.tick(tick, [shown], vote_outputs, api_visibility="private", show_progress="hidden",
                concurrency_limit=None)
    repair_save.click(save_repair, [shown, repair_text], [repair_note], api_name="vote_repair",
                      concurrency_limit=None)
    # a new round closes the old battle in the service, which ends its stream before the page is
    # cleared, so no late frame of it comes back (and no vote can reach it)
    new_round.click(start_new_round, None,
                    [shown, chat_a, chat_b, vote_row, status, prompt, send, regenerate, undo_row, ticker,
                     repair_box, repair_text, repair_note],
                    api_name="new_round")
    for chat in (chat_a, chat_b):
        chat.clear(redraw, None, [chat_a, chat_b], api_visibility="private")


def _vote_handler(cast_vote, outcome: str):
    def vote(battle: str | None, request: gr.Request) -> tuple:
        """`battle`: the battle the page shows (empty from an API caller: the one its session holds)."""
        return cast_vote(outcome, battle, request)

    vote.__name__ = f"vote_{outcome}"
    return vote
