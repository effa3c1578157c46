"""The Models tab: serving status, contestants and their health, the vLLM log on failure.

It names models, so its content is fetched only when someone opens the tab or presses
Refresh: nothing here is part of the page the arena first loads.
"""

from __future__ import annotations

import gradio as gr

from qwen3arena.hardware import cpu_info, describe_kernels
from qwen3arena.runtime import Runtime


def build_models_tab(runtime: Runtime) -> gr.Tab:
    with gr.Tab("Models", id="models") as tab:
        gr.Markdown("### Serving\nThe vLLM server, the contestants the arena can draw, and their health.")
        summary = gr.Markdown("Press Refresh to load the status.")
        table = gr.Dataframe(headers=["model", "kind", "status", "endpoint"], interactive=False,
                             wrap=True)
        log_tail = gr.Code(label="vLLM log (last lines)", language=None, visible=False)
        with gr.Row():
            refresh = gr.Button("Refresh")
            restart = gr.Button("Restart vLLM", variant="stop")

        def load() -> tuple:
            lines = [f"**Start-up:** {runtime.progress}", f"**CPU:** {cpu_info().summary()}"]
            tail = ""
            if runtime.server is not None:
                status = runtime.server.status()
                lines.append(f"**vLLM:** {status.state} — {status.message} (`{status.url}`, pid {status.pid})")
                if status.state == "ready":
                    lines.append(f"**vLLM kernels loaded:** {describe_kernels(list(status.kernels))}")
                tail = status.log_tail
            else:
                lines.append("**vLLM:** disabled in the configuration")
            health = runtime.pool.health()
            kinds = {m.name: m.kind for m in runtime.store.list_models()}
            rows = [[name, kinds.get(name, "?"), state, runtime.pool.get(name).endpoint.base_url]
                    for name, state in health.items()]
            lines.append(f"**Contestants up:** {sum(s == 'up' for s in health.values())} of {len(health)}")
            return "\n\n".join(lines), rows, gr.update(value=tail, visible=bool(tail))

        def restart_server() -> tuple:
            if runtime.server is None:
                gr.Warning("vLLM serving is disabled in the configuration.")
            else:
                gr.Info("Restarting vLLM; it takes a minute on a CPU.")
                runtime.restart_server()
            return load()

        outputs = [summary, table, log_tail]
        refresh.click(load, None, outputs, api_name="models_status")
        tab.select(load, None, outputs, api_visibility="private")
        restart.click(restart_server, None, outputs, api_name="restart_vllm")
    return tab
