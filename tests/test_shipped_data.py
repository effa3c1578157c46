"""The shipped kitchen data reads as English (issue 18, item 11): a prompt like "How long does
potatoes keep in the fridge?" is the first thing a new user sees in the arena, and the tiny
models learn whatever grammar the corpus and the SFT answers teach them.

The files are written by data/make_demo_data.py and data/evals/make_eval_data.py; after
changing a generator, run both and commit what they write."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
SHIPPED = sorted(p for folder in ("prompts", "corpus", "sft", "evals")
                 for p in (DATA / folder).rglob("*") if p.suffix in (".txt", ".jsonl"))

# Agreement errors, found without the generator's own list of plural foods: a plural noun is
# one ending in "s" (no singular food here does) or "shrimp".
PLURAL = r"(?:\w+ )?(?:\w+s|shrimp)"
ERRORS = {
    "does <plural> keep": re.compile(rf"\b[Dd]oes {PLURAL} keep\b"),
    "<plural> keeps": re.compile(rf"\b{PLURAL} keeps\b", re.IGNORECASE),
    "<plural> does not": re.compile(rf"\b{PLURAL} does not\b", re.IGNORECASE),
    "keeps do not keep": re.compile(r"\bkeeps (?:do not|it does not)\b"),
    "1 days / 1 months": re.compile(r"\b1 (?:days|months)\b"),
}


def test_the_shipped_files_are_found():
    names = {p.relative_to(DATA).as_posix() for p in SHIPPED}
    assert {"prompts/kitchen.txt", "prompts/kitchen.jsonl", "corpus/kitchen.txt", "sft/kitchen_neutral.jsonl",
            "evals/kitchen_qa/default.jsonl", "evals/kitchen_mcq/default_val.jsonl"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(DATA).as_posix())
def test_no_shipped_prompt_or_answer_breaks_agreement(path):
    found = [f"{path.name}:{number}: {name}: {match.group(0)!r}"
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             for name, pattern in ERRORS.items() for match in pattern.finditer(line)]
    assert not found, "\n".join(found[:20])


@pytest.mark.parametrize("text, error", [
    ("How long does potatoes keep in the fridge?", "does <plural> keep"),
    ("How long does cooked beans keep in the fridge?", "does <plural> keep"),
    ("How long does shrimp keep in the fridge?", "does <plural> keep"),
    ("Potatoes keeps about 10 months in the freezer.", "<plural> keeps"),
    ("Mushrooms does not freeze well.", "<plural> does not"),
    ("Bread keeps do not keep it in the fridge.", "keeps do not keep"),
    ("Bacon keeps about 1 months in the freezer.", "1 days / 1 months"),
])
def test_the_checks_catch_the_errors_the_old_files_had(text, error):
    assert ERRORS[error].search(text)


@pytest.mark.parametrize("text", [
    "How long do potatoes keep in the fridge?", "How long does cooked rice keep in the fridge?",
    "Eggs keep about 21 days in the fridge.", "Lettuce does not freeze well.", "Do not keep bread in the fridge.",
    "Bacon keeps about 1 month in the freezer.", "Can I freeze eggs?",
])
def test_the_checks_pass_good_english(text):
    assert not any(pattern.search(text) for pattern in ERRORS.values())
