"""The Train tab: launch Unsloth LoRA runs, watch them live, stop them, manage checkpoints.

It calls the application layer (qwen3arena.api.Actions) and only formats what it returns; the
form is bound to LoraTrainConfig's fields by name (ui.forms). A run keeps going when the page
closes and any page re-attaches to it. It names checkpoints, so its lists are filled when the
tab opens, never in the page the arena first loads.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import gradio as gr
import pandas as pd

from qwen3arena import hardware
from qwen3arena.api import Actions, RunPreview, RunView, cuda_available
from qwen3arena.errors import Refused
from qwen3arena.train import ALL_PROJECTIONS, OPTIMS, LengthStats, LoraTrainConfig
from qwen3arena.ui.forms import Form

BATCHING_CHOICES = [("Padded rows", "padded"), ("Grouped by length", "grouped"), ("Packed (GPU)", "packed")]
OPTIMIZER_LABELS = {"adamw_torch_fused": "AdamW, fused (fastest)", "adamw_torch": "AdamW",
                    "adamw_8bit": "AdamW 8-bit (bitsandbytes, GPU)", "paged_adamw_8bit": "Paged AdamW 8-bit (GPU)"}
OPTIMIZER_CHOICES = [(OPTIMIZER_LABELS[name], name) for name in OPTIMS]  # a new optimizer needs a label


def _gpus_field(count: int) -> gr.Dropdown:
    """The "GPUs" choice (LoraTrainConfig.gpus): 1 to this machine's count and "all" where it has
    several; shown but fixed at 1 (with the reason) where it has one GPU or none, as 4-bit is on a CPU."""
    if count > 1:
        choices = [(str(n), n) for n in range(1, count + 1)] + [(f"All ({count})", "all")]
        return gr.Dropdown(choices, value=1, label="GPUs", elem_id="train-gpus", allow_custom_value=True,
                           info="Data-parallel, one process a GPU (torchrun): batch size is each GPU's, so a "
                                "step sees batch × GPUs × accumulation rows")
    where = "no CUDA GPU (CPU)" if count <= 0 else "one GPU"
    return gr.Dropdown([("1", 1)], value=1, label="GPUs", elem_id="train-gpus", interactive=False,
                       info=f"This machine has {where}: several GPUs need a machine with several")


def _gpus_value(value: Any) -> Any:
    """The field's value as LoraTrainConfig.gpus takes it: a typed-in "2" is 2, "all" stays."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return value


def _lengths_note(stats: LengthStats, total: int, config: LoraTrainConfig) -> str:
    sample = f" (first {stats.measured:,} rows)" if stats.measured < total else ""
    note = (f"Tokens per conversation{sample}: median {stats.median:,}, 95th percentile {stats.p95:,}, "
            f"longest {stats.longest:,}.")
    if stats.truncated:
        note += (f" ⚠️ {stats.truncated:,} row(s) are longer than max length {config.max_length:,} "
                 "and will be cut there.")
    if stats.padding_share >= 0.2:
        note += (f" Padded batches of {config.per_device_train_batch_size} rows would be "
                 f"{stats.padding_share:.0%} padding; grouped by length, {stats.grouped_padding_share:.0%}")
        if config.batching == "padded":
            note += (". Batching \"Grouped by length\" (or \"Packed\" on a GPU) fills each step with about "
                     f"batch × max length tokens instead: an epoch of {stats.measured:,} rows takes "
                     f"{stats.grouped_steps:,} grouped steps instead of {stats.padded_steps:,} padded ones "
                     "(mind the learning rate and warm-up).")
        else:
            note += f"; batching is {config.batching}."
    return note


def _bar(fraction: float, label: str) -> str:
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (f'<div style="border:1px solid #ccc;border-radius:6px;height:22px;position:relative">'
            f'<div style="background:#f97316;height:100%;width:{pct:.1f}%;border-radius:6px"></div>'
            f'<span style="position:absolute;left:8px;top:1px;font-size:13px">{html.escape(label)}</span></div>')


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"



