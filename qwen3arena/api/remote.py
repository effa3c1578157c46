"""The application layer over HTTP: every action registered once as a `gr.api` endpoint, and a
client that calls them as if they were local.

An endpoint takes one JSON object (the action's parameters by name) and answers
`{"ok": true, "result": ...}` or `{"ok": false, "error": {"kind", "message"}}`. `RemoteActions`
turns the answer back into the same dataclass a local call returns, or raises the same `Refused`
subclass (found by `kind`), so `python -m qwen3arena ... --app URL` behaves exactly like the
local CLI and never reads a message's wording.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable

from qwen3arena.api.actions import Actions
from qwen3arena.api.codec import decode_value, plain, typed
from qwen3arena.errors import Refused
from qwen3arena.train import LoraTrainConfig

# api_name -> Actions method. The names are the HTTP API (README, "Application layer").
ENDPOINTS: dict[str, str] = {
    "datasets": "datasets",
    "dataset_add": "add_dataset",
    "train_preview": "preview_run",
    "train_start": "start_run",
    "train_stop": "stop_run",
    "train_reuse": "reuse_run",
    "run_status": "run_status",
    "runs": "runs",
    "checkpoints": "checkpoints",
    "checkpoint_to_arena": "publish",
    "checkpoint_from_arena": "unpublish",
    "checkpoint_export": "export_checkpoint",
    "round_preview": "preview_round",
    "round_build": "build_round",
    "round_train": "train_round",
    "round_export": "export_round",
    "data_exclude": "exclude_battle",
    "data_include": "include_battle",
    "scoreboard": "board",
    "judge_battles": "judge_battles",
    "judge_prompt_set": "judge_prompt_set",
    "judge_job": "judge_job",
    "run_benchmarks": "start_benchmark",
    "benchmark": "benchmark",
    "campaigns_list": "campaigns",
    "campaign_create": "create_campaign",
    "campaign_progress": "campaign_progress",
    "campaign_toggle": "toggle_campaign",
    "models_status": "serving_status",
    "restart_vllm": "restart_server",
}


def _parameters(method: Callable) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(method).parameters.items() if name != "self"}


def decode_arguments(actions: Actions, method_name: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """An action's keyword arguments from a JSON object, each checked against its type hint. A
    run's settings go through Actions.run_config, as a form's do."""
    method = getattr(actions, method_name)
    hints = typing.get_type_hints(method)
    params = _parameters(method)
    payload = dict(payload or {})
    unknown = set(payload) - set(params)
    if unknown:
        raise _refused("ConfigError", f"{method_name}: unknown arguments {sorted(unknown)}; known: {sorted(params)}")
    arguments = {}
    for name, data in payload.items():
        hint = hints.get(name, Any)
        arguments[name] = actions.run_config(data or {}) if hint is LoraTrainConfig else decode_value(hint, data, name)
    return arguments


def decode_result(hint: Any, value: Any) -> Any:
    """A JSON result back into the action's declared return type."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [decode_result(item, v) for v in value]
    if dataclasses.is_dataclass(hint):
        fields = {f.name for f in dataclasses.fields(hint)}
        return typed(hint, {k: v for k, v in value.items() if k in fields}, hint.__name__)
    return value


def call(actions: Actions, method_name: str, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Runs one action for an HTTP caller; a refusal is an answer, not a server error."""
    try:
        result = getattr(actions, method_name)(**decode_arguments(actions, method_name, payload))
    except Refused as exc:
        return {"ok": False, "error": {"kind": exc.kind, "message": str(exc)}}
    return {"ok": True, "result": plain(result)}


def register_endpoints(actions: Actions) -> None:
    """Registers every action as a `gr.api` endpoint of the Blocks being built (call it inside
    the admin-only `restricted` block: the role check wraps each one)."""
    import gradio as gr

    for api_name, method_name in ENDPOINTS.items():
        gr.api(_endpoint(actions, method_name), api_name=api_name)


def _endpoint(actions: Actions, method_name: str) -> Callable[..., dict]:
    """An action without parameters is an endpoint without inputs (an HTTP call sends no data);
    any other takes one JSON object of its arguments by name."""
    if not _parameters(getattr(Actions, method_name)):
        def endpoint() -> dict:  # type: ignore[misc]
            return call(actions, method_name, None)
    else:
        def endpoint(request: dict) -> dict:  # type: ignore[misc]
            return call(actions, method_name, request)

    endpoint.__name__ = method_name
    endpoint.__doc__ = (getattr(Actions, method_name).__doc__ or method_name).strip().splitlines()[0]
    return endpoint


def _refused(kind: str, message: str) -> Refused:
    """The Refused subclass named `kind` (a new instance with this message), else Refused."""
    pending: list[type[Refused]] = [Refused]
    while pending:
        cls = pending.pop()
        if cls.__name__ == kind:
            error = cls.__new__(cls)
            Exception.__init__(error, message)
            return error
        pending += cls.__subclasses__()
    return Refused(message)


class RemoteActions:
    """The Actions of a running app, called through its HTTP API (gradio_client)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None):
        from gradio_client import Client

        # download_files=False: a result field named "path" is data here, not a file to fetch
        self._client = Client(url, auth=auth, verbose=False, download_files=False)
        self._api_names = {method: api for api, method in ENDPOINTS.items()}

    def __getattr__(self, method_name: str) -> Callable[..., Any]:
        api_name = self.__dict__.get("_api_names", {}).get(method_name)
        if api_name is None:
            raise AttributeError(f"{method_name!r} is not an action of the app's API")
        method = getattr(Actions, method_name)
        returns = typing.get_type_hints(method).get("return")
        signature = inspect.signature(method)

        def remote(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(None, *args, **kwargs)  # the same arguments a local call takes
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            inputs = (plain(arguments),) if len(signature.parameters) > 1 else ()
            answer = self._client.predict(*inputs, api_name=f"/{api_name}")
            if not answer.get("ok"):
                error = answer.get("error") or {}
                raise _refused(error.get("kind", "Refused"), error.get("message", "refused"))
            return decode_result(returns, answer.get("result"))

        return remote
