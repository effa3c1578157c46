"""The Label tab: a labeller works through a campaign. Prompts are served (no typing), a
follow-up turn is allowed, each vote takes a reason chip and an optional comment, and the
labeller's own progress is shown. Names are never shown here, not even after a vote; the
page holds no battle id: the server knows which slot the labeller has in hand (and, after a vote,
which battle it was: a server-side gr.State, for the repair box that then appears: the labeller
may edit the preferred answer, or write one when both were bad). The answer
panes are outputs only, drawn from the server's battle (TurnView.chats) or stored review, as
safe_chatbot panes (ui.render: safe HTML, no editing control). Every refusal is said on the page.
A campaign with rubric criteria shows one A / B / tie choice per criterion beside the vote buttons
(hidden with them until both answers are in); a campaign open to named reviewers is listed only
for them."""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from qwen3arena.arena import TurnView, render_pane, voter_id
from qwen3arena.campaigns import MAX_CRITERIA, Assignment, CampaignError, CampaignService
from qwen3arena.errors import Refused
from qwen3arena.ui.arena_tab import VOTE_LABELS, _user_text
from qwen3arena.ui.render import chat_styles, safe_chatbot


def _progress_text(service: CampaignService, campaign_id: str, labeller: str) -> str:
    mine = service.my_progress(campaign_id, labeller)
    return (f"**Your progress:** {mine.done} judged · {mine.available} more prompts open to you "
            f"(campaign: {mine.total} judgements in all)")


# a criterion's verdict, as the labeller picks it (the service takes these values)
VERDICT_CHOICES = [("A is better", "model_a"), ("B is better", "model_b"), ("Tie", "tie")]


def _criteria_updates(names: list[str], required: bool) -> list[Any]:
    """The criterion choices for a campaign: one per criterion, in order, cleared; the rest hidden."""
    need = "required" if required else "optional"
    return [gr.update(visible=True, label=f"{names[i]} ({need})", value=None) if i < len(names)
            else gr.update(visible=False, value=None) for i in range(MAX_CRITERIA)]


