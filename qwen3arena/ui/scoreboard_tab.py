"""The Scoreboard tab: human ratings with intervals, judge ratings and benchmark scores in
separate columns, plots, filters, human-judge agreement, CSV export; judge and EvalScope
runs started from here. Filled when the tab opens (it names models). The "Board" selector shows
a rubric criterion's board instead (ratings from the labellers' verdicts on it, with their
agreement on it)."""

from __future__ import annotations

import time

import gradio as gr
import numpy as np
import pandas as pd

from qwen3arena.jobs import JobRecord  # noqa: E402
from qwen3arena.api import PROMPT_SET, Actions, typed  # noqa: E402
from qwen3arena.errors import Refused  # noqa: E402
from qwen3arena.scoreboard import BoardFilters, Scoreboard  # noqa: E402
from qwen3arena.ui.forms import Form  # noqa: E402
from qwen3arena.ui.plots import figure_panel, interval_errors, new_figure, panel  # noqa: E402



def _judge_text(job: JobRecord | None) -> str:
    """A judge job's state in one line: its last progress line, its summary, or why it ended."""
    if job is None:
        return ""
    if job.active:
        return f"⏳ {job.stage}"
    if job.status == "succeeded":
        return f"✅ {(job.result or {}).get('summary', '')}"
    return f"⚠️ {job.error}" if job.status == "failed" else f"⚠️ {job.status}: {job.error}"