def _preview_html(preview: RunPreview) -> str:
    box = '<pre style="white-space:pre-wrap;border:1px solid #ddd;padding:8px;border-radius:6px">'
    parts = []
    if preview.method == "dpo":
        for prompt, chosen, rejected in preview.samples:
            parts.append(
                f'{box}<span style="opacity:.45" title="prompt">{html.escape(prompt)}</span>'
                f'<span style="background:#dcfce7" title="chosen">{html.escape(chosen)}</span>\n'
                f'<span style="background:#fee2e2" title="rejected">{html.escape(rejected)}</span></pre>')
        legend = ("<p>Pairs as the model sees them: faded the prompt, "
                  "<span style='background:#dcfce7'>chosen</span> and "
                  "<span style='background:#fee2e2'>rejected</span> answers.</p>")
    else:
        for masked, trained in preview.samples:
            parts.append(
                f'{box}<span style="opacity:.45" title="no loss">{html.escape(masked)}</span>'
                f'<span style="background:#fef3c7" title="trained">{html.escape(trained)}</span></pre>')
        legend = ("<p>Rows as the model sees them (chat template applied). "
                  "<span style='background:#fef3c7'>Highlighted</span>: trained; faded: masked (no loss).</p>")
    return legend + "".join(parts)


def _run_lines(view: RunView) -> str:
    last = view.last
    lines = [f"**{view.name}** — {view.status}" + (" (stopping…)" if view.stopping else "")]
    if last:
        margin = (f" · reward margin {last['rewards_margins']:.3f} · pairs right "
                  f"{last.get('rewards_accuracies', 0):.0%}") if "rewards_margins" in last else ""
        lines.append(f"step {last['step']}/{last['total']} · loss {last['loss']:.4f}{margin} · "
                     f"lr {last.get('lr') or 0:.2e} · {last.get('tokens_per_s') or 0:,.0f} tokens/s · "
                     f"elapsed {_duration(last.get('elapsed_s'))} · ETA {_duration(last.get('remaining_s'))}")
    elif view.status == "running":
        lines.append("loading the model…")
    lines += [f"ℹ️ {note}" for note in view.notes]
    if view.error:
        lines.append(f"⚠️ {view.error}")
    if view.wandb:
        link = view.wandb if view.wandb.startswith("http") else f"`{view.wandb}` (offline; `wandb sync` it later)"
        lines.append(f"W&B: {link}")
    if view.adapter:
        lines.append(f"Adapter: `{view.adapter}`")
    if view.arena_note:
        lines.append(f"ℹ️ Not in the arena: {view.arena_note}.")
    elif view.in_arena:
        lines.append("✅ Its checkpoint joined the arena.")
    return "\n\n".join(lines)


@dataclasses.dataclass
class TrainTab:
    """What another tab may fill (the Data tab's "Train round N"): the run form by field name."""

    tab: gr.Tab
    form: Form
    message: gr.Markdown


