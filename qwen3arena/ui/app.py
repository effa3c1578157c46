"""Assembles the Gradio app: one module per tab, all state in the Runtime's services.

Roles (qwen3arena/auth): every handler of an admin tab is wrapped by ui.access.restricted,
the Label tab's by the labeller guard; the Arena is open to anyone the app admits. Tabs a
role may not use are also hidden for that session, but hiding is not the protection.
With auth off (no accounts: the local default) everyone is an admin and nothing is hidden.
"""

from __future__ import annotations

import logging

import gradio as gr
from gradio.utils import get_space

from qwen3arena.api import Actions, cuda_available, register_endpoints
from qwen3arena.auth import LOGIN_PATH, LOGOUT_PATH, AccessControl, launch_options, roles_at_least
from qwen3arena.config import REPO_ROOT
from qwen3arena.runtime import Runtime, StartupStep
from qwen3arena.ui.access import restricted
from qwen3arena.ui.arena_tab import build_arena_tab
from qwen3arena.ui.campaigns_tab import build_campaigns_tab
from qwen3arena.ui.data_tab import build_data_tab
from qwen3arena.ui.label_tab import build_label_tab
from qwen3arena.ui.models_tab import build_models_tab
from qwen3arena.ui.scoreboard_tab import build_scoreboard_tab
from qwen3arena.ui.sessions import bound_sessions
from qwen3arena.ui.train_tab import build_train_tab

log = logging.getLogger(__name__)

CSS = """
#vote-row button { font-size: 1.05em; }
footer { display: none !important; }
"""


def _examples() -> list[str]:
    path = REPO_ROOT / "data" / "prompts" / "kitchen.txt"
    return [line for line in path.read_text().splitlines() if line.strip()][:8] if path.exists() else []


STEP_ICONS = {"waiting": "◻️", "running": "⏳", "done": "✅", "reused": "✅", "failed": "❌"}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def _step(step: StartupStep) -> str:
    parts = [step.label]
    if step.state == "reused":
        parts.append("built earlier")
    elif step.total:
        parts.append(f"{step.step}/{step.total}")
    if step.seconds is not None and step.state != "reused":
        parts.append(_duration(step.seconds))
    return f"{STEP_ICONS[step.state]} " + " · ".join(parts)


def readiness(runtime: Runtime) -> str:
    """The arena's line about the models: steps and counts, never a name (it is shown pre-vote)."""
    r = runtime.readiness()
    if r.phase == "ready":
        return ""
    if r.phase == "restarting" and not r.attempt:
        return "⏳ The model server is restarting; battles resume when it is back, usually in a minute or two."
    if r.phase == "restarting":
        return (f"⚠️ The model server crashed and is restarting by itself (attempt {r.attempt} of "
                f"{r.attempts}). Battles resume when it is back, usually in a minute or two; a battle that "
                "was being answered cannot be voted.")
    if r.phase == "crashed":
        return (f"⚠️ The model server crashed and did not come back after {r.attempts} automatic restarts. "
                "An admin can see why, and restart it, in the Models tab.")
    if r.phase == "too_few":
        return (f"⚠️ {r.models_up} {'model is' if r.models_up == 1 else 'models are'} up; a battle needs two. "
                "An admin can add one: a checkpoint from the Train tab, or an endpoint in the configuration.")
    steps = "\n".join(f"- {_step(s)}" for s in r.steps)
    if r.phase == "failed":
        return "⚠️ The models could not be started. An admin can see why in the Models tab." + \
            (f"\n\n{steps}" if steps else "")
    head = (f"⏳ **Getting the models ready** ({_duration(r.elapsed_s)} so far; {r.models_up} "
            f"{'model is' if r.models_up == 1 else 'models are'} up, a battle needs 2). The first start "
            "builds a small model and two adapters: a few minutes on a CPU.")
    return head + (f"\n\n{steps}" if steps else "")


def show_train_tab(runtime: Runtime) -> bool:
    """ui.train_tab: on, off, or auto (only where a CUDA GPU is visible, as on a GPU Space)."""
    mode = runtime.settings.ui.train_tab
    if mode == "off":
        return False
    if mode == "auto":
        try:
            return cuda_available()
        except Exception:  # no torch, no GPU: training stays hidden
            return False
    return True