def _interval_plot(board: Scoreboard):
    """Each model's rating with its (asymmetric) 95% interval; style-controlled ones beside."""
    data = board.intervals.dropna().sort_values("rating")
    # at least as tall as the matrices beside it, so a board of few models is readable
    fig, ax = new_figure(7, max(4.5, 0.5 + 0.45 * len(data)))
    if len(data):
        rows = np.arange(len(data), dtype=float)
        styled = board.style.ratings.set_index("model").reindex(data["model"]) if board.style is not None else None
        shift = 0.18 if styled is not None else 0.0
        ax.errorbar(data["rating"], rows + shift,
                    xerr=interval_errors(data["rating"], data["lower"], data["upper"]),
                    fmt="o", color="#f97316", ecolor="#555", capsize=4, label="human votes")
        if styled is not None:
            ax.errorbar(styled["rating"], rows - shift,
                        xerr=interval_errors(styled["rating"], styled["lower"], styled["upper"]),
                        fmt="s", color="#2563eb", ecolor="#93c5fd", capsize=4, label="style-controlled")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(rows, data["model"])
    else:
        ax.text(0.5, 0.5, "no ratings yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("Bradley-Terry rating (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _matrix_plot(matrix: pd.DataFrame, title: str, fmt: str):
    fig, ax = new_figure(5.5, 4.5)
    if matrix.empty:
        ax.text(0.5, 0.5, "no votes yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="RdYlGn" if fmt == ".2f" else "Blues")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    for i in range(len(matrix.index)):
        for j in range(len(matrix.columns)):
            value = matrix.iat[i, j]
            if pd.notna(value):
                ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _criterion_agreement_text(board: Scoreboard) -> str:
    """A criterion's board: how far the labellers agree on it (battles several judged)."""
    a = board.labeller_agreement
    if a is None or not a.items:
        return (f"**Labeller agreement on {board.criterion}:** no battle has two labellers' verdicts yet "
                "(a campaign with overlap gives some).")
    fleiss = f"{a.fleiss:.2f}" if a.fleiss is not None else "n/a"
    lines = [f"**Labeller agreement on {board.criterion}** on {a.items} shared battles ({a.labels} verdicts): "
             f"{a.percent:.0%} pairwise agreement, Fleiss' κ = {fleiss}"]
    for pair in a.pairs:
        kappa = f"{pair.kappa:.2f}" if pair.kappa is not None else "n/a"
        lines.append(f"- {pair.labellers[0]} × {pair.labellers[1]}: {pair.items} battles, {pair.percent:.0%} agree, "
                     f"Cohen's κ = {kappa}")
    return "\n".join(lines)


def _agreement_text(board: Scoreboard) -> str:
    if board.criterion:
        return _criterion_agreement_text(board)
    a = board.agreement
    if not a["battles"]:
        return "**Human–judge agreement:** no battle has both a human vote and a judge verdict yet."
    lines = [f"**Human–judge agreement** on {a['battles']} battles: {a['agreement']:.0%} agree, "
             f"Cohen's κ = {a['kappa']:.2f}" if a["kappa"] is not None else
             f"**Human–judge agreement** on {a['battles']} battles: {a['agreement']:.0%} agree"]
    for model, m in a["per_model"].items():
        kappa = f", κ {m['kappa']:.2f}" if m["kappa"] is not None else ""
        lines.append(f"- {model}: {m['agreement']:.0%} of {m['battles']}{kappa}")
    return "\n".join(lines)


def build_scoreboard_tab(actions: Actions) -> gr.Tab:
    runtime = actions.runtime
    with gr.Tab("Scoreboard", id="scoreboard") as tab:
        gr.Markdown("### Scoreboard\nHuman votes (Bradley-Terry, 95% intervals, closed form unless chosen "
                    "otherwise; the rank counts the models that are better beyond doubt), the LLM judge, "
                    "and benchmarks — in separate columns, never blended.")
        with gr.Row():
            min_votes = gr.Number(0, label="Minimum votes", precision=0, minimum=0)
            include_ties = gr.Checkbox(True, label="Include ties")
            both_bad = gr.Checkbox(True, label="Count 'both bad' as a tie")
            no_leaks = gr.Checkbox(True, label="Exclude identity leaks")
            style = gr.Checkbox(False, label="Style control (length, markdown)", elem_id="board-style",
                                info="Adds ratings at equal answer style, as Chatbot Arena's style control")
            intervals = gr.Dropdown(["sandwich", "bootstrap"], value="sandwich", label="Intervals",
                                    elem_id="board-intervals")
            reweight = gr.Checkbox(False, label="Reweight pairs", elem_id="board-reweight",
                                   info="Each pair's votes count as one pair: over-sampled pairs do not dominate")
        with gr.Row():
            voter = gr.Textbox(label="Voter (empty: all)")
            since = gr.Textbox(label="From (YYYY-MM-DD)")
            until = gr.Textbox(label="To (YYYY-MM-DD)")
            category = gr.Dropdown(label="Prompt category", allow_custom_value=True, elem_id="board-category")
            campaign = gr.Dropdown(label="Campaign", allow_custom_value=True, elem_id="board-campaign")
            criterion = gr.Dropdown([("overall", "")], value="", label="Board", elem_id="board-criterion",
                                    info="overall: the votes; a criterion: the labellers' verdicts on it")
            refresh = gr.Button("Refresh", variant="primary", elem_id="board-refresh")
            auto = gr.Checkbox(True, label="Refresh every 30 s")
        notes = gr.Markdown(elem_id="board-notes")
        table = gr.Dataframe(interactive=False, wrap=True, elem_id="board-table")
        with gr.Row():
            csv = gr.DownloadButton("Download CSV", elem_id="board-csv")
        with gr.Row():
            ratings_plot = gr.Plot(label="Ratings")
            win_plot = gr.Plot(label="Win rate (row beats column)")
            count_plot = gr.Plot(label="Battles")
        agreement = gr.Markdown()
        with gr.Accordion("LLM judge", open=False):
            judge_info = gr.Markdown()
            with gr.Row():
                judge_battles_btn = gr.Button("Judge voted battles")
            with gr.Row():
                candidate = gr.Dropdown(label="Candidate")
                baseline = gr.Dropdown(label="Baseline")
                judge_prompts_btn = gr.Button(f"Judge the prompt set ({PROMPT_SET.name})")
            judge_log = gr.Markdown()
        with gr.Accordion("Benchmarks (EvalScope, offline)", open=False):
            with gr.Row():
                eval_model = gr.Dropdown(label="Model")
                eval_limit = gr.Number(None, label="Samples per dataset (empty: all)", precision=0)
                eval_btn = gr.Button("Run benchmarks", elem_id="eval-run")
            eval_status = gr.Markdown(elem_id="eval-status")
            eval_log = gr.Code(label="EvalScope log (last lines)", language=None, interactive=False)
        eval_timer = gr.Timer(2.0, active=False)
        judge_timer = gr.Timer(2.0, active=False)
        board_timer = gr.Timer(30.0, active=False)
        job_id = gr.State(None)

        filter_form = Form(min_votes=min_votes, include_ties=include_ties, both_bad_as_tie=both_bad,
                           exclude_identity_leaks=no_leaks, voter=voter, since=since, until=until,
                           campaign=campaign, style_control=style, intervals=intervals,
                           reweight_pairs=reweight, criterion=criterion)

        def load(data: dict) -> tuple:
            try:
                filters = typed(BoardFilters, filter_form.values(data), "filters")
            except Refused as exc:  # a date that is not one, a count that is not a number
                return (f"⚠️ {exc}", gr.update(), gr.update(), gr.update(),
                        gr.update(), gr.update(), gr.update())
            # each part fails alone, with a message in its place (ui.plots)
            board, failed = panel("scoreboard", lambda: actions.scoreboard(filters, data[category] or None), None)
            if board is None:
                return (failed, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update())
            exported, export_failed = panel(
                "CSV export", lambda: actions.export_scoreboard(filters, data[category] or None, board).path, None)
            note = "\n\n".join([f"{board.n_votes} votes rated.", *board.notes, *filter(None, [export_failed])])
            figures = (figure_panel("ratings", lambda: _interval_plot(board)),
                       figure_panel("win-rate", lambda: _matrix_plot(board.win_rates, "Win rate", ".2f")),
                       figure_panel("battle-count", lambda: _matrix_plot(board.battle_counts, "Battles", ".0f")))
            agreement_text, agreement_failed = panel("agreement", lambda: _agreement_text(board), "")
            return (note, board.table, exported, *figures, agreement_failed or agreement_text)

        def on_open() -> tuple:
            names = actions.arena_models()
            judge = runtime.settings.judge
            info = (f"Judge: `{judge.model}` at `{judge.base_url}` (key from `{judge.api_key_env}`). "
                    "Each pair is judged twice with the positions swapped; unparseable replies are excluded, "
                    "never counted as ties; replies are cached, so nothing is paid for twice.")
            pick = gr.update(choices=names, value=names[0] if names else None)
            base = gr.update(choices=names, value=names[-1] if names else None)
            choices = actions.filter_choices()
            return (info, pick, base, gr.update(choices=names, value=names[0] if names else None),
                    gr.update(choices=[("", ""), *((c, c) for c in choices.categories)]),
                    gr.update(choices=[("", ""), *choices.campaigns]))

        def follow_judge(start):
            """Starts a judge job and streams its state until it ends. The job runs on in the
            app if this request is dropped; the tab's timer re-attaches to it."""
            try:
                job = start()
            except Refused as exc:
                yield f"⚠️ {exc}"
                return
            shown = None
            while True:
                job = actions.judge_job(job.job_id)
                text = _judge_text(job)
                if text != shown:
                    shown = text
                    yield text
                if job is None or not job.active:
                    return
                time.sleep(0.5)

        def run_judge_battles():
            yield from follow_judge(actions.judge_battles)

        def run_judge_prompts(candidate_v, baseline_v):
            yield from follow_judge(lambda: actions.judge_prompt_set(candidate_v or "", baseline_v or ""))

        def poll_judge() -> tuple:
            job = actions.judge_job()
            return _judge_text(job), gr.Timer(active=job is not None and job.active)

        def start_eval(model_v, limit_v) -> tuple:
            try:
                job = actions.start_benchmark(model_v or "", int(limit_v) if limit_v else None)
            except Refused as exc:
                return None, f"⚠️ {exc}", gr.Timer(active=False)
            return job.job_id, "⏳ queued", gr.Timer(active=True)

        def poll_eval(job_id: str | None) -> tuple:
            snapshot = actions.benchmark(job_id) if job_id else None
            if snapshot is None:
                return "", "", gr.Timer(active=False)
            text = f"**{snapshot.model}**: {snapshot.status} — {snapshot.stage} ({snapshot.done}/{snapshot.total})"
            if snapshot.error:
                text += f"\n\n⚠️ {snapshot.error}"
            for score in snapshot.scores:
                if score.primary:
                    text += f"\n- {score.dataset} {score.metric}: " + \
                            (f"{score.score:.4f} (n={score.num})" if score.score is not None else f"failed: {score.error}")
            active = snapshot.status in ("queued", "running")
            return text, actions.benchmark_log(snapshot.job_id), gr.Timer(active=active)

        def attach_eval() -> tuple:
            """The newest benchmark job, running or finished (also one of an earlier app process)."""
            latest = actions.benchmark()
            job = latest.job_id if latest is not None else None
            return (job, *poll_eval(job))

        filter_inputs = filter_form.components | {category}
        outputs = [notes, table, csv, ratings_plot, win_plot, count_plot, agreement]
        refresh.click(load, filter_inputs, outputs, api_visibility="private")  # the API: /scoreboard (api.remote)
        tab.select(load, filter_inputs, outputs, api_visibility="private")
        tab.select(lambda on: gr.Timer(active=bool(on)), [auto], [board_timer], api_visibility="private")
        auto.change(lambda on: gr.Timer(active=bool(on)), [auto], [board_timer], api_visibility="private")
        board_timer.tick(load, filter_inputs, outputs, api_visibility="private", show_progress="hidden")
        tab.select(on_open, None, [judge_info, candidate, baseline, eval_model, category, campaign],
                   api_visibility="private")
        tab.select(lambda: gr.update(choices=[("overall", ""), *((c, c) for c in actions.filter_choices().criteria)]),
                   None, [criterion], api_visibility="private")
        # the API of these actions: /judge_battles, /judge_prompt_set, /judge_job, /run_benchmarks, /benchmark
        judge_battles_btn.click(run_judge_battles, None, judge_log, api_visibility="private")
        judge_prompts_btn.click(run_judge_prompts, [candidate, baseline], judge_log, api_visibility="private")
        eval_btn.click(start_eval, [eval_model, eval_limit], [job_id, eval_status, eval_timer], api_visibility="private")
        eval_timer.tick(poll_eval, [job_id], [eval_status, eval_log, eval_timer], api_visibility="private",
                        show_progress="hidden")
        tab.select(attach_eval, None, [job_id, eval_status, eval_log, eval_timer], api_visibility="private")
        tab.select(poll_judge, None, [judge_log, judge_timer], api_visibility="private")
        judge_timer.tick(poll_judge, None, [judge_log, judge_timer], api_visibility="private", show_progress="hidden")
    return tab
