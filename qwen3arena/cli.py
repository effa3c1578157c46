"""Headless rounds: harvest, train, publish, each a subcommand, for schedulers and shells.

    python -m qwen3arena harvest [--ties both] [--judge-agrees] [--parent CKPT] [--dry-run] ...
    python -m qwen3arena train-round N [--method sft|dpo] [--parent CKPT] [--max-steps S] ...
    python -m qwen3arena publish CKPT
    python -m qwen3arena rounds

They work on the data directory directly (QWEN3ARENA_HOME). DuckDB lets one process write the
file, so while the web app runs, pass --app URL and the same steps run inside the app through
its API (training then runs in the app's queue, and publishing loads the adapter at once).
Exit status: 0 done, 2 refused (the message says why), 1 a run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from qwen3arena.config import Settings

COMMANDS = ("harvest", "train-round", "publish", "rounds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the round subcommands (added to the main parser)."""
    group = parser.add_argument_group("rounds (harvest, train-round, publish, rounds)")
    group.add_argument("target", nargs="?", help="train-round: the round number; publish: the checkpoint")
    group.add_argument("--app", help="URL of a running qwen3arena (else the data directory is used directly)")
    group.add_argument("--ties", choices=["skip", "both"], default="skip", help="harvest: what a tie gives")
    group.add_argument("--judge-agrees", action="store_true", help="harvest: only votes the judge agrees with")
    group.add_argument("--single-turn", action="store_true", help="harvest: leave multi-turn battles out")
    group.add_argument("--no-previous", action="store_true", help="harvest: do not mix in earlier rounds")
    group.add_argument("--base-dataset", help="harvest: a trl-format file to mix in")
    group.add_argument("--voter", help="harvest: only this voter's votes")
    group.add_argument("--model", help="harvest: only battles with this model")
    group.add_argument("--category", help="harvest: only this prompt category")
    group.add_argument("--campaign", help="harvest: only this labelling campaign's votes (its id)")
    group.add_argument("--parent", help="harvest/train-round: the checkpoint the round continues from")
    group.add_argument("--dry-run", action="store_true", help="harvest: print the counts, write nothing")
    group.add_argument("--method", choices=["sft", "dpo"], default="sft", help="train-round: SFT or DPO")
    group.add_argument("--name", help="train-round: checkpoint name (default roundN-METHOD)")
    group.add_argument("--max-steps", type=int, help="train-round: steps (default: one epoch)")
    group.add_argument("--epochs", type=float, help="train-round: epochs")
    group.add_argument("--learning-rate", type=float, help="train-round: learning rate")
    group.add_argument("--no-publish", action="store_true", help="train-round: do not put the checkpoint in the arena")


