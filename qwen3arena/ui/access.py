"""Role checks for Gradio handlers, applied where events are registered.

`restricted(demo, access, roles)` wraps every handler registered inside the `with` block,
so a tab built inside it cannot grow an unguarded endpoint: a handler added later to the
Train tab is admin-only without anyone remembering to say so. The wrapper asks
AccessControl.require_role with the event's gr.Request (the session cookie of the HTTP
request), never with anything the browser sends as an input.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

import gradio as gr
from gradio.utils import get_type_hints

from qwen3arena.auth import AccessControl, Forbidden, Role

_REQUEST = "_qwen3arena_request"


def guarded(fn: Callable, access: AccessControl, roles: tuple[Role, ...]) -> Callable:
    """`fn` behind a role check; keeps its signature (plus a gr.Request first) and whether it
    is a generator, which Gradio reads to inject special arguments and to stream."""
    signature = inspect.signature(fn)
    hints = {name: hint for name, hint in get_type_hints(fn).items() if name in signature.parameters}
    request_param = inspect.Parameter(_REQUEST, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)

    def check(request: gr.Request) -> None:
        try:
            access.require_role(request, *roles)
        except Forbidden as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    if inspect.isgeneratorfunction(fn):
        def wrapper(request: gr.Request, *args: Any, **kwargs: Any) -> Iterator[Any]:
            check(request)
            yield from fn(*args, **kwargs)
    else:
        def wrapper(request: gr.Request, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            check(request)
            return fn(*args, **kwargs)

    wrapper.__name__ = getattr(fn, "__name__", "handler")
    wrapper.__qualname__ = getattr(fn, "__qualname__", wrapper.__name__)
    wrapper.__doc__ = fn.__doc__
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[request_param, *[p.replace(annotation=hints.get(p.name, inspect.Parameter.empty))
                                     for p in signature.parameters.values()]])
    wrapper.__annotations__ = {_REQUEST: gr.Request, **hints}
    return wrapper


@contextlib.contextmanager
def restricted(demo: gr.Blocks, access: AccessControl, roles: tuple[Role, ...]) -> Iterator[None]:
    """Every event handler registered inside the block requires one of `roles`."""
    before = set(demo.fns)
    yield
    for fn_id in set(demo.fns) - before:
        block_fn = demo.fns[fn_id]
        if block_fn.fn is not None:
            block_fn.fn = guarded(block_fn.fn, access, roles)
