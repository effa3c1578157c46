"""The Campaigns tab (admins): create a labelling campaign (with rubric criteria and assigned
reviewers if wanted), follow its progress, per-labeller counts and agreement between labellers,
overall and per criterion. It names contestants, so it is filled only when an
admin opens it, and every handler is admin-only (ui/app.py wraps the whole tab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from qwen3arena.api import Actions, CampaignDraft, typed
from qwen3arena.campaigns import MAX_CRITERIA, AgreementReport, Progress, shipped_prompt_sets
from qwen3arena.errors import Refused
from qwen3arena.ui.forms import Form


def _split(text: str | None) -> list[str]:
    """A comma-separated form field as a list (the service checks each entry)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _criterion_lines(name: str, a: AgreementReport) -> list[str]:
    if not a.items:
        return [f"- **{name}**: no battle has two labellers' verdicts yet"]
    fleiss = f"{a.fleiss:.2f}" if a.fleiss is not None else "n/a"
    lines = [f"- **{name}**: {a.items} shared battles, {a.percent:.0%} pairwise agreement, Fleiss' κ = {fleiss}"]
    for pair in a.pairs:
        kappa = f"{pair.kappa:.2f}" if pair.kappa is not None else "n/a"
        lines.append(f"  - {pair.labellers[0]} × {pair.labellers[1]}: {pair.items} battles, "
                     f"{pair.percent:.0%} agree, Cohen's κ = {kappa}")
    return lines


def _agreement_text(p: Progress) -> str:
    lines = [f"**Progress:** {p.done} of {p.slots} judgements · {p.complete_prompts} of {p.prompts} prompts "
             f"complete · {p.claimed} in hand"]
    if p.per_labeller:
        lines.append("\n**Per labeller:**")
        lines += [f"- {who}: {c['votes']} votes, {c['reviews']} reviews" for who, c in p.per_labeller.items()]
    a = p.agreement
    if a is None or not a.items:
        lines.append("\n**Agreement:** no battle has been judged by two labellers yet.")
    else:
        fleiss = f"{a.fleiss:.2f}" if a.fleiss is not None else "n/a"
        lines.append(f"\n**Agreement** on {a.items} shared battles ({a.labels} judgements): "
                     f"{a.percent:.0%} pairwise agreement, Fleiss' κ = {fleiss}")
        for pair in a.pairs:
            kappa = f"{pair.kappa:.2f}" if pair.kappa is not None else "n/a"
            lines.append(f"- {pair.labellers[0]} × {pair.labellers[1]}: {pair.items} battles, "
                         f"{pair.percent:.0%} agree, Cohen's κ = {kappa}")
    if p.criteria:
        lines.append("\n**Agreement per criterion** (the labellers' A / B / tie verdicts):")
        for name, report in p.criteria.items():
            lines += _criterion_lines(name, report)
    return "\n".join(lines)


