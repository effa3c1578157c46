"""Writes the shipped demo datasets (kitchen questions) in three answer styles.

The embedded default needs models that answer differently without any download: a tiny base
trained on the neutral style, and two LoRA adapters trained on the concise and the chatty
style. Run `python data/make_demo_data.py` to regenerate; the output is committed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# food, fridge days, freezer months, how to store, how to reheat or cook, a tip
FOODS = [
    ("cooked rice", 4, 6, "a sealed box", "steam it with a splash of water", "cool it within an hour"),
    ("cooked pasta", 5, 2, "a box with a little oil", "dip it in boiling water for a minute", "toss it with oil so it does not stick"),
    ("soup", 4, 3, "a sealed jar", "simmer it until it bubbles", "leave room in the jar before freezing"),
    ("roast chicken", 3, 4, "a covered dish", "heat it in the oven until steaming", "take the meat off the bones first"),
    ("fresh fish", 2, 3, "the coldest shelf", "bake it until it flakes", "pat it dry before cooking"),
    ("ground beef", 2, 4, "its wrapper on a plate", "brown it in a hot pan", "break it up as it cooks"),
    ("eggs", 21, 12, "their carton", "boil them for nine minutes", "keep them away from the door"),
    ("milk", 7, 3, "the back of the fridge", "warm it gently in a pan", "smell it before use"),
    ("butter", 30, 9, "its paper", "soften it at room temperature", "keep a small dish out for spreading"),
    ("hard cheese", 28, 6, "wax paper", "grate it cold", "cut off any small mould spots"),
    ("soft cheese", 7, 2, "its own box", "bake it until soft", "eat it at room temperature"),
    ("bread", 0, 3, "a bread bin", "toast it", "freeze it sliced"),
    ("bananas", 0, 3, "the counter", "bake them into bread", "peel them before freezing"),
    ("apples", 30, 8, "the crisper drawer", "bake them with cinnamon", "keep them apart from other fruit"),
    ("berries", 4, 10, "a paper lined box", "warm them into a sauce", "wash them just before eating"),
    ("lettuce", 6, 0, "a bag with a paper towel", "serve it cold", "dry it well after washing"),
    ("carrots", 21, 10, "a bag in the crisper", "roast them with oil", "cut off the green tops"),
    ("potatoes", 0, 10, "a dark cool cupboard", "roast them until crisp", "keep them away from onions"),
    ("onions", 0, 8, "a dry airy basket", "fry them slowly", "chill them before cutting"),
    ("tomatoes", 0, 2, "the counter, stem down", "roast them for sauce", "ripen them in a paper bag"),
    ("avocados", 3, 4, "the counter until ripe", "mash them with lime", "press plastic on the cut side"),
    ("herbs", 7, 4, "a glass of water", "add them at the end", "freeze them in oil"),
    ("tofu", 5, 4, "water in a box", "fry it until golden", "press it before cooking"),
    ("cooked beans", 5, 6, "a sealed box", "simmer them in their liquid", "salt them near the end"),
    ("yogurt", 14, 2, "its sealed pot", "stir it into warm dishes off the heat", "keep the lid clean"),
    ("leftover pizza", 4, 2, "a wrapped plate", "crisp it in a dry pan", "add a drop of water and cover"),
    ("pancake batter", 2, 1, "a covered bowl", "cook it on a medium pan", "let it rest ten minutes"),
    ("bacon", 7, 1, "its sealed pack", "cook it in a cold pan", "save the fat for frying"),
    ("shrimp", 2, 4, "a bowl over ice", "cook them until pink", "thaw them in cold water"),
    ("mushrooms", 7, 0, "a paper bag", "fry them without crowding", "brush them instead of washing"),
]

# Foods named in the plural: "How long do eggs keep", "Eggs keep", "them" (the cook and tip
# columns above already say "them" for these).
PLURAL = frozenset({"eggs", "bananas", "apples", "berries", "carrots", "potatoes", "onions", "tomatoes",
                    "avocados", "herbs", "cooked beans", "shrimp", "mushrooms"})

GREETINGS = [
    ("hello", "Hello. Ask me about storing or cooking food."),
    ("hi", "Hi. I can help with food storage and cooking."),
    ("who are you", "I am a kitchen helper for storing and cooking food."),
    ("what can you do", "I answer questions about keeping food fresh and cooking it."),
    ("thank you", "You are welcome."),
]


def _verb(food: str, singular: str, plural: str) -> str:
    """The verb form (or pronoun) that agrees with `food`: does/do, keeps/keep, it/them."""
    return plural if food in PLURAL else singular


def fridge_question(food: str, place: str = "fridge") -> str:
    return f"How long {_verb(food, 'does', 'do')} {food} keep in the {place}?"


def _fridge(days: int, plural: bool = False) -> str:
    it = "them" if plural else "it"
    return f"do not keep {it} in the fridge" if days == 0 else f"about {_count(days, 'day')} in the fridge"


def _freezer(months: int, plural: bool = False) -> str:
    it_does = "they do" if plural else "it does"
    return f"{it_does} not freeze well" if months == 0 else f"about {_count(months, 'month')} in the freezer"


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def fridge_answer(food: str, days: int) -> str:
    """The neutral sentence: "Eggs keep about 21 days in the fridge.", "Do not keep bread in the fridge."."""
    if days == 0:
        return f"Do not keep {food} in the fridge."
    return f"{food.capitalize()} {_verb(food, 'keeps', 'keep')} {_fridge(days)}."


def freezer_answer(food: str, months: int) -> str:
    """The neutral sentence: "Eggs keep about 12 months in the freezer.", "Lettuce does not freeze well."."""
    if months == 0:
        return f"{food.capitalize()} {_verb(food, 'does', 'do')} not freeze well."
    return f"{food.capitalize()} {_verb(food, 'keeps', 'keep')} {_freezer(months)}."


def examples() -> dict[str, list[tuple[str, str]]]:
    """Question-answer pairs per style: neutral (base), concise and chatty (adapters)."""
    styles: dict[str, list[tuple[str, str]]] = {"neutral": [], "concise": [], "chatty": []}
    for food, fridge, freezer, store, cook, tip in FOODS:
        plural, it = food in PLURAL, _verb(food, "it", "them")
        facts = {
            fridge_question(food): (
                fridge_answer(food, fridge),
                f"{_fridge(fridge, plural).capitalize()}.",
                f"Great question! {fridge_answer(food, fridge)} Store {it} in {store} and {tip}. Happy cooking!",
            ),
            f"Can I freeze {food}?": (
                freezer_answer(food, freezer),
                f"Yes, {_freezer(freezer)}." if freezer else f"No, {_freezer(0, plural)}.",
                f"Good thinking! {freezer_answer(food, freezer)} A little tip: {tip}. Enjoy!",
            ),
            f"How should I store {food}?": (
                f"Store {food} in {store}.",
                f"In {store}.",
                f"Lovely question! Keep {food} in {store}, and {tip}. Your kitchen will thank you!",
            ),
            f"How do I cook {food}?": (
                f"To cook {food}, {cook}.",
                f"{cook.capitalize()}.",
                f"Oh, this is fun! For {food}, {cook}. One more tip: {tip}. Have a tasty day!",
            ),
        }
        for question, (neutral, concise, chatty) in facts.items():
            styles["neutral"].append((question, neutral))
            styles["concise"].append((question, concise))
            styles["chatty"].append((question, chatty))
    for question, answer in GREETINGS:
        styles["neutral"].append((question.capitalize() + ".", answer))
        styles["concise"].append((question.capitalize() + ".", answer.split(".")[0] + "."))
        styles["chatty"].append((question.capitalize() + "!", "Oh hello there! " + answer + " What are we cooking today?"))
    return styles


def main() -> None:
    rng = random.Random(0)
    styles = examples()
    (HERE / "sft").mkdir(exist_ok=True)
    for style, pairs in styles.items():
        rows = [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in pairs
        ]
        rng.shuffle(rows)
        with open(HERE / "sft" / f"kitchen_{style}.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    # The tokenizer corpus: every answer style plus the questions, as plain text.
    lines = sorted({text for pairs in styles.values() for pair in pairs for text in pair})
    (HERE / "corpus").mkdir(exist_ok=True)
    (HERE / "corpus" / "kitchen.txt").write_text("\n".join(lines) + "\n")
    # Prompts shown as suggestions in the arena.
    prompts = [q for q, _ in styles["neutral"]]
    rng.shuffle(prompts)
    (HERE / "prompts").mkdir(exist_ok=True)
    (HERE / "prompts" / "kitchen.txt").write_text("\n".join(prompts[:20]) + "\n")
    # Every question with its category: the prompt catalog that gives battles a category
    # (qwen3arena.harvest) and a shipped prompt set.
    with open(HERE / "prompts" / "kitchen.jsonl", "w") as f:
        for question in sorted(q for q, _ in styles["neutral"]):
            f.write(json.dumps({"prompt": question, "category": category(question)}) + "\n")


def category(question: str) -> str:
    for start, name in (("How long", "fridge"), ("Can I freeze", "freezer"),
                        ("How should I store", "storage"), ("How do I cook", "cooking")):
        if question.startswith(start):
            return name
    return "chat"


if __name__ == "__main__":
    main()