def build_train_tab(actions: Actions) -> TrainTab:
    with gr.Tab("Train", id="train") as tab:
        gr.Markdown("### Train a LoRA adapter with Unsloth\nPick a base model and a dataset, preview "
                    "what the model will see, start. The run continues if you close the page.")
        with gr.Row():
            with gr.Column(scale=5):
                name = gr.Textbox(label="Checkpoint name", placeholder="e.g. kitchen-round-1", elem_id="train-name")
                base = gr.Dropdown(label="Base model", allow_custom_value=True, elem_id="train-base",
                                   info="The served base (adapters join the arena), a local directory, or a hub id")
                dataset = gr.Dropdown(label="Dataset", allow_custom_value=True, elem_id="train-dataset",
                                      info='JSONL/JSON/CSV/Parquet with "messages" or "prompt" + "completion"')
                upload = gr.File(label="…or upload a dataset", file_types=[".jsonl", ".json", ".csv", ".parquet"],
                                 elem_id="train-upload")
                with gr.Row():
                    method = gr.Radio([("SFT", "sft"), ("DPO (preference pairs)", "dpo")], value="sft",
                                      label="Method", elem_id="train-method")
                    parent = gr.Dropdown(label="Continue from checkpoint", allow_custom_value=True,
                                         info="Its adapter's weights start the run (lineage: parent)",
                                         elem_id="train-parent")
                    round_no = gr.Number(None, label="Round (lineage, optional)", precision=0,
                                         elem_id="train-round")
                with gr.Accordion("Hyperparameters", open=False):
                    with gr.Row():
                        rank = gr.Number(16, label="LoRA rank", precision=0, minimum=1)
                        alpha = gr.Number(32, label="LoRA alpha", precision=0, minimum=1)
                        dropout = gr.Number(0.0, label="LoRA dropout", minimum=0, maximum=0.9)
                    targets = gr.CheckboxGroup(ALL_PROJECTIONS, value=ALL_PROJECTIONS, label="Target modules")
                    with gr.Row():
                        lr = gr.Number(2e-4, label="Learning rate", minimum=0)
                        epochs = gr.Number(1.0, label="Epochs", minimum=0)
                        max_steps = gr.Number(-1, label="Max steps (-1: use epochs)", precision=0,
                                              elem_id="train-max-steps")
                    with gr.Row():
                        batch = gr.Number(8, label="Batch size", precision=0, minimum=1)
                        accum = gr.Number(1, label="Gradient accumulation", precision=0, minimum=1)
                        max_length = gr.Number(1024, label="Max length (tokens)", precision=0, minimum=16)
                    with gr.Row():
                        seed = gr.Number(3407, label="Seed", precision=0)
                        answers_only = gr.Checkbox(True, label="Train on answers only")
                        four_bit = gr.Checkbox(False, label="4-bit (QLoRA, GPU only)", interactive=cuda_available())
                        beta = gr.Number(0.1, label="DPO beta", minimum=0)
                        gpus = _gpus_field(hardware.cuda_device_count())
                    batching = gr.Radio(BATCHING_CHOICES, value="padded", label="Batching", elem_id="train-batching",
                                        info="Padded: a fixed number of rows a step. Grouped and packed fill "
                                             "each step with about batch × max length tokens: much faster on "
                                             "mixed lengths, fewer and larger steps. Packed needs a GPU.")
                    optim = gr.Dropdown(OPTIMIZER_CHOICES, value="adamw_torch_fused", label="Optimizer",
                                        elem_id="train-optim",
                                        info="LoRA's optimizer state is small: 8-bit saves ~100 MB and costs "
                                             "host time every step. On the CPU 8-bit falls back to fused.")
                with gr.Accordion("Weights & Biases", open=False):
                    use_wandb = gr.Checkbox(False, label="Log to W&B (offline unless WANDB_API_KEY is set)")
                    with gr.Row():
                        wandb_project = gr.Textbox("qwen3arena", label="Project")
                        wandb_run = gr.Textbox(label="Run name (default: checkpoint name)")
                join = gr.Checkbox(True, label="Join the arena when the run finishes",
                                   info="A run you stop stays out until you add it (Checkpoints below)")
                with gr.Row():
                    preview_btn = gr.Button("Preview", elem_id="train-preview")
                    start_btn = gr.Button("Start training", variant="primary", elem_id="train-start")
                form_message = gr.Markdown(elem_id="train-message")
                with gr.Accordion("Preview", open=True):
                    preview_html = gr.HTML()
                    command = gr.Code(label="Equivalent command", language="shell", interactive=False)
            with gr.Column(scale=6):
                run_choice = gr.Dropdown(label="Run", elem_id="train-run", allow_custom_value=True)
                run_status = gr.Markdown(elem_id="train-status")
                bar = gr.HTML()
                loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=260,
                                        elem_id="train-loss")
                with gr.Row():
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop")
                    reuse_btn = gr.Button("Reuse this run's settings", elem_id="train-reuse")
                log_tail = gr.Code(label="Log (last lines)", language=None, interactive=False)
                runs_table = gr.Dataframe(headers=["run", "checkpoint", "status", "steps", "final loss", "started"],
                                          interactive=False, label="Runs")
        gr.Markdown("### Checkpoints")
        checkpoints = gr.Dataframe(headers=["checkpoint", "in arena", "base", "dataset", "round", "parent",
                                            "final loss", "registered"], interactive=False, elem_id="checkpoints")
        with gr.Row():
            checkpoint = gr.Dropdown(label="Checkpoint", scale=3)
            arena_btn = gr.Button("Add to arena", scale=1)
            remove_btn = gr.Button("Remove from arena", scale=1)
            export_btn = gr.Button("Export merged 16-bit", scale=1)
            refresh_btn = gr.Button("↻ Refresh", scale=1, elem_id="checkpoints-refresh")
        checkpoint_message = gr.Markdown()
        timer = gr.Timer(2.0, active=False)

        # LoraTrainConfig's fields, by name: adding one is a widget above and a line here
        form = Form(
            name=name, base_model=base, dataset=dataset, method=method, parent=parent, round=round_no,
            rank=rank, alpha=alpha, dropout=dropout, target_modules=targets, learning_rate=lr,
            num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum, max_length=max_length, seed=seed, answers_only=answers_only,
            load_in_4bit=four_bit, beta=beta, batching=batching, optim=optim, wandb=use_wandb,
            wandb_project=wandb_project, wandb_run_name=wandb_run, gpus=gpus,
        )

        def config_of(data: dict) -> LoraTrainConfig:
            fields = form.values(data)
            fields["name"] = (fields.get("name") or "").strip()
            if not fields.get("round"):  # an emptied number field arrives as 0 from the browser
                fields["round"] = None
            if "gpus" in fields:
                fields["gpus"] = _gpus_value(fields["gpus"])
            return actions.run_config(fields)

        def preview(data: dict) -> tuple:
            try:
                config = config_of(data)
                result = actions.preview_run(config)
            except Refused as exc:
                return f"⚠️ {exc}", "", ""
            status = f"✅ {result.rows} rows, all valid."
            status += "".join(f" ⚠️ {warning}" for warning in result.warnings)
            if result.lengths is not None:
                status += " " + _lengths_note(result.lengths, result.rows, config)
            status += "".join(f" 🖥️ {gpu.summary()}." for gpu in result.gpus)
            if result.world_size > 1:
                summary = config.batch_summary(result.world_size)
                status += f" 🖥️ {summary[0].upper()}{summary[1:]}."
            return status, _preview_html(result), result.command

        def start(data: dict) -> tuple:
            try:
                started = actions.start_run(config_of(data), join_arena=bool(data[join]))
            except Refused as exc:
                return (f"⚠️ {exc}", gr.update(), gr.Timer(active=True))
            note = f"✅ Run `{started.run_id}` queued" + (
                f" (behind {started.queued_ahead} other run(s))." if started.queued_ahead else ".")
            return note, gr.update(choices=_run_choices(), value=started.run_id), gr.Timer(active=True)

        def on_upload(file: Any) -> tuple:
            if file is None:
                return gr.update(), ""
            try:
                uploaded = actions.upload_dataset(file if isinstance(file, str) else file.name)
            except Refused as exc:
                return gr.update(), f"⚠️ {exc}"
            return (gr.update(choices=actions.datasets(), value=uploaded.path),
                    f"✅ {uploaded.original_name}: {uploaded.rows} rows.")

        def _run_choices() -> list[tuple[str, str]]:
            return [(f"{r.run_id} · {r.name} · {r.status}", r.run_id) for r in actions.runs(30)]

        def monitor(run_id: str | None) -> tuple:
            runs = actions.runs(30)
            table = [[r.run_id, r.name, r.status, r.steps_done if r.steps_done is not None else "",
                      f"{r.final_loss:.4f}" if r.final_loss is not None else "", r.started_at or ""] for r in runs]
            if not run_id and runs:
                run_id = runs[0].run_id
            active = any(r.active for r in runs)
            try:
                view = actions.run_status(run_id) if run_id else None
            except Refused:
                view = None
            if view is None:  # no run yet
                return ("No runs yet.", _bar(0, ""), pd.DataFrame({"step": [], "loss": []}), "", table,
                        gr.update(choices=_run_choices(), value=None), gr.Timer(active=active))
            label = f"{view.step}/{view.total}" if view.last else view.status
            curve = pd.DataFrame(view.losses or [], columns=["step", "loss"])
            return (_run_lines(view), _bar(view.fraction, label), curve, view.log_tail, table,
                    gr.update(choices=_run_choices(), value=run_id), gr.Timer(active=active))

        def stop(run_id: str | None) -> str:
            if not run_id:
                return "⚠️ Choose a run."
            try:
                return actions.stop_run(run_id).message
            except Refused as exc:
                return f"⚠️ {exc}"

        def reuse(run_id: str | None) -> dict:
            """Fills the form with an earlier run's settings, under a new checkpoint name."""
            if not run_id:
                return {form_message: "⚠️ Choose a run.", **form.keep()}
            try:
                reused = actions.reuse_run(run_id)
            except Refused as exc:
                return {form_message: f"⚠️ {exc}", **form.keep()}
            values = {**reused.config, "parent": reused.config.get("parent") or "",
                      "wandb_run_name": reused.config.get("wandb_run_name") or ""}
            if hardware.cuda_device_count() <= 1:  # the field is fixed at 1 here (a run from a bigger machine)
                values["gpus"] = 1
            return {form_message: f"✅ Settings of run `{run_id}` loaded under the new name "
                                  f"`{reused.config['name']}`; change what you want, then Preview or Start.",
                    **form.keep(), **form.fill(values)}

        def checkpoint_rows() -> tuple:
            views = actions.checkpoints()
            rows = [[c.name, "yes" if c.in_arena else "no", c.base_model, (c.dataset or "").rsplit("/", 1)[-1],
                     c.round or "", c.parent or "", f"{c.final_loss:.4f}" if c.final_loss is not None else "",
                     c.registered] for c in views]
            return rows, gr.update(choices=[c.name for c in views])

        def add_to_arena(name_v: str | None) -> tuple:
            try:
                published = actions.publish(name_v or "")
            except Refused as exc:
                return (f"⚠️ {exc}", *checkpoint_rows())
            return (f"✅ {published.name} is in the arena.", *checkpoint_rows())

        def remove_from_arena(name_v: str | None) -> tuple:
            try:
                actions.unpublish(name_v or "")
            except Refused as exc:
                return (f"⚠️ {exc}", *checkpoint_rows())
            return (f"✅ {name_v} left the arena (its votes stay).", *checkpoint_rows())

        def export(name_v: str | None):
            if not name_v:
                yield "⚠️ Choose a checkpoint."
                return
            yield f"⏳ Merging {name_v} into a 16-bit model…"
            try:
                exported = actions.export_checkpoint(name_v)
            except Refused as exc:
                yield f"⚠️ {exc}"
                return
            yield (f"✅ Exported to `{exported.path}` (serve it with `vllm serve {exported.path}` or import it "
                   "into Ollama).")

        def on_open(dataset_v: str | None) -> tuple:
            bases = actions.served_bases()
            datasets = actions.datasets()
            keep = dataset_v if dataset_v in datasets else None  # filled by the Data tab
            return (gr.update(choices=bases, value=bases[0] if bases else None),
                    gr.update(choices=datasets, value=keep or (datasets[0] if datasets else None)),
                    gr.update(choices=["", *(c.name for c in actions.checkpoints())]),
                    *monitor(None), *checkpoint_rows())

        # the public API of these actions is registered once, by field name (api.remote); the
        # buttons' own events stay private
        private: dict[str, Any] = {"api_visibility": "private"}
        monitor_outputs = [run_status, bar, loss_plot, log_tail, runs_table, run_choice, timer]
        tab.select(on_open, [dataset], [base, dataset, parent, *monitor_outputs, checkpoints, checkpoint], **private)
        preview_btn.click(preview, form.components, [form_message, preview_html, command], **private)
        start_btn.click(start, form.components | {join}, [form_message, run_choice, timer], **private)
        upload.upload(on_upload, [upload], [dataset, form_message], **private)
        timer.tick(monitor, [run_choice], monitor_outputs, show_progress="hidden", **private)
        refresh_btn.click(checkpoint_rows, None, [checkpoints, checkpoint], **private)
        run_choice.input(monitor, [run_choice], monitor_outputs, **private)
        stop_btn.click(stop, [run_choice], [form_message], **private)
        reuse_btn.click(reuse, [run_choice], [form_message, *form.fields.values()], **private)
        arena_btn.click(add_to_arena, [checkpoint], [checkpoint_message, checkpoints, checkpoint], **private)
        remove_btn.click(remove_from_arena, [checkpoint], [checkpoint_message, checkpoints, checkpoint], **private)
        export_btn.click(export, [checkpoint], [checkpoint_message], **private)
    return TrainTab(tab=tab, form=form, message=form_message)
