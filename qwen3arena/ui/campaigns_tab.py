"""The Campaigns tab (admins): create a labelling campaign, follow its progress, per-labeller
counts and agreement between labellers. It names contestants, so it is filled only when an
admin opens it, and every handler is admin-only (ui/app.py wraps the whole tab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from qwen3arena.campaigns import (
    CampaignError,
    CampaignService,
    PromptFileError,
    load_shipped,
    parse_prompt_jsonl,
    shipped_prompt_sets,
)
from qwen3arena.runtime import Runtime


def _agreement_text(service: CampaignService, campaign_id: str) -> str:
    p = service.progress(campaign_id)
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
    return "\n".join(lines)


def build_campaigns_tab(runtime: Runtime) -> gr.Tab:
    service = runtime.campaigns
    settings = runtime.settings.campaigns
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
        create = gr.Button("Create campaign", variant="primary", elem_id="campaign-create")
        message = gr.Markdown(elem_id="campaign-message")
        table = gr.Dataframe(headers=["campaign", "status", "prompts", "judgements done", "contestants"],
                             interactive=False, wrap=True, elem_id="campaign-table")
        with gr.Row():
            chosen = gr.Dropdown(label="Campaign", choices=[], elem_id="campaign-chosen")
            refresh = gr.Button("Refresh", elem_id="campaign-refresh")
            toggle = gr.Button("Close / reopen", elem_id="campaign-toggle")
        details = gr.Markdown(elem_id="campaign-details")

        def rows() -> tuple[list[list[Any]], Any]:
            data, choices = [], []
            for c in service.list_campaigns():
                p = service.progress(c.campaign_id)
                data.append([c.name, c.status, c.prompts, f"{p.done}/{p.slots}", ", ".join(c.contestants)])
                choices.append((c.name, c.campaign_id))
            return data, gr.update(choices=choices, value=choices[-1][1] if choices else None)

        def on_open() -> tuple:
            names = runtime.pool.names()
            return (gr.update(choices=names, value=names), *rows())

        def create_campaign(name_v, source_v, shipped_v, file_v, contestants_v, votes_v, overlap_v, limit_v,
                            rubric_v, reasons_v, request: gr.Request) -> tuple:
            try:
                if source_v == "upload":
                    if not file_v:
                        raise PromptFileError("Upload a JSONL file of prompts first.")
                    prompts = parse_prompt_jsonl(Path(file_v).read_text(encoding="utf-8", errors="replace"),
                                                 settings.max_prompts)
                    origin = Path(file_v).name
                else:
                    prompts = load_shipped(shipped_v or "", settings.max_prompts)
                    origin = shipped_v
                if limit_v:
                    prompts = prompts[: int(limit_v)]
                campaign = service.create(
                    name_v, prompts, list(contestants_v or []), runtime.pool.names(), int(votes_v or 1),
                    int(overlap_v or 1), rubric_v, [r for r in (reasons_v or "").split(",")],
                    created_by=request.username or None, prompt_source=origin)
            except (PromptFileError, CampaignError) as exc:
                return (f"⚠️ {exc}".replace("\n", "  \n"), *rows(), gr.update())
            data, choice = rows()
            return (f"✅ Campaign **{campaign.name}** created with {campaign.prompts} prompts.", data, choice,
                    _agreement_text(service, campaign.campaign_id))

        def show(campaign_id: str | None) -> str:
            return _agreement_text(service, campaign_id) if campaign_id else ""

        def toggle_status(campaign_id: str | None) -> tuple:
            if not campaign_id:
                return "⚠️ Choose a campaign.", *rows()
            campaign = service.get(campaign_id)
            service.set_status(campaign_id, "closed" if campaign.status == "open" else "open")
            return show(campaign_id), *rows()

        tab.select(on_open, None, [contestants, table, chosen], api_visibility="private")
        refresh.click(rows, None, [table, chosen], api_name="campaigns_list")
        create.click(create_campaign, [name, source, shipped, upload, contestants, votes, overlap, limit, rubric,
                                       reasons], [message, table, chosen, details], api_name="campaign_create")
        chosen.change(show, [chosen], [details], api_name="campaign_progress")
        toggle.click(toggle_status, [chosen], [details, table, chosen], api_name="campaign_toggle")
    return tab
