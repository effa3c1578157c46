"""The Train tab: launch Unsloth LoRA runs, watch them live, stop them, manage checkpoints.

Everything it shows comes from the TrainingRunner and the store (server-side), so a run keeps
going when the page closes and any page re-attaches to it. It names checkpoints, so its lists
are filled when the tab opens, never in the page the arena first loads.
"""

from __future__ import annotations

import dataclasses
import html
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import yaml

from qwen3arena.config import REPO_ROOT, ConfigError
from qwen3arena.runtime import Runtime
from qwen3arena.serve import AdapterError
from qwen3arena.train import (
    ALL_PROJECTIONS, OPTIMS, PACKED_ON_CPU, DatasetError, LengthStats, LoraTrainConfig, RunRejected, TrainingFailed,
    grouping_multiple, length_stats, load_conversations, load_preferences, render_preference_preview, render_preview,
)

SHIPPED_DATA = REPO_ROOT / "data" / "sft"
ACTIVE = ("queued", "running")
BATCHING_CHOICES = [("Padded rows", "padded"), ("Grouped by length", "grouped"), ("Packed (GPU)", "packed")]
OPTIMIZER_LABELS = {"adamw_torch_fused": "AdamW, fused (fastest)", "adamw_torch": "AdamW",
                    "adamw_8bit": "AdamW 8-bit (bitsandbytes, GPU)", "paged_adamw_8bit": "Paged AdamW 8-bit (GPU)"}
OPTIMIZER_CHOICES = [(OPTIMIZER_LABELS[name], name) for name in OPTIMS]  # a new optimizer needs a label


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _datasets(runtime: Runtime) -> list[str]:
    """Shipped sets, uploads, and every round's data (datasets/rounds/round-NNN/*.jsonl)."""
    uploads = runtime.settings.home / "datasets"
    files = sorted(SHIPPED_DATA.glob("*.jsonl"))
    if uploads.exists():
        files += sorted(p for p in uploads.glob("*") if p.is_file())
        files += [p for p in sorted(uploads.glob("rounds/round-*/*.jsonl")) if p.name != "sources.jsonl"]
    return [str(p) for p in files]


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


@dataclasses.dataclass
class TrainForm:
    """The fields another tab may fill (the Data tab's "Train round N")."""

    tab: gr.Tab
    name: gr.Textbox
    dataset: gr.Dropdown
    method: gr.Radio
    parent: gr.Dropdown
    round: gr.Number
    lr: gr.Number
    message: gr.Markdown


