"""Writes the shipped EvalScope datasets (kitchen facts) used by qwen3arena.evals.

Both sets come from the same FOODS table as the SFT demo data, so a checkpoint is measured on
the domain it was trained on, offline and without any download:

- kitchen_qa/default.jsonl (EvalScope `general_qa`): {"query", "response"} with the neutral
  reference answer, scored with ROUGE.
- kitchen_mcq/default_val.jsonl (EvalScope `general_mcq`): four-choice questions with
  distractors drawn from other foods' facts, scored by accuracy.

Run `python data/evals/make_eval_data.py` to regenerate; the output is committed and
deterministic (fixed seed).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SUBSET = "default"
QA_ROWS = 30
MCQ_ROWS = 30


def _demo_module():
    """data/ is not a package: load make_demo_data.py by path to share FOODS and phrasing."""
    spec = importlib.util.spec_from_file_location("make_demo_data", HERE.parent / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


demo = _demo_module()
FOODS: list[tuple] = demo.FOODS


def qa_rows(rng: random.Random) -> list[dict[str, str]]:
    """One question per food, the kind rotating, with the neutral SFT answer as reference."""
    neutral = dict(demo.examples()["neutral"])
    kinds = (demo.fridge_question, lambda food: f"Can I freeze {food}?",
             lambda food: f"How should I store {food}?", lambda food: f"How do I cook {food}?")
    rows = []
    for i, (food, *_rest) in enumerate(FOODS):
        query = kinds[i % len(kinds)](food)
        rows.append({"query": query, "response": neutral[query]})
    rng.shuffle(rows)
    return rows[:QA_ROWS]


def _choices(rng: random.Random, correct: str, pool: list[str]) -> tuple[list[str], str]:
    """Correct answer plus three distinct distractors, shuffled; returns (choices, letter)."""
    distractors = rng.sample(sorted(set(pool) - {correct}), 3)
    options = [correct, *distractors]
    rng.shuffle(options)
    return options, "ABCD"[options.index(correct)]


def mcq_rows(rng: random.Random) -> list[dict[str, str]]:
    """Alternates fridge life, freezer life, storage place and cooking method per food."""
    store_pool = [f[3][0].upper() + f[3][1:] for f in FOODS]
    cook_pool = [f[4][0].upper() + f[4][1:] for f in FOODS]
    rows = []
    for i, (food, fridge, freezer, store, cook, _tip) in enumerate(FOODS):
        kind, plural = i % 4, food in demo.PLURAL  # "do not keep them", "they do not freeze well"
        if kind == 0:
            question = demo.fridge_question(food)
            pool = [demo._fridge(d, plural).capitalize() for d in (0, 1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 30)]
            correct = demo._fridge(fridge, plural).capitalize()
        elif kind == 1:
            question = demo.fridge_question(food, "freezer")
            pool = [demo._freezer(m, plural).capitalize() for m in (0, 1, 2, 3, 4, 6, 8, 9, 10, 12)]
            correct = demo._freezer(freezer, plural).capitalize()
        elif kind == 2:
            question = f"Where should I store {food}?"
            correct, pool = store[0].upper() + store[1:], store_pool
        else:
            question = f"What is a good way to cook {food}?"
            correct, pool = cook[0].upper() + cook[1:], cook_pool
        options, answer = _choices(rng, correct, pool)
        rows.append({"id": f"kitchen-{i:03d}", "question": question,
                     **dict(zip("ABCD", options)), "answer": answer})
    return rows[:MCQ_ROWS]


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    rng = random.Random(0)
    _write(HERE / "kitchen_qa" / f"{SUBSET}.jsonl", qa_rows(rng))
    _write(HERE / "kitchen_mcq" / f"{SUBSET}_val.jsonl", mcq_rows(rng))


if __name__ == "__main__":
    main()
