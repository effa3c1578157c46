"""Each table's SQL has one home (docs/store.md): the Store for the core tables, a package's
store module for its own. Services and tabs call those modules and hold no SQL."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import qwen3arena

PACKAGE = Path(qwen3arena.__file__).parent
SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.S)
# the modules that own tables, and so hold their SQL
HOMES = {"store/db.py", "store/migrations.py", "judge/store.py", "evals/store.py", "harvest/store.py",
         "campaigns/store.py", "jobs.py",
         # no table of their own: the dialects' generic statements (a bulk INSERT for any table), and
         # the local PostgreSQL server's administration (pg_database)
         "store/backends.py", "store/postgres.py"}
# Modules whose SQL has not moved to its table's home yet (none left; a new entry needs a reason)
NOT_YET_MOVED: set[str] = set()


def _sql_strings(path: Path) -> list[str]:
    """String literals (f-string parts included) that read as SQL statements."""
    found = []
    nodes = list(ast.walk(ast.parse(path.read_text())))
    parts = {id(v) for node in nodes if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in nodes:
        if id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append(f"line {node.lineno}: {' '.join(text.split())[:70]}")
    return found


def test_the_detector_sees_sql_in_plain_and_f_strings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('a = "SELECT x FROM votes"\nb = f"UPDATE campaign_slots SET s = {1}"\n'
                      'c = "Select a model from the list"\n')
    assert [line.split(":")[0] for line in _sql_strings(sample)] == ["line 1", "line 2"]


def test_services_hold_no_sql():
    for name in ("harvest/service.py", "campaigns/service.py"):
        assert _sql_strings(PACKAGE / name) == [], name


def test_sql_lives_only_in_the_modules_that_own_tables():
    outside = {str(path.relative_to(PACKAGE)): found for path in sorted(PACKAGE.rglob("*.py"))
               if str(path.relative_to(PACKAGE)) not in HOMES and (found := _sql_strings(path))}
    assert set(outside) <= NOT_YET_MOVED, {k: v for k, v in outside.items() if k not in NOT_YET_MOVED}
    assert NOT_YET_MOVED <= set(outside), f"moved: take {NOT_YET_MOVED - set(outside)} off NOT_YET_MOVED"
