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
    """One subcommand, on the data directory or through a running app: the same actions, the
    same results, the same errors (qwen3arena.api), only the transport differs."""
    from qwen3arena.errors import Refused
    from qwen3arena.store import StoreLocked

    try:
        if args.app:
            if command == "rounds":
                print("error: `rounds` reads the data directory; run it where the app is stopped, or open the "
                      "Data tab", file=sys.stderr)
                return 2
            from qwen3arena.api import RemoteActions

            auth = os.environ.get("QWEN3ARENA_APP_AUTH")  # "user:password" when the app has accounts
            actions = RemoteActions(args.app, auth=tuple(auth.split(":", 1)) if auth else None)
            return _dispatch(command, args, actions, poll_s=2.0)
        return _local(command, args, settings)
    except StoreLocked as exc:
        print(f"error: {exc}\nThe web app holds the database: add --app http://HOST:PORT to run this "
              "through it.", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _local(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from qwen3arena.api import Actions
    from qwen3arena.runtime import create_runtime

    settings.vllm.enabled = False  # no serving from the command line; the app loads published adapters
    runtime = create_runtime(settings)
    try:
        if command == "rounds":
            return _rounds(runtime)
        if command == "train-round":
            runtime.resolve_models()  # the served base (builds the embedded default once)
        return _dispatch(command, args, Actions(runtime), poll_s=1.0)
    finally:
        runtime.shutdown()


def _dispatch(command: str, args: argparse.Namespace, actions, poll_s: float) -> int:
    """The subcommand on `actions`: local (api.Actions) or remote (api.RemoteActions)."""
    if command == "harvest":
        return _harvest(actions, args)
    if command == "train-round":
        return _train_round(actions, args, poll_s)
    published = actions.publish(_need(args.target, "publish needs a checkpoint name"))
    if published.in_arena:
        print(f"{published.name} is registered and now in the arena.")
    elif published.joins_at_start:
        print(f"{published.name} is registered and joins the arena when the app starts.")
    return 0


def _rules_and_filters(args: argparse.Namespace):
    from qwen3arena.harvest import BattleFilters, HarvestRules

    rules = HarvestRules(ties=args.ties, judge_agrees_only=args.judge_agrees,
                         include_multi_turn=not args.single_turn, include_previous_rounds=not args.no_previous,
                         base_dataset=args.base_dataset)
    return rules, BattleFilters(voter=args.voter, model=args.model, category=args.category,
                                campaign=args.campaign)


def _harvest(actions, args: argparse.Namespace) -> int:
    rules, filters = _rules_and_filters(args)
    plan = actions.preview_round(rules, filters)
    counts = " · ".join(f"{key}: {value}" for key, value in plan.counts.items())
    print(f"Round {plan.round} would hold: {counts} · new votes: {plan.new_votes}")
    if args.dry_run:
        return 0
    built = actions.build_round(rules, filters, parent=args.parent, created_by=_who())
    print(f"Round {built.round} built from {built.votes} votes: {built.sft_rows} SFT rows, "
          f"{built.preference_pairs} preference pairs in {built.directory}")
    return 0


def _train_round(actions, args: argparse.Namespace, poll_s: float) -> int:
    number = int(_need(args.target, "train-round needs a round number"))
    started = actions.train_round(number, args.method, args.parent, args.name, _overrides(args),
                                  not args.no_publish)
    print(f"run {started.run_id} queued -> checkpoint {started.name}", flush=True)
    last = None
    while True:
        view = actions.run_status(started.run_id)
        for step, loss in view.losses:
            if last is None or step > last:
                print(f"  step {int(step)}/{view.total} loss {loss:.4f}", flush=True)
                last = step
        if not view.active:
            break
        time.sleep(poll_s)
    print(f"{view.name}: {view.status}" + (f" ({view.error})" if view.error else ""))
    if view.arena_note:
        print(f"{view.name} is registered but not in the arena: {view.arena_note}.")
    return 0 if view.status == "succeeded" else 1


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


def _need(value: str | None, message: str) -> str:
    if not value:
        from qwen3arena.errors import Refused

        raise Refused(message)
    return value


def _who() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"
