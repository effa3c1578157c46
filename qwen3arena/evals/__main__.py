"""The EvalScope child process (started by qwen3arena.evals.runner, one per job):

  python -m qwen3arena.evals TASK.json [--events events.jsonl]

TASK.json holds {"evalscope_version", "tasks": [{"dataset", "benchmark", "config"}]} where
config is TaskConfig keyword arguments. Each task is one EvalScope run; its outcome is appended
to the events file as {"event": "start" | "done" | "failed", "dataset", ...}, so the parent
learns why a dataset failed without parsing EvalScope's log. The API key comes from the
environment (QWEN3ARENA_EVAL_API_KEY), never from the task file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from qwen3arena.evals.runner import API_KEY_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3arena.evals", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", type=Path)
    parser.add_argument("--events", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.task.read_text())
    events = args.events or args.task.with_name("events.jsonl")
    tasks: list[dict[str, Any]] = spec["tasks"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    try:
        import evalscope
        from evalscope.config import TaskConfig
        from evalscope.run import run_task
    except Exception as exc:  # noqa: BLE001 - any import failure is the reason for every task
        return _fail_all(events, tasks, f"cannot import EvalScope: {type(exc).__name__}: {exc}")
    version = evalscope.__version__
    wanted = spec.get("evalscope_version", version)
    if version.split(".")[:2] != wanted.split(".")[:2]:
        return _fail_all(events, tasks, f"EvalScope {version} is installed; qwen3arena.evals reads the "
                                        f"output of {wanted} (pip install evalscope=={wanted})")

    failed = 0
    api_key = os.environ.get(API_KEY_ENV) or "EMPTY"
    for task in tasks:
        config = task["config"]
        _emit(events, "start", task["dataset"])
        try:
            run_task(TaskConfig(**config, api_key=api_key))
        except Exception as exc:  # noqa: BLE001 - reported per dataset, then the next one runs
            traceback.print_exc()
            failed += 1
            _emit(events, "failed", task["dataset"], reason=_reason(exc, config))
            continue
        _emit(events, "done", task["dataset"], work_dir=config["work_dir"], evalscope_version=version)
    return 1 if failed else 0


def _reason(exc: BaseException, config: dict[str, Any]) -> str:
    """Names the likely cause for the errors people meet; the log has the traceback."""
    names = set()
    cause: BaseException | None = exc
    while cause is not None:
        names.add(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    text = f"{type(exc).__name__}: {exc}"[:800]
    if "APIConnectionError" in names or "ConnectError" in names:
        return f"cannot reach the server at {config.get('api_url')} ({text})"
    if "APITimeoutError" in names:
        return f"the server at {config.get('api_url')} did not answer in time ({text})"
    if "NotFoundError" in names:
        return f"the server at {config.get('api_url')} has no model {config.get('model')!r} ({text})"
    if "AuthenticationError" in names:
        return f"the server at {config.get('api_url')} refused the API key ({text})"
    return text


def _emit(path: Path, event: str, dataset: str | None, **fields: Any) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "dataset": dataset, "time": time.time(), **fields}) + "\n")


def _fail_all(events: Path, tasks: list[dict[str, Any]], reason: str) -> int:
    print(f"error: {reason}", file=sys.stderr)
    for task in tasks:
        _emit(events, "failed", task["dataset"], reason=reason)
    return 2


if __name__ == "__main__":
    sys.exit(main())
