"""A local PostgreSQL server for the shared store: initdb, start, create the database, print the
URL to put in `store.url` (docs/deploy.md). The tests start theirs with the same code.

    python -m qwen3arena.store.postgres start [DIR] [--port 5432] [--db qwen3arena]
    python -m qwen3arena.store.postgres stop [DIR]

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (Debian's
package makes it), which then owns DIR.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

DEFAULT_DIR = Path("/var/tmp/qwen3arena-postgres") if os.geteuid() == 0 else Path("~/.qwen3arena/postgres")
SUPERUSER = "postgres"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


@dataclass
class LocalPostgres:
    """One server over a data directory, reached on 127.0.0.1:`port` (trust auth: local use)."""

    data_dir: Path
    port: int = 5432
    settings: Mapping[str, str] = field(default_factory=dict)  # extra -c options (the tests' fsync=off)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        bindir = find_bindir()
        if bindir is None:
            raise PostgresMissing("PostgreSQL is not installed: apt-get install -y postgresql "
                                  "(its binaries land in /usr/lib/postgresql/*/bin)")
        self.bindir = bindir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        """A server binary, as the postgres user when this process is root."""
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True)

    def init(self) -> None:
        """initdb, once (a directory that has a cluster is kept as it is)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, SUPERUSER, SUPERUSER)
            self.data_dir.chmod(0o700)
        done = self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                         "--encoding=UTF8", "--locale=C.UTF-8")
        if done.returncode:
            raise RuntimeError(f"initdb failed in {self.data_dir}: {(done.stderr or done.stdout).strip()[-800:]}")

    def start(self, timeout_s: int = 60) -> None:
        """Starts the server and waits until it accepts connections (pg_ctl -w)."""
        options = [f"-p {self.port}", f"-k {self.data_dir}", "-c listen_addresses=127.0.0.1",
                   *(f"-c {k}={v}" for k, v in self.settings.items())]
        done = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                         "-t", str(timeout_s), "-o", " ".join(options), "start")
        if done.returncode:
            log = self.log_file.read_text(errors="replace")[-1500:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {done.stderr.strip()}\n{log}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """Creates `name` unless it exists; its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as con:
            if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwen3arena.store.postgres", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("dir", nargs="?", default=str(DEFAULT_DIR), help=f"data directory (default {DEFAULT_DIR})")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--db", default="qwen3arena", help="database to create (start)")
    args = parser.parse_args(argv)
    try:
        server = LocalPostgres(Path(args.dir), args.port)
        if args.command == "stop":
            server.stop()
            print(f"stopped the server in {server.data_dir}")
            return 0
        server.init()
        server.start()
        url = server.create_database(args.db)
    except (PostgresMissing, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"PostgreSQL runs from {server.data_dir} (log: {server.log_file}). Start the app on it with:\n"
          f"  QWEN3ARENA__STORE__URL={url} .venv/bin/python app.py")
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