def build_label_tab(service: CampaignService) -> gr.Tab:
    with gr.Tab("Label", id="label", elem_id="label-tab") as tab:
        gr.Markdown("### 🏷️ Labelling\nChoose a campaign and press **Next prompt**: two anonymous "
                    "answers appear. Judge them by the rubric, pick a reason, vote. You may ask one "
                    "follow-up question first. You can leave at any time; your prompt waits for you.")
        with gr.Row():
            campaign = gr.Dropdown(label="Campaign", choices=[], elem_id="label-campaign", scale=3)
            refresh = gr.Button("↻ Campaigns", scale=1, elem_id="label-refresh")
        rubric = gr.Markdown(elem_id="label-rubric")
        progress = gr.Markdown(elem_id="label-progress")
        next_btn = gr.Button("▶ Next prompt", variant="primary", elem_id="label-next")
        status = gr.Markdown(elem_id="label-status")
        chat_styles()
        with gr.Row(equal_height=True):
            chat_a = safe_chatbot(label="Answer A", height=380, elem_id="label-chat-a")
            chat_b = safe_chatbot(label="Answer B", height=380, elem_id="label-chat-b")
        with gr.Row():
            follow = gr.Textbox(show_label=False, placeholder="Optional follow-up question", scale=6,
                                elem_id="label-followup", interactive=False)
            send = gr.Button("Ask both", scale=1, elem_id="label-send", interactive=False)
        with gr.Group(visible=False, elem_id="label-vote-box") as vote_box:
            reason = gr.Radio(label="Reason", choices=[], elem_id="label-reason")
            comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="label-comment")
            # the campaign's rubric criteria, named when it is chosen (label_vote_* take them in order)
            criteria = [gr.Radio(VERDICT_CHOICES, label=f"criterion {i}", visible=False,
                                 elem_id=f"label-criterion-{i}") for i in range(1, MAX_CRITERIA + 1)]
            with gr.Row():
                buttons = {o: gr.Button(label, elem_id=f"label-vote-{o.replace('_', '-')}")
                           for o, label in VOTE_LABELS.items()}
        voted = gr.State("")  # the battle of the labeller's last vote (kept on the server)
        with gr.Group(visible=False, elem_id="label-repair-box") as repair_box:
            repair_text = gr.Textbox(label="✏️ Repair: edit the answer you preferred, or write a better one "
                                           "(optional; used as training data)", lines=6,
                                     elem_id="label-repair-text")
            repair_save = gr.Button("💾 Save my answer", elem_id="label-repair-save")
            repair_note = gr.Markdown("", elem_id="label-repair-status")

        def labeller(request: gr.Request) -> str:
            return voter_id(request.username, request.session_hash)

        def refused(exc: Refused) -> str:
            """A toast (it outlives the frames of answers still streaming) and the status line."""
            gr.Warning(str(exc))
            return f"⚠️ {exc}"

        def list_open(request: gr.Request) -> Any:
            views = service.open_for_labellers(labeller(request))  # assigned reviewers: only theirs
            choices = [(v.name, v.campaign_id) for v in views]
            return gr.update(choices=choices, value=choices[0][1] if choices else None)

        def choose(campaign_id: str | None, request: gr.Request) -> tuple:
            if not campaign_id:
                return "No open campaign yet.", "", gr.update(choices=[], value=None)
            try:
                view = service.view(campaign_id, labeller(request))
            except CampaignError as exc:
                return f"⚠️ {exc}", "", gr.update()
            return (f"**Rubric:** {view.rubric}", _progress_text(service, campaign_id, labeller(request)),
                    gr.update(choices=view.reasons, value=None))

        def _frames(assignment: Assignment, views: Iterator[TurnView]) -> Iterator[tuple]:
            view = None
            for view in views:  # run to the end: the service frees the battle when its stream ends
                if view.finished:
                    continue
                yield (*view.chats, gr.update(visible=False), "⏳ Both models are answering...", gr.update(),
                       gr.update(), gr.update(interactive=False), gr.update(interactive=False))
            if view is None or not view.finished:
                return  # the battle was closed: none of it may reach the page again
            if not view.votable:
                failed = "; ".join(f"answer {side}: {error}" for side, error in zip("AB", view.errors) if error)
                note = f"⚠️ A model failed on this prompt ({failed}). Press ▶ Next prompt to try it again."
            elif any(view.cut_off):
                note = (f"✂️ Prompt `{assignment.prompt_id}`: an answer was cut off at the arena's limit; judge "
                        "what you see (a cut-off answer is never used as training data).")
            else:
                note = f"✅ Prompt `{assignment.prompt_id}`: judge the answers, or ask one follow-up first."
            yield (*view.chats, gr.update(visible=view.votable), note, gr.update(), gr.update(value=None),
                   gr.update(interactive=view.votable, value=""), gr.update(interactive=view.votable))

        def next_prompt(campaign_id: str | None, request: gr.Request) -> Iterator[tuple]:
            who = labeller(request)
            keep = (gr.update(), gr.update(), gr.update(visible=False))
            if not campaign_id:
                yield (*keep, "⚠️ Choose a campaign first.", gr.update(), gr.update(), gr.update(), gr.update())
                return
            try:
                assignment = service.next_assignment(campaign_id, who)
                if assignment is None:
                    yield ([], [], gr.update(visible=False), "🎉 Nothing left for you in this campaign. Thank you!",
                           _progress_text(service, campaign_id, who), gr.update(),
                           gr.update(interactive=False), gr.update(interactive=False))
                    return
                if assignment.kind == "review":
                    history_a, history_b = service.history(assignment)
                    yield (render_pane(history_a), render_pane(history_b), gr.update(visible=True),
                           f"✅ Prompt `{assignment.prompt_id}`: these answers were already written; judge them.",
                           _progress_text(service, campaign_id, who), gr.update(value=None),
                           gr.update(interactive=False), gr.update(interactive=False))
                    return
                yield from _frames(assignment, service.play(assignment, who))
            except Refused as exc:
                yield (*keep, refused(exc), gr.update(), gr.update(), gr.update(), gr.update())

        def ask(campaign_id: str | None, text: Any, request: gr.Request) -> Iterator[tuple]:
            who = labeller(request)
            message = _user_text(text).strip()
            keep = (gr.update(), gr.update(), gr.update())
            try:
                current = service.current(campaign_id or "", who)
                if current is None:
                    raise CampaignError("Press ▶ Next prompt first.")
                yield from _frames(current, service.follow_up(campaign_id or "", who, message))
            except Refused as exc:
                yield (*keep, refused(exc), gr.update(), gr.update(), gr.update(), gr.update())

        def cast(outcome: str):
            def vote(campaign_id: str | None, reason_v: str | None, comment_v: str | None,
                     criterion_1: str | None = None, criterion_2: str | None = None, criterion_3: str | None = None,
                     criterion_4: str | None = None, criterion_5: str | None = None, criterion_6: str | None = None,
                     criterion_7: str | None = None, criterion_8: str | None = None,
                     request: gr.Request = None) -> tuple:  # type: ignore[assignment]
                who = labeller(request)
                keep = gr.update()
                picked = (criterion_1, criterion_2, criterion_3, criterion_4, criterion_5, criterion_6, criterion_7,
                          criterion_8)[:MAX_CRITERIA]
                try:
                    # the verdicts in the campaign's criteria order; one past its last is refused, by position
                    names = service.view(campaign_id or "", who).criteria
                    verdicts = {names[i] if i < len(names) else f"criterion_{i + 1}": v for i, v in enumerate(picked)}
                    done = service.vote(campaign_id or "", who, outcome, reason_v, comment_v,  # type: ignore[arg-type]
                                        verdicts=verdicts)
                except Refused as exc:
                    return keep, keep, keep, refused(exc), keep, keep, keep, keep, keep, keep, keep
                saved = ("✅ Saved. Press ▶ Next prompt for the next one.", _progress_text(service, campaign_id, who),
                         gr.update(value=None), gr.update(value=""))
                if done.kind != "battle" or not done.battle_id:  # a review is not a vote: nothing to repair
                    return ([], [], gr.update(visible=False), *saved, "", gr.update(visible=False), keep, "")
                # the answers stay in view for the repair box
                return (keep, keep, gr.update(visible=False), *saved, done.battle_id, gr.update(visible=True),
                        gr.update(value=service.preferred_answer(done.battle_id) or ""), "")
            vote.__name__ = f"label_vote_{outcome}"
            return vote

        frame_outputs = [chat_a, chat_b, vote_box, status, progress, reason, follow, send]
        refresh.click(list_open, None, [campaign], api_name="label_campaigns")
        tab.select(list_open, None, [campaign], api_visibility="private")
        campaign.change(choose, [campaign], [rubric, progress, reason], api_name="label_choose")
        # trigger_mode "multiple": a click while both models answer reaches the service, which
        # refuses it out loud (the default would drop it without a word)
        next_btn.click(next_prompt, [campaign], frame_outputs, api_name="label_next", concurrency_limit=None,
                       trigger_mode="multiple")
        send.click(ask, [campaign, follow], frame_outputs, api_name="label_follow_up", concurrency_limit=None,
                   trigger_mode="multiple")
        follow.submit(ask, [campaign, follow], frame_outputs, api_visibility="private", concurrency_limit=None,
                      trigger_mode="multiple")

        def redraw(campaign_id: str | None, request: gr.Request) -> tuple:
            """The panes again from the server (a browser emptied its copy)."""
            current = service.current(campaign_id or "", labeller(request)) if campaign_id else None
            if current is None:
                return gr.update(), gr.update()
            try:
                history_a, history_b = service.history(current)
            except Refused:
                return gr.update(), gr.update()
            return render_pane(history_a), render_pane(history_b)

        for chat in (chat_a, chat_b):
            chat.clear(redraw, [campaign], [chat_a, chat_b], api_visibility="private")
        for outcome, button in buttons.items():
            button.click(cast(outcome), [campaign, reason, comment, *criteria],
                         [chat_a, chat_b, vote_box, status, progress, reason, comment, voted, repair_box,
                          repair_text, repair_note],
                         api_name=f"label_vote_{outcome}")

        def save_repair(battle_id: str | None, text: str | None, request: gr.Request) -> str:
            """💾 Save my answer: the repair is kept with the labeller's last vote."""
            try:
                repaired = service.repair(battle_id or None, labeller(request), text)
            except Refused as exc:
                return refused(exc)
            return (f"💾 Saved your answer ({len(repaired.repair):,} characters) with your vote. You may edit "
                    "and save it again.")

        def show_criteria(campaign_id: str | None, request: gr.Request) -> list[Any]:
            try:
                view = service.view(campaign_id, labeller(request)) if campaign_id else None
            except Refused:
                view = None
            return _criteria_updates(view.criteria if view else [], bool(view and view.criteria_required))

        campaign.change(show_criteria, [campaign], criteria, api_visibility="private")
        # a new prompt starts with no criterion chosen
        next_btn.click(lambda: [gr.update(value=None)] * MAX_CRITERIA, None, criteria, api_visibility="private")

        repair_save.click(save_repair, [voted, repair_text], [repair_note], api_name="label_repair")
        # the next prompt (or a follow-up) puts the last vote's repair box away
        for button in (next_btn, send):
            button.click(lambda: (gr.update(visible=False), ""), None, [repair_box, repair_note],
                         api_visibility="private")
    return tab
