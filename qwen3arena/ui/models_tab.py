"""The Models tab: serving status, contestants and their health, the vLLM log on failure.

It names models, so its content is fetched only when someone opens the tab or presses
Refresh: nothing here is part of the page the arena first loads.
"""

from __future__ import annotations

import gradio as gr

from qwen3arena.api import Actions, ServingStatus
from qwen3arena.errors import Refused
from qwen3arena.hardware import describe_kernels


def _summary(status: ServingStatus) -> str:
    lines = [f"**Start-up:** {status.startup}", f"**CPU:** {status.cpu}"]
    if status.vllm_state == "disabled":
        lines.append("**vLLM:** disabled in the configuration")
    else:
        lines.append(f"**vLLM:** {status.vllm_state} — {status.vllm_message} (`{status.vllm_url}`, "
                     f"pid {status.vllm_pid})")
        if status.vllm_state == "ready":
            lines.append(f"**vLLM kernels loaded:** {describe_kernels(status.kernels)}")
    lines.append(f"**Contestants up:** {status.contestants_up} of {len(status.contestants)}")
    return "\n\n".join(lines)


def build_models_tab(actions: Actions) -> gr.Tab:
    with gr.Tab("Models", id="models") as tab:
        gr.Markdown("### Serving\nThe vLLM server, the contestants the arena can draw, and their health.")
        summary = gr.Markdown("Press Refresh to load the status.")
        table = gr.Dataframe(headers=["model", "kind", "status", "endpoint"], interactive=False,
                             wrap=True)
        log_tail = gr.Code(label="vLLM log (last lines)", language=None, visible=False)
        with gr.Row():
            refresh = gr.Button("Refresh")
            restart = gr.Button("Restart vLLM", variant="stop")

        def show(status: ServingStatus) -> tuple:
            rows = [[c.name, c.kind, c.status, c.endpoint] for c in status.contestants]
            return _summary(status), rows, gr.update(value=status.log_tail, visible=bool(status.log_tail))

        def load() -> tuple:
            return show(actions.serving_status())

        def restart_server() -> tuple:
            try:
                status = actions.restart_server()
            except Refused as exc:
                gr.Warning(str(exc))
                return load()
            gr.Info("Restarting vLLM; it takes a minute on a CPU.")
            return show(status)

        # the API of these actions: /models_status, /restart_vllm (api.remote)
        outputs = [summary, table, log_tail]
        refresh.click(load, None, outputs, api_visibility="private")
        tab.select(load, None, outputs, api_visibility="private")
        restart.click(restart_server, None, outputs, api_visibility="private")
    return tab