def build_campaigns_tab(actions: Actions) -> gr.Tab:
    settings = actions.runtime.settings.campaigns
    with gr.Tab("Campaigns", id="campaigns", elem_id="campaigns-tab") as tab:
        gr.Markdown("### Labelling campaigns\nA prompt set, the contestants, votes per prompt, a rubric and "
                    "reason chips. Labellers find open campaigns in their Label tab.")
        with gr.Row():
            name = gr.Textbox(label="Name", elem_id="campaign-name")
            source = gr.Radio(["shipped", "upload"], value="shipped", label="Prompts from")
            shipped = gr.Dropdown(shipped_prompt_sets(), value=(shipped_prompt_sets() or [None])[0],
                                  label="Shipped prompt set", elem_id="campaign-shipped")
            upload = gr.File(label="JSONL upload ({\"prompt\": ..., \"id\": ...} per line)",
                             file_types=[".jsonl", ".json", ".txt"], type="filepath", elem_id="campaign-file")
        contestants = gr.CheckboxGroup(label="Contestants", choices=[], elem_id="campaign-contestants")
        with gr.Row():
            votes = gr.Number(1, label="Votes per prompt (battles)", precision=0, minimum=1)
            overlap = gr.Number(2, label="Overlap: labellers per shared battle (1 = none)", precision=0, minimum=1)
            limit = gr.Number(None, label="Use the first N prompts (empty: all)", precision=0)
        rubric = gr.Textbox(label="Rubric", lines=3, value="Which answer is more accurate and more useful?",
                            elem_id="campaign-rubric")
        reasons = gr.Textbox(label="Reason chips (comma-separated)", value=", ".join(settings.default_reasons),
                             elem_id="campaign-reasons")
        with gr.Row():
            criteria = gr.Textbox(label=f"Criteria judged A / B / tie besides the vote (comma-separated lower-case "
                                        f"slugs, at most {MAX_CRITERIA}; empty: none)",
                                  placeholder="accuracy, safety, clarity", elem_id="campaign-criteria", scale=3)
            required = gr.Checkbox(False, label="Criteria required", elem_id="campaign-criteria-required",
                                   info="A vote without every criterion's verdict is refused")
            reviewers = gr.Textbox(label="Reviewers (logins, comma-separated; empty: every labeller)",
                                   elem_id="campaign-reviewers", scale=2)
        create = gr.Button("Create campaign", variant="primary", elem_id="campaign-create")
        message = gr.Markdown(elem_id="campaign-message")
        table = gr.Dataframe(headers=["campaign", "status", "prompts", "judgements done", "contestants",
                                      "criteria", "reviewers"],
                             interactive=False, wrap=True, elem_id="campaign-table")
        with gr.Row():
            chosen = gr.Dropdown(label="Campaign", choices=[], elem_id="campaign-chosen")
            refresh = gr.Button("Refresh", elem_id="campaign-refresh")
            toggle = gr.Button("Close / reopen", elem_id="campaign-toggle")
        details = gr.Markdown(elem_id="campaign-details")

        # CampaignDraft's fields by name (the source radio and the file are read into the draft)
        form = Form(name=name, source=source, shipped=shipped, contestants=contestants, votes_per_prompt=votes,
                    overlap=overlap, limit=limit, rubric=rubric, criteria_required=required)

        def rows() -> tuple[list[list[Any]], Any]:
            campaigns = actions.campaigns()
            data = [[c.name, c.status, c.prompts, f"{c.done}/{c.slots}", ", ".join(c.contestants),
                     ", ".join(c.criteria) + (" (required)" if c.criteria_required else ""),
                     ", ".join(c.reviewers) or "all labellers"] for c in campaigns]
            choices = [(c.name, c.campaign_id) for c in campaigns]
            return data, gr.update(choices=choices, value=choices[-1][1] if choices else None)

        def on_open() -> tuple:
            names = actions.arena_models()
            return (gr.update(choices=names, value=names), *rows())

        def create_campaign(data: dict, request: gr.Request) -> tuple:
            fields = form.values(data)
            file_v = data[upload]
            if fields.get("source") == "upload" and file_v:
                fields["prompts_jsonl"] = Path(file_v).read_text(encoding="utf-8", errors="replace")
                fields["upload_name"] = Path(file_v).name
            fields["reasons"] = _split(data[reasons])
            fields["criteria"], fields["reviewers"] = _split(data[criteria]), _split(data[reviewers])
            try:
                created = actions.create_campaign(typed(CampaignDraft, fields, "campaign"),
                                                  created_by=request.username or None)
            except Refused as exc:
                return (f"⚠️ {exc}".replace("\n", "  \n"), *rows(), gr.update())
            data_rows, choice = rows()
            return (f"✅ Campaign **{created.name}** created with {created.prompts} prompts.", data_rows, choice,
                    _agreement_text(actions.campaign_progress(created.campaign_id)))

        def show(campaign_id: str | None) -> str:
            if not campaign_id:
                return ""
            try:
                return _agreement_text(actions.campaign_progress(campaign_id))
            except Refused as exc:
                return f"⚠️ {exc}"

        def toggle_status(campaign_id: str | None) -> tuple:
            if not campaign_id:
                return "⚠️ Choose a campaign.", *rows()
            try:
                actions.toggle_campaign(campaign_id)
            except Refused as exc:
                return f"⚠️ {exc}", *rows()
            return show(campaign_id), *rows()

        # the API of these actions: /campaigns_list, /campaign_create, /campaign_progress,
        # /campaign_toggle (api.remote)
        private: dict[str, Any] = {"api_visibility": "private"}
        tab.select(on_open, None, [contestants, table, chosen], **private)
        refresh.click(rows, None, [table, chosen], **private)
        create.click(create_campaign, form.components | {upload, reasons, criteria, reviewers},
                     [message, table, chosen, details],
                     **private)
        chosen.change(show, [chosen], [details], **private)
        toggle.click(toggle_status, [chosen], [details, table, chosen], **private)
    return tab
