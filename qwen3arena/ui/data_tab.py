"""The Data tab: browse voted battles, build the next round's dataset, follow the lineage.

It calls the application layer (qwen3arena.api.Actions) and the Harvester's read-only views; every
rule lives below. The filters and rules are forms bound to BattleFilters' and HarvestRules'
fields by name (ui.forms). It names models (the battles are voted, so revealed), so it fills
only when an admin opens it.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pandas as pd

from qwen3arena.api import Actions, typed  # noqa: E402
from qwen3arena.errors import Refused  # noqa: E402
from qwen3arena.harvest import BattleFilters, HarvestRules, LineageEntry, lineage_frame  # noqa: E402
from qwen3arena.ui.forms import Form  # noqa: E402
from qwen3arena.ui.plots import figure_panel, interval_errors, message_figure, new_figure, panel  # noqa: E402
from qwen3arena.ui.render import chat_styles, code_span, safe_chatbot  # noqa: E402
from qwen3arena.ui.train_tab import TrainTab  # noqa: E402

OUTCOME_LABELS = [("A better", "model_a"), ("B better", "model_b"), ("tie", "tie"), ("both bad", "both_bad")]
BATTLE_COLUMNS = ["battle", "voted", "voter", "model A", "model B", "vote", "turns", "category", "judge",
                  "excluded", "repaired", "prompt"]
ROUND_COLUMNS = ["round", "built", "by", "votes", "SFT rows", "preference pairs", "parent", "directory"]


def _lineage_plot(entries: list[LineageEntry]):
    """Rating with its 95% interval per checkpoint, by round; a line from each parent."""
    rated = [e for e in entries if e.rating is not None]
    fig, ax = new_figure(7, 3.2)
    if not rated:
        ax.text(0.5, 0.5, "No rated checkpoints yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    by_name = {e.checkpoint: e for e in rated}
    for e in rated:
        parent = by_name.get(e.parent or "")
        if parent is not None:
            ax.plot([parent.round, e.round], [parent.rating, e.rating], color="#9ca3af", lw=1, zorder=1)
    for i, e in enumerate(rated):
        x = e.round + (i % 5 - 2) * 0.04  # keep checkpoints of one round apart
        ax.errorbar([x], [e.rating], yerr=interval_errors([e.rating], [e.lower], [e.upper]), fmt="o", capsize=4,
                    zorder=2)
        ax.annotate(e.checkpoint, (x, e.rating), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("round")
    ax.set_ylabel("rating (95% CI)")
    ax.set_xticks(sorted({e.round for e in rated}))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def lineage_panels(entries: list[LineageEntry]) -> tuple[Any, pd.DataFrame]:
    """The lineage plot and table, each failing alone with a message (ui.plots)."""
    table, failed = panel("lineage table", lambda: lineage_frame(entries), pd.DataFrame())
    figure = figure_panel("lineage", lambda: _lineage_plot(entries))
    return figure, (pd.DataFrame({"problem": [failed]}) if failed else table)


def _chat(conversation: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in conversation if m.get("role") in ("user", "assistant")]


def build_data_tab(actions: Actions, train: TrainTab | None, tabs: gr.Tabs) -> gr.Tab:
    with gr.Tab("Data", id="data") as tab:
        gr.Markdown("### Votes → the next round\nBrowse voted battles, leave bad ones out, then build the "
                    "next round's SFT and preference data from the winning answers (rules: docs/harvest.md).")
        with gr.Row():
            outcomes = gr.CheckboxGroup(OUTCOME_LABELS, label="Vote", elem_id="data-outcomes")
            model = gr.Dropdown(label="Model", elem_id="data-model", allow_custom_value=True)
            voter = gr.Dropdown(label="Voter", elem_id="data-voter", allow_custom_value=True)
            category = gr.Dropdown(label="Category", elem_id="data-category", allow_custom_value=True)
            judge = gr.Dropdown(["any", "agrees", "disagrees", "no verdict"], value="any", label="Judge")
            campaign = gr.Dropdown(label="Campaign", allow_custom_value=True, elem_id="data-campaign")
        battles = gr.Dataframe(headers=BATTLE_COLUMNS, interactive=False, wrap=True, max_height=360,
                               elem_id="data-battles", label="Voted battles (click a row to read it)")
        with gr.Accordion("Battle", open=True):
            battle_id = gr.Textbox(label="Battle id", elem_id="data-battle-id")
            battle_info = gr.Markdown()
            chat_styles()
            with gr.Row():  # answers shown as safe HTML, read-only (ui.render)
                chat_a = safe_chatbot(label="Model A", height=300, elem_id="data-chat-a")
                chat_b = safe_chatbot(label="Model B", height=300, elem_id="data-chat-b")
            # the voter's repair (docs/harvest.md), shown like the answers: safe HTML, read-only
            repair_view = safe_chatbot(label="Repair (the voter's own answer; the harvest trains on it)",
                                       height=200, visible=False, elem_id="data-repair")
            with gr.Row():
                reason = gr.Textbox(label="Why leave it out", placeholder="e.g. wrong facts in both", scale=3)
                exclude_btn = gr.Button("Exclude from harvest", scale=1, elem_id="data-exclude")
                include_btn = gr.Button("Include again", scale=1)
        gr.Markdown("### Build the next round")
        with gr.Row():
            ties = gr.Radio([("skip", "skip"), ("both answers as SFT", "both")], value="skip", label="Ties")
            judge_only = gr.Checkbox(False, label="Only votes the judge agrees with")
            multi_turn = gr.Checkbox(True, label="Multi-turn battles (SFT only)")
            previous = gr.Checkbox(True, label="Mix in earlier rounds")
        with gr.Row():
            base_dataset = gr.Dropdown(label="Also mix in (optional)", allow_custom_value=True,
                                       info="e.g. the original SFT set, so a round does not forget it")
            round_parent = gr.Dropdown(label="Parent checkpoint (what the round's training continues from)", allow_custom_value=True)
        with gr.Row():
            preview_btn = gr.Button("Preview", elem_id="data-preview")
            build_btn = gr.Button("Build the next round", variant="primary", elem_id="data-build")
        round_message = gr.Markdown(elem_id="data-round-message")
        examples = gr.Code(label="Examples (first rows of each file)", language="json", interactive=False)
        rounds_table = gr.Dataframe(headers=ROUND_COLUMNS, interactive=False, elem_id="data-rounds", label="Rounds")
        with gr.Row():
            round_choice = gr.Dropdown(label="Round", elem_id="data-round-choice", allow_custom_value=True)
            round_method = gr.Radio([("SFT", "sft"), ("DPO", "dpo")], value="sft", label="Method")
            train_btn = gr.Button("Train this round", variant="primary", elem_id="data-train",
                                  visible=train is not None)  # no Train tab (no GPU on a Space): CLI only
            hf_repo = gr.Textbox(label="Hub dataset repo (optional)", placeholder="org/name")
            export_btn = gr.Button("Export as HF dataset")
        export_message = gr.Markdown()
        gr.Markdown("### Lineage\nWhich data trained which checkpoint, and how its rating moved (human votes, "
                    "95% intervals). \"better\"/\"worse\": the intervals of child and parent do not overlap.")
        lineage_plot = gr.Plot(elem_id="data-lineage-plot")
        lineage_table = gr.Dataframe(interactive=False, elem_id="data-lineage")

        filter_form = Form(outcomes=outcomes, model=model, voter=voter, category=category, judge=judge,
                           campaign=campaign)
        rule_form = Form(ties=ties, judge_agrees_only=judge_only, include_multi_turn=multi_turn,
                         include_previous_rounds=previous, base_dataset=base_dataset)

        def filters(data: dict) -> BattleFilters:
            return typed(BattleFilters, filter_form.values(data), "filters")

        def rules(data: dict) -> HarvestRules:
            return typed(HarvestRules, rule_form.values(data), "rules")

        filter_inputs = filter_form.components

        def battle_rows(data: dict) -> pd.DataFrame:
            rows = actions.battles(filters(data))
            table = [[r.battle.battle_id, r.battle.created_at.strftime("%Y-%m-%d %H:%M") if r.battle.created_at else "",
                      r.battle.voter, r.battle.model_a, r.battle.model_b, r.battle.outcome,
                      sum(1 for m in r.battle.conversation_a if m.get("role") == "user"), r.category,
                      {True: "agrees", False: "disagrees", None: ""}[r.judge_agrees], r.battle.excluded or "",
                      "✏️" if r.battle.repair else "", r.prompt[:80]] for r in reversed(rows)]
            return pd.DataFrame(table, columns=BATTLE_COLUMNS)

        def show_battle(bid: str | None) -> tuple:
            row = actions.battle(bid or "")
            if row is None:
                return "", [], [], gr.update(label="Model A"), gr.update(label="Model B"), gr.update(visible=False)
            b = row.battle
            info = (f"Vote: **{dict((v, k) for k, v in OUTCOME_LABELS)[b.outcome]}** by `{b.voter}` · "
                    f"category {row.category}" + (" · identity leak" if b.identity_leak else "")
                    + (f" · excluded: {b.excluded}" if b.excluded else ""))
            repair = gr.update(visible=False, value=[])
            if b.repair:
                when = b.repaired_at.strftime("%Y-%m-%d %H:%M") if b.repaired_at else ""
                info += (f"\n\n✏️ Repaired by {code_span(b.repaired_by or b.voter)} {when}: "
                         + ("it replaces the preferred answer." if b.repair_original is not None
                            else "no answer was preferred, so it answers on its own."))
                repair = gr.update(visible=True, value=[{"role": "assistant", "content": b.repair}])
            return (info, _chat(b.conversation_a), _chat(b.conversation_b),
                    gr.update(label=f"A: {b.model_a}"), gr.update(label=f"B: {b.model_b}"), repair)

        def on_select(evt: gr.SelectData, table: pd.DataFrame) -> tuple:
            index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            bid = str(table.iloc[index]["battle"]) if 0 <= index < len(table) else ""
            return (bid, *show_battle(bid))

        def exclude(data: dict) -> tuple:
            bid = data[battle_id]
            try:
                actions.exclude_battle(bid, data[reason] or "excluded")
            except Refused as exc:
                return (f"⚠️ {exc}", battle_rows(data))
            return (f"Battle `{bid}` is left out of every future round (its vote still counts in the ratings).",
                    battle_rows(data))

        def include(data: dict) -> tuple:
            bid = data[battle_id]
            try:
                actions.include_battle(bid)
            except Refused as exc:
                return (f"⚠️ {exc}", battle_rows(data))
            return (f"Battle `{bid}` is back in the harvest.", battle_rows(data))

        def preview(data: dict) -> tuple:
            try:
                plan = actions.preview_round(rules(data), filters(data))
            except Refused as exc:
                return f"⚠️ {exc}", ""
            counts = " · ".join(f"{k}: **{v}**" for k, v in plan.counts.items())
            sample = {"sft.jsonl": plan.sft_sample, "preference.jsonl": plan.preference_sample}
            return (f"Round {plan.round} would hold: {counts} · new votes: **{plan.new_votes}**",
                    json.dumps(sample, indent=1, ensure_ascii=False))

        def build(data: dict) -> tuple:
            try:
                built = actions.build_round(rules(data), filters(data), parent=data[round_parent] or None)
            except Refused as exc:
                return (f"⚠️ {exc}", *round_rows(), build_label())
            return (f"✅ Round {built.round} built from {built.votes} votes: {built.sft_rows} SFT rows, "
                    f"{built.preference_pairs} preference pairs in `{built.directory}`.",
                    *round_rows(built.round), build_label())

        def build_label() -> dict:
            return gr.update(value=f"Build round {actions.next_round()}")

        def round_rows(selected: int | None = None) -> tuple:
            records = actions.rounds()
            data = [[r.round, r.created_at.strftime("%Y-%m-%d %H:%M"), r.created_by or "", len(r.vote_ids),
                     r.counts.get("sft", 0), r.counts.get("preference", 0), r.parent or "", r.directory]
                    for r in reversed(records)]
            choices = [r.round for r in reversed(records)]
            value = selected if selected in choices else (choices[0] if choices else None)
            return pd.DataFrame(data, columns=ROUND_COLUMNS), gr.update(choices=choices, value=value)

        def lineage_view() -> tuple:
            entries, failed = panel("lineage", actions.lineage, [])
            return (message_figure(failed), pd.DataFrame({"problem": [failed]})) if failed else lineage_panels(entries)

        def export(number: Any, repo_v: str | None) -> str:
            if not number:
                return "⚠️ Choose a round."
            try:
                saved = actions.export_round(int(number), repo_v or None)
            except Refused as exc:
                return f"⚠️ {exc}"
            parts = ", ".join(saved.kinds)
            if saved.push_error:
                return (f"⚠️ Saved round {saved.round} ({parts}) to `{saved.path}`; pushing to {saved.repo_id} "
                        f"failed: {saved.push_error}")
            if saved.pushed:
                return f"✅ Saved round {saved.round} to `{saved.path}` and pushed it to {saved.repo_id} ({parts})."
            hint = "; set HF_TOKEN and a repo id to push it to the Hub" if saved.needs_token else ""
            return f"✅ Saved round {saved.round} ({parts}) to `{saved.path}`{hint}."

        def on_open(data: dict) -> tuple:
            choices = actions.filter_choices()
            return (gr.update(choices=["", *choices.models]), gr.update(choices=["", *choices.voters]),
                    gr.update(choices=[("", ""), *choices.campaigns]), gr.update(choices=["", *choices.categories]),
                    battle_rows(data), gr.update(choices=["", *actions.shipped_datasets()]),
                    gr.update(choices=["", *choices.checkpoints]), *round_rows(), *lineage_view(), build_label())

        # the public API of these actions is registered once, by field name (api.remote); the
        # buttons' own events stay private
        private: dict[str, Any] = {"api_visibility": "private"}
        tab.select(on_open, filter_inputs, [model, voter, campaign, category, battles, base_dataset, round_parent,
                                            rounds_table, round_choice, lineage_plot, lineage_table, build_btn],
                   **private)
        for control in filter_form.fields.values():
            control.change(battle_rows, filter_inputs, [battles], show_progress="hidden", **private)
        battles.select(on_select, [battles], [battle_id, battle_info, chat_a, chat_b, chat_a, chat_b, repair_view],
                       **private)
        battle_id.submit(show_battle, [battle_id], [battle_info, chat_a, chat_b, chat_a, chat_b, repair_view],
                         **private)
        exclude_btn.click(exclude, filter_inputs | {battle_id, reason}, [battle_info, battles], **private)
        include_btn.click(include, filter_inputs | {battle_id}, [battle_info, battles], **private)
        preview_btn.click(preview, filter_inputs | rule_form.components, [round_message, examples], **private)
        build_btn.click(build, filter_inputs | rule_form.components | {round_parent},
                        [round_message, rounds_table, round_choice, build_btn], **private).then(
            lineage_view, None, [lineage_plot, lineage_table], **private)
        export_btn.click(export, [round_choice, hf_repo], [export_message], **private)

        if train is not None:
            def to_train(number: Any, method_v: str) -> dict:
                refused = {**train.form.keep(), tabs: gr.Tabs()}
                if not number:
                    return {**refused, train.message: "⚠️ Choose a round."}
                try:
                    config = actions.round_run_config(int(number), method_v)
                except Refused as exc:
                    return {**refused, train.message: f"⚠️ {exc}"}
                note = (f"Round {number} ({method_v.upper()}) filled in: check the settings, then Start training."
                        + (f" It continues from {config.parent}." if config.parent else ""))
                return {**train.form.fill({"name": config.name, "method": config.method, "round": config.round,
                                           "learning_rate": config.learning_rate}),
                        train.form["dataset"]: gr.update(choices=[config.dataset], value=config.dataset),
                        train.form["parent"]: gr.update(choices=["", config.parent or ""], value=config.parent or ""),
                        train.message: note, tabs: gr.Tabs(selected="train")}

            train_btn.click(to_train, [round_choice, round_method],
                            [*train.form.fields.values(), train.message, tabs], **private)
    return tab