def build_app(runtime: Runtime, access: AccessControl | None = None) -> gr.Blocks:
    access = access or runtime.access
    actions = Actions(runtime)
    admin, labeller = roles_at_least("admin"), roles_at_least("labeller")
    hide = access.enabled  # with auth on, restricted tabs start hidden; the page load shows them
    # analytics explicitly: left to Gradio, it phones home unless GRADIO_ANALYTICS_ENABLED=False
    with gr.Blocks(title=runtime.settings.ui.title, analytics_enabled=runtime.settings.ui.analytics) as demo:
        with gr.Row():
            gr.Markdown(f"# {runtime.settings.ui.title}")
            who = gr.Markdown("", elem_id="whoami", visible=access.enabled)
            if access.settings.hf_oauth:
                if get_space():
                    # its presence makes Gradio add /login/huggingface, /login/callback and the session
                    # (gradio[oauth]); AccessControl maps the HF username to a role on every request
                    gr.LoginButton("Sign in with Hugging Face", scale=0, elem_id="hf-login")
                else:
                    log.warning("auth.hf_oauth is on but this is not a Hugging Face Space: no HF login here")
        ready_line = gr.Markdown(readiness(runtime), elem_id="readiness")
        timer = gr.Timer(2.0)

        def poll() -> tuple:
            # keeps polling once ready (slower): a crash later must reach visitors already on the page
            line = readiness(runtime)
            return line, gr.Timer(value=2.0 if line else 10.0, active=True)

        timer.tick(poll, None, [ready_line, timer], api_visibility="private", show_progress="hidden")
        admin_tabs: list[gr.Tab] = []
        label_tabs: list[gr.Tab] = []
        with gr.Tabs() as tabs:
            with gr.Tab("Arena", id="arena"):
                build_arena_tab(runtime.arena, _examples(), access)
            with restricted(demo, access, labeller):
                label_tabs.append(build_label_tab(runtime.campaigns))
            with restricted(demo, access, admin):
                admin_tabs.append(build_scoreboard_tab(actions))
                admin_tabs.append(build_campaigns_tab(actions))
                train = build_train_tab(actions) if show_train_tab(runtime) else None
                if train is not None:
                    admin_tabs.append(train.tab)
                admin_tabs.append(build_data_tab(actions, train, tabs))
                admin_tabs.append(build_models_tab(actions))
        with restricted(demo, access, admin):  # outside the Tabs, which may only hold tabs
            register_endpoints(actions)  # the application layer's HTTP API, admin only
        for tab in admin_tabs + label_tabs:
            tab.visible = not hide

        if access.enabled:
            def on_load(request: gr.Request) -> tuple:
                user = access.user_for(request)
                if user.role == "anonymous":
                    line = f"Anonymous visitor (arena only) · [Log in]({LOGIN_PATH})"
                else:
                    line = f"Logged in as **{user.name}** ({user.role}) · [Log out]({LOGOUT_PATH})"
                return (line, *[gr.update(visible=user.role == "admin") for _ in admin_tabs],
                        *[gr.update(visible=user.role in labeller) for _ in label_tabs])

            demo.load(on_load, None, [who, *admin_tabs, *label_tabs], api_visibility="private")
        else:
            # Gradio builds a page's session state (a config copy of every component, ~20 ms on
            # 2 cores) on the page's first event: without this, a visitor's first message paid for
            # it before the models were asked (docs/benchmarks.md, "The web path")
            demo.load(_open_page_session, None, None, api_visibility="private", show_progress="hidden")
    return demo


def _open_page_session() -> None:
    """The page's first event, sent as it loads: Gradio starts the page's session with it."""


def server_options(runtime: Runtime, access: AccessControl | None = None) -> dict:
    """launch() arguments for auth (the login page, the cookie check); {} with auth off."""
    return launch_options(access or runtime.access, runtime.settings.ui.title)


def launch(runtime: Runtime, **kwargs) -> gr.Blocks:
    """Serves the app; blocks unless prevent_thread_lock=True. Page sessions are bounded
    (ui.session_idle_s, ui.max_sessions): Gradio alone keeps each one until 10,000 exist."""
    ui = runtime.settings.ui
    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=8)
    bound_sessions(demo, ui.session_idle_s, ui.max_sessions, every_s=min(60.0, max(ui.session_idle_s / 4, 0.5)),
                   on_forget=lambda session: runtime.arena.close_session(session, wait_s=0))
    demo.launch(
        server_name=kwargs.pop("server_name", runtime.settings.ui.host),
        server_port=kwargs.pop("server_port", runtime.settings.ui.port),
        css=CSS,
        footer_links=[],
        **server_options(runtime),
        **kwargs,
    )
    return demo
