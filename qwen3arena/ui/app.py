"""Assembles the Gradio app: one module per tab, all state in the Runtime's services."""

from __future__ import annotations

import gradio as gr

from qwen3arena.config import REPO_ROOT
from qwen3arena.runtime import Runtime
from qwen3arena.ui.arena_tab import build_arena_tab
from qwen3arena.ui.data_tab import build_data_tab
from qwen3arena.ui.models_tab import build_models_tab
from qwen3arena.ui.scoreboard_tab import build_scoreboard_tab
from qwen3arena.ui.train_tab import build_train_tab

CSS = """
#vote-row button { font-size: 1.05em; }
footer { display: none !important; }
"""


def _examples() -> list[str]:
    path = REPO_ROOT / "data" / "prompts" / "kitchen.txt"
    return [line for line in path.read_text().splitlines() if line.strip()][:8] if path.exists() else []


def readiness(runtime: Runtime) -> str:
    """A line for the arena that counts models without naming them (it is shown pre-vote)."""
    up = len(runtime.pool.available())
    if runtime.error:
        return "⚠️ The models could not be started. An admin can see why in the Models tab."
    if up >= 2:
        return ""
    return f"⏳ Models are starting ({up} ready so far). The first start builds a small model and takes a few minutes."


def build_app(runtime: Runtime) -> gr.Blocks:
    with gr.Blocks(title=runtime.settings.ui.title) as demo:
        gr.Markdown(f"# {runtime.settings.ui.title}")
        ready_line = gr.Markdown(readiness(runtime), elem_id="readiness")
        timer = gr.Timer(2.0)

        def poll() -> tuple:
            line = readiness(runtime)
            return line, gr.Timer(active=bool(line))

        timer.tick(poll, None, [ready_line, timer], api_visibility="private", show_progress="hidden")
        with gr.Tabs() as tabs:
            with gr.Tab("Arena", id="arena"):
                build_arena_tab(runtime.arena, _examples())
            build_scoreboard_tab(runtime)
            train = build_train_tab(runtime) if runtime.runner is not None else None
            if runtime.harvester is not None:
                build_data_tab(runtime, train, tabs)
            build_models_tab(runtime)
    return demo


def launch(runtime: Runtime, **kwargs) -> gr.Blocks:
    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=8)
    demo.launch(
        server_name=kwargs.pop("server_name", runtime.settings.ui.host),
        server_port=kwargs.pop("server_port", runtime.settings.ui.port),
        css=CSS,
        footer_links=[],
        **kwargs,
    )
    return demo