def build_train_tab(runtime: Runtime) -> TrainForm:
    runner = runtime.runner
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
                    round_no = gr.Number(None, label="Round (lineage, optional)", precision=0, elem_id="train-round")
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
                        four_bit = gr.Checkbox(False, label="4-bit (QLoRA, GPU only)", interactive=_cuda())
                        beta = gr.Number(0.1, label="DPO beta", minimum=0)
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
                join = gr.Checkbox(True, label="Join the arena when the run finishes")
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

        def form_config(name_v, base_v, dataset_v, rank_v, alpha_v, dropout_v, targets_v, lr_v, epochs_v,
                        steps_v, batch_v, accum_v, len_v, seed_v, answers_v, batching_v, four_v, wandb_v,
                        project_v, wandb_run_v, method_v, parent_v, round_v, beta_v, optim_v) -> LoraTrainConfig:
            if not base_v:
                raise RunRejected("Choose a base model.")
            if not dataset_v:
                raise RunRejected("Choose or upload a dataset.")
            if not targets_v:
                raise RunRejected("Choose at least one target module.")
            if parent_v and runtime.adapter_path(parent_v) is None:
                raise RunRejected(f"Continue from checkpoint: {parent_v!r} is not a registered LoRA checkpoint.")
            return LoraTrainConfig(
                name=(name_v or "").strip(), base_model=base_v, dataset=dataset_v, output_dir="",
                rank=int(rank_v), alpha=int(alpha_v), dropout=float(dropout_v), target_modules=list(targets_v),
                learning_rate=float(lr_v), num_train_epochs=float(epochs_v), max_steps=int(steps_v),
                per_device_train_batch_size=int(batch_v), gradient_accumulation_steps=int(accum_v),
                max_length=int(len_v), seed=int(seed_v), answers_only=bool(answers_v),
                batching=batching_v or "padded", optim=optim_v or "adamw_torch_fused",
                load_in_4bit=bool(four_v), wandb=bool(wandb_v), wandb_project=project_v or "qwen3arena",
                wandb_run_name=wandb_run_v or None, method=method_v or "sft", beta=float(beta_v or 0.1),
                parent=parent_v or None, round=int(round_v) if round_v and int(round_v) > 0 else None,
                init_adapter=runtime.adapter_path(parent_v),
            )

        form_inputs = [name, base, dataset, rank, alpha, dropout, targets, lr, epochs, max_steps, batch, accum,
                       max_length, seed, answers_only, batching, four_bit, use_wandb, wandb_project, wandb_run,
                       method, parent, round_no, beta, optim]

        def preview(*values) -> tuple:
            try:
                config = form_config(*values)
                dpo = config.method == "dpo"
                rows = load_preferences(config.dataset) if dpo else load_conversations(config.dataset)
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(config.base_model)
            except (RunRejected, DatasetError) as exc:
                return f"⚠️ {exc}", "", ""
            except OSError as exc:
                return f"⚠️ Base model {values[1]!r} cannot be loaded here: {exc}", "", ""
            box = '<pre style="white-space:pre-wrap;border:1px solid #ddd;padding:8px;border-radius:6px">'
            parts = []
            if dpo:
                for prompt, chosen, rejected in render_preference_preview(rows, tokenizer):
                    parts.append(
                        f'{box}<span style="opacity:.45" title="prompt">{html.escape(prompt)}</span>'
                        f'<span style="background:#dcfce7" title="chosen">{html.escape(chosen)}</span>\n'
                        f'<span style="background:#fee2e2" title="rejected">{html.escape(rejected)}</span></pre>')
                legend = ("<p>Pairs as the model sees them: faded the prompt, "
                          "<span style='background:#dcfce7'>chosen</span> and "
                          "<span style='background:#fee2e2'>rejected</span> answers.</p>")
            else:
                for masked, trained in render_preview(rows, tokenizer, config.answers_only):
                    parts.append(
                        f'{box}<span style="opacity:.45" title="no loss">{html.escape(masked)}</span>'
                        f'<span style="background:#fef3c7" title="trained">{html.escape(trained)}</span></pre>')
                legend = ("<p>Rows as the model sees them (chat template applied). "
                          "<span style='background:#fef3c7'>Highlighted</span>: trained; faded: masked (no loss).</p>")
            cfg = yaml.safe_dump({k: v for k, v in dataclasses.asdict(config).items() if k != "output_dir"},
                                 sort_keys=False)
            cmd = (f"cat > run.yaml <<'EOF'\n{cfg}output_dir: runs/{config.name or 'NAME'}\nEOF\n"
                   "python -m qwen3arena.train run.yaml")
            status = f"✅ {len(rows)} rows, all valid."
            if config.batching == "packed" and not _cuda():
                status += f" ⚠️ {PACKED_ON_CPU}"
            if not dpo:
                stats = length_stats(rows, tokenizer, config.max_length, config.per_device_train_batch_size,
                                     grouped_multiple=grouping_multiple(config, _cuda()))
                status += " " + _lengths_note(stats, len(rows), config)
            return status, legend + "".join(parts), cmd

        def start(*values) -> tuple:
            taken = {m.name for m in runtime.store.list_models()}
            try:
                config = form_config(*values[:-1])
                run = runner.submit(config, join_arena=bool(values[-1]), taken_names=taken)
            except (RunRejected, DatasetError) as exc:
                return (f"⚠️ {exc}", gr.update(), gr.Timer(active=True))
            queued = len(runner.queued())
            note = f"✅ Run `{run.run_id}` queued" + (f" (behind {queued - 1} other run(s))." if queued > 1 else ".")
            return note, gr.update(choices=_run_choices(), value=run.run_id), gr.Timer(active=True)

        def on_upload(file: Any) -> tuple:
            if file is None:
                return gr.update(), ""
            src = Path(file if isinstance(file, str) else file.name)
            target_dir = runtime.settings.home / "datasets"
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{src.name}"
            shutil.copyfile(src, target)
            try:
                rows = load_conversations(target)
            except DatasetError as exc:
                target.unlink(missing_ok=True)
                return gr.update(), f"⚠️ {exc}"
            return gr.update(choices=_datasets(runtime), value=str(target)), f"✅ {src.name}: {len(rows)} rows."

        def _run_choices() -> list[tuple[str, str]]:
            return [(f"{r.run_id} · {r.name} · {r.status}", r.run_id) for r in runner.runs(30)]

        def monitor(run_id: str | None) -> tuple:
            runs = runner.runs(30)
            table = [[r.run_id, r.name, r.status, r.metrics.get("steps", ""),
                      f"{r.metrics['final_loss']:.4f}" if r.metrics.get("final_loss") is not None else "",
                      r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else ""] for r in runs]
            if not run_id and runs:
                run_id = runs[0].run_id
            progress = runner.progress(run_id) if run_id else None
            active = any(r.status in ACTIVE for r in runs)
            if progress is None:  # no run yet
                return ("No runs yet.", _bar(0, ""), pd.DataFrame({"step": [], "loss": []}), "", table,
                        gr.update(choices=_run_choices(), value=None), gr.Timer(active=active))
            run, last = progress.run, progress.last
            lines = [f"**{run.name}** — {run.status}" + (" (stopping…)" if progress.stopping else "")]
            if last:
                margin = (f" · reward margin {last['rewards_margins']:.3f} · pairs right "
                          f"{last.get('rewards_accuracies', 0):.0%}") if "rewards_margins" in last else ""
                lines.append(f"step {last['step']}/{last['total']} · loss {last['loss']:.4f}{margin} · "
                             f"lr {last.get('lr') or 0:.2e} · {last.get('tokens_per_s') or 0:,.0f} tokens/s · "
                             f"elapsed {_duration(last.get('elapsed_s'))} · ETA {_duration(last.get('remaining_s'))}")
            elif run.status == "running":
                lines.append("loading the model…")
            lines += [f"ℹ️ {note}" for note in progress.notes]
            if run.error:
                lines.append(f"⚠️ {run.error}")
            if run.wandb:
                link = run.wandb if run.wandb.startswith("http") else f"`{run.wandb}` (offline; `wandb sync` it later)"
                lines.append(f"W&B: {link}")
            if run.status in ("succeeded", "stopped") and (Path(run.output_dir) / "adapter_config.json").exists():
                lines.append(f"Adapter: `{run.output_dir}`")
            label = f"{last['step']}/{last['total']}" if last else run.status
            curve = pd.DataFrame({"step": [e["step"] for e in progress.steps],
                                  "loss": [e["loss"] for e in progress.steps]})
            return ("\n\n".join(lines), _bar(progress.fraction, label), curve, progress.log_tail, table,
                    gr.update(choices=_run_choices(), value=run_id), gr.Timer(active=active))

        def stop(run_id: str | None) -> str:
            if not run_id:
                return "⚠️ Choose a run."
            return runner.stop(run_id)

        def reuse(run_id: str | None) -> tuple:
            """Fills the form with an earlier run's arguments, under a new checkpoint name."""
            keep = tuple(gr.update() for _ in form_inputs)
            if not run_id:
                return ("⚠️ Choose a run.", *keep)
            try:
                c = runner.settings_of(run_id, {m.name for m in runtime.store.list_models()})
            except (RunRejected, ConfigError) as exc:
                return (f"⚠️ {exc}", *keep)
            values = [c.name, c.base_model, c.dataset, c.rank, c.alpha, c.dropout, c.target_modules,
                      c.learning_rate, c.num_train_epochs, c.max_steps, c.per_device_train_batch_size,
                      c.gradient_accumulation_steps, c.max_length, c.seed, c.answers_only,
                      c.batching, c.load_in_4bit, c.wandb, c.wandb_project,
                      c.wandb_run_name or "", c.method,
                      c.parent if c.parent and runtime.store.get_model(c.parent) else "", c.round, c.beta,
                      c.optim]
            return (f"✅ Settings of run `{run_id}` loaded under the new name `{c.name}`; change what you "
                    "want, then Preview or Start.", *values)

        def checkpoint_rows() -> tuple:
            rows, names = [], []
            for m in runtime.store.list_models():
                if m.kind != "adapter":
                    continue
                meta = m.metadata
                names.append(m.name)
                in_arena = "yes" if m.name in runtime.pool.names() else "no"
                loss = meta.get("final_loss")
                rows.append([m.name, in_arena, m.base_model, Path(meta.get("dataset") or "").name,
                             meta.get("round") or "", meta.get("parent") or "",
                             f"{loss:.4f}" if isinstance(loss, float) else "",
                             m.created_at.strftime("%Y-%m-%d %H:%M")])
            return rows, gr.update(choices=names)

        def add_to_arena(name_v: str | None) -> tuple:
            record = runtime.store.get_model(name_v) if name_v else None
            if record is None:
                return ("⚠️ Choose a checkpoint.", *checkpoint_rows())
            try:
                runtime.add_adapter(record.name, record.path)
            except AdapterError as exc:
                return (f"⚠️ {exc}", *checkpoint_rows())
            return (f"✅ {record.name} is in the arena.", *checkpoint_rows())

        def remove_from_arena(name_v: str | None) -> tuple:
            try:
                runtime.remove_adapter(name_v or "")
            except AdapterError as exc:
                return (f"⚠️ {exc}", *checkpoint_rows())
            return (f"✅ {name_v} left the arena (its votes stay).", *checkpoint_rows())

        def export(name_v: str | None):
            if not name_v:
                yield "⚠️ Choose a checkpoint."
                return
            yield f"⏳ Merging {name_v} into a 16-bit model…"
            try:
                out = runtime.export_checkpoint(name_v)
            except (AdapterError, TrainingFailed) as exc:
                yield f"⚠️ {exc}"
                return
            yield f"✅ Exported to `{out}` (serve it with `vllm serve {out}` or import it into Ollama)."

        def on_open(dataset_v: str | None) -> tuple:
            bases = [p for p in [runtime.base_path] if p]
            datasets = _datasets(runtime)
            keep = dataset_v if dataset_v in datasets else None  # filled by the Data tab
            return (gr.update(choices=bases, value=bases[0] if bases else None),
                    gr.update(choices=datasets, value=keep or (datasets[0] if datasets else None)),
                    gr.update(choices=["", *(m.name for m in runtime.store.list_models() if m.kind == "adapter")]),
                    *monitor(None), *checkpoint_rows())

        monitor_outputs = [run_status, bar, loss_plot, log_tail, runs_table, run_choice, timer]
        tab.select(on_open, [dataset], [base, dataset, parent, *monitor_outputs, checkpoints, checkpoint],
                   api_visibility="private")
        preview_btn.click(preview, form_inputs, [form_message, preview_html, command], api_name="train_preview")
        start_btn.click(start, [*form_inputs, join], [form_message, run_choice, timer], api_name="train_start")
        upload.upload(on_upload, [upload], [dataset, form_message], api_visibility="private")
        timer.tick(monitor, [run_choice], monitor_outputs, api_visibility="private", show_progress="hidden")
        refresh_btn.click(checkpoint_rows, None, [checkpoints, checkpoint], api_name="checkpoints")
        run_choice.input(monitor, [run_choice], monitor_outputs, api_visibility="private")
        stop_btn.click(stop, [run_choice], [form_message], api_name="train_stop")
        reuse_btn.click(reuse, [run_choice], [form_message, *form_inputs], api_name="train_reuse")
        arena_btn.click(add_to_arena, [checkpoint], [checkpoint_message, checkpoints, checkpoint],
                        api_name="checkpoint_to_arena")
        remove_btn.click(remove_from_arena, [checkpoint], [checkpoint_message, checkpoints, checkpoint],
                         api_name="checkpoint_from_arena")
        export_btn.click(export, [checkpoint], [checkpoint_message], api_name="checkpoint_export")
    return TrainForm(tab=tab, name=name, dataset=dataset, method=method, parent=parent, round=round_no, lr=lr,
                     message=form_message)