def run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from qwen3arena.harvest import HarvestError
    from qwen3arena.serve import AdapterError
    from qwen3arena.store import StoreLocked
    from qwen3arena.train import DatasetError, RunRejected

    try:
        if args.app:
            return _remote(command, args)
        return _local(command, args, settings)
    except StoreLocked as exc:
        print(f"error: {exc}\nThe web app holds the database: add --app http://HOST:PORT to run this "
              "through it.", file=sys.stderr)
        return 2
    except (HarvestError, RunRejected, DatasetError, AdapterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# -- on the data directory ---------------------------------------------------------------------

def _local(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from qwen3arena.runtime import create_runtime

    settings.vllm.enabled = False  # no serving from the command line; the app loads published adapters
    runtime = create_runtime(settings)
    try:
        if command == "harvest":
            return _harvest(runtime, args)
        if command == "train-round":
            return _train_round(runtime, args)
        if command == "publish":
            _need(args.target, "publish needs a checkpoint name")
            print(runtime.publish(args.target))
            return 0
        return _rounds(runtime)
    finally:
        runtime.shutdown()


def _rules_and_filters(args: argparse.Namespace):
    from qwen3arena.harvest import BattleFilters, HarvestRules

    rules = HarvestRules(ties=args.ties, judge_agrees_only=args.judge_agrees,
                         include_multi_turn=not args.single_turn, include_previous_rounds=not args.no_previous,
                         base_dataset=args.base_dataset)
    return rules, BattleFilters(voter=args.voter, model=args.model, category=args.category,
                                campaign=args.campaign)


def _harvest(runtime, args: argparse.Namespace) -> int:
    rules, filters = _rules_and_filters(args)
    plan = runtime.harvester.preview(rules, filters)
    print(f"round {plan.round}: new votes {plan.new_votes}")
    for key, value in plan.counts.items():
        print(f"  {key}: {value}")
    if args.dry_run:
        return 0
    record = runtime.harvester.build_round(rules, filters, created_by=_who(), parent=args.parent)
    print(f"built round {record.round} from {len(record.vote_ids)} votes: {record.directory}")
    return 0


def _train_round(runtime, args: argparse.Namespace) -> int:
    number = int(_need(args.target, "train-round needs a round number"))
    runtime.base_path, _ = runtime.resolve_models()  # the served base (builds the embedded default once)
    config = runtime.round_run_config(number, args.method, args.parent, name=args.name, **_overrides(args))
    taken = {m.name for m in runtime.store.list_models()}
    run = runtime.runner.submit(config, join_arena=not args.no_publish, taken_names=taken)
    print(f"run {run.run_id}: {config.method} on {config.dataset} -> checkpoint {config.name}"
          + (f" (from {config.parent})" if config.parent else ""), flush=True)
    shown = 0
    while True:
        progress = runtime.runner.progress(run.run_id)
        for step in progress.steps[shown:]:
            print(f"  step {step['step']}/{step['total']} loss {step['loss']:.4f}", flush=True)
        shown = len(progress.steps)
        if progress.run.status not in ("queued", "running"):
            break
        time.sleep(1.0)
    final = progress.run
    print(f"{final.name}: {final.status}" + (f" ({final.error})" if final.error else ""))
    return 0 if final.status == "succeeded" else 1


def _rounds(runtime) -> int:
    from qwen3arena.harvest import lineage, lineage_frame

    for record in runtime.harvester.rounds():
        print(f"round {record.round}  {record.created_at:%Y-%m-%d %H:%M}  votes {len(record.vote_ids)}  "
              f"sft {record.counts.get('sft', 0)}  preference {record.counts.get('preference', 0)}  "
              f"{record.directory}")
    frame = lineage_frame(lineage(runtime.store))
    if len(frame):
        print()
        print(frame.to_string(index=False))
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.epochs:
        overrides["num_train_epochs"] = args.epochs
    if args.learning_rate:
        overrides["learning_rate"] = args.learning_rate
    return overrides


# -- through a running app ---------------------------------------------------------------------

def _remote(command: str, args: argparse.Namespace) -> int:
    from gradio_client import Client

    auth = os.environ.get("QWEN3ARENA_APP_AUTH")  # "user:password" when the app has accounts
    client = Client(args.app, auth=tuple(auth.split(":", 1)) if auth else None, verbose=False)
    if command == "harvest":
        rules, filters = _rules_and_filters(args)
        if args.dry_run:
            message, *_ = client.predict(*_rule_values(rules), *_filter_values(filters), api_name="/round_preview")
        else:
            message, *_ = client.predict(args.parent or "", *_rule_values(rules), *_filter_values(filters),
                                         api_name="/round_build")
        print(message)
        return 2 if message.startswith("⚠️") else 0
    if command == "train-round":
        number = int(_need(args.target, "train-round needs a round number"))
        result = client.predict(number, args.method, args.parent or "", args.name or "",
                                json.dumps(_overrides(args)), not args.no_publish, api_name="/round_train")
        if result.get("error"):
            print(f"error: {result['error']}", file=sys.stderr)
            return 2
        run_id = result["run_id"]
        print(f"run {run_id} queued in the app -> checkpoint {result['name']}", flush=True)
        last = None
        while True:
            status = client.predict(run_id, api_name="/run_status")
            if status.get("step") != last and status.get("step") is not None:
                last = status["step"]
                print(f"  step {status['step']}/{status['total']} loss {status['loss']:.4f}", flush=True)
            if status["status"] not in ("queued", "running"):
                break
            time.sleep(2.0)
        print(f"{status['name']}: {status['status']}" + (f" ({status['error']})" if status.get("error") else ""))
        return 0 if status["status"] == "succeeded" else 1
    if command == "publish":
        message, _, _ = client.predict(_need(args.target, "publish needs a checkpoint name"),
                                       api_name="/checkpoint_to_arena")
        print(message)
        return 2 if message.startswith("⚠️") else 0
    print("error: `rounds` reads the data directory; run it where the app is stopped, or open the Data tab",
          file=sys.stderr)
    return 2


def _rule_values(rules) -> list[Any]:
    return [rules.ties, rules.judge_agrees_only, rules.include_multi_turn, rules.include_previous_rounds,
            rules.base_dataset or ""]


def _filter_values(filters) -> list[Any]:
    return [list(filters.outcomes), filters.model or "", filters.voter or "", filters.category or "", filters.judge,
            filters.campaign or ""]


def _need(value: str | None, message: str) -> str:
    if not value:
        raise ValueError(message)
    return value


def _who() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"
