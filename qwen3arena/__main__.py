"""Command line: `python -m qwen3arena [app|build-default|harvest|train-round|publish|rounds]`.

app            start the web app (the default; same as `python app.py`)
build-default  build the embedded tiny Qwen3 and its adapters into the data directory
harvest        build the next round's dataset from the votes (--dry-run: counts only)
train-round N  train round N (SFT or --method dpo) and register the checkpoint
publish CKPT   put a checkpoint into the arena
rounds         list the rounds and the lineage of every checkpoint
hash-password  read a password (twice, not echoed) and print its hash for auth.accounts
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from qwen3arena import cli
from qwen3arena.config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qwen3arena", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="app",
                        choices=["app", "build-default", "hash-password", *cli.COMMANDS])
    parser.add_argument("--config", help="site YAML merged over configs/default.yaml")
    parser.add_argument("--host", help="address the web app listens on")
    parser.add_argument("--port", type=int, help="port of the web app")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "hash-password":
        return _hash_password()
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in cli.COMMANDS:
        return cli.run(args.command, args, settings)
    if args.command == "build-default":
        from qwen3arena.embedded import ensure_embedded_models

        built = ensure_embedded_models(settings.models_dir, on_progress=print)
        print(f"base: {built.base_dir}")
        for name, path in built.adapters.items():
            print(f"adapter {name}: {path}")
        return 0

    from qwen3arena.errors import Refused
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui import launch

    try:
        runtime = create_runtime(settings)
    except Refused as exc:  # the database in use, an unwritable data directory: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"qwen3arena: data directory {settings.home}", flush=True)
    runtime.start()
    try:
        kwargs = {}
        if args.host:
            kwargs["server_name"] = args.host
        if args.port:
            kwargs["server_port"] = args.port
        launch(runtime, **kwargs)
    finally:
        runtime.shutdown()
    return 0


def _hash_password() -> int:
    import getpass

    from qwen3arena.auth import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            print("the two passwords differ", file=sys.stderr)
            return 2
    else:  # piped: the first line
        first = sys.stdin.readline().rstrip("\n")
    if not first:
        print("the password is empty", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
