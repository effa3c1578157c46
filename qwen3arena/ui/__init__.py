"""The Gradio web UI: one module per tab; handlers call services and hold no rules."""

from qwen3arena.ui.app import build_app, launch, server_options

__all__ = ["build_app", "launch", "server_options"]
