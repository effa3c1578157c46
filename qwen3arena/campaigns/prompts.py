"""Prompt sets for campaigns: an uploaded JSONL file or a set shipped in data/prompts.

JSONL: one object per line, {"prompt": "..."} with an optional "id" (string or number).
A bad file is refused whole, with the line and the reason for every bad line (up to 20):
half a prompt set would skew a campaign silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from qwen3arena.errors import Refused
from qwen3arena.config import REPO_ROOT

SHIPPED_DIR = REPO_ROOT / "data" / "prompts"
MAX_PROMPT_CHARS = 4000


class PromptFileError(Refused, ValueError):
    """The prompt file cannot be used; the message names each bad line and why."""


@dataclass(frozen=True)
class CampaignPrompt:
    prompt_id: str
    text: str


def parse_prompt_jsonl(text: str, max_prompts: int = 5000, max_chars: int = MAX_PROMPT_CHARS) -> list[CampaignPrompt]:
    """Prompts from JSONL text; PromptFileError listing every bad line."""
    prompts: list[CampaignPrompt] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            errors.append(f"line {number}: expected an object like {{\"prompt\": \"...\"}}, got {type(row).__name__}")
            continue
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            errors.append(f"line {number}: missing \"prompt\" (a non-empty string)")
            continue
        if len(prompt) > max_chars:
            errors.append(f"line {number}: the prompt has {len(prompt):,} characters; the limit is {max_chars:,}")
            continue
        raw_id = row.get("id", f"p{len(prompts) + 1}")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            errors.append(f"line {number}: \"id\" must be a non-empty string or a number")
            continue
        prompt_id = str(raw_id).strip()
        if prompt_id in seen:
            errors.append(f"line {number}: id {prompt_id!r} was already used on line {seen[prompt_id]}")
            continue
        seen[prompt_id] = number
        prompts.append(CampaignPrompt(prompt_id, prompt.strip()))
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise PromptFileError("The prompt file has errors, nothing was created:\n" + "\n".join(shown))
    if not prompts:
        raise PromptFileError("The prompt file has no prompts (one JSON object per line: {\"prompt\": \"...\"}).")
    if len(prompts) > max_prompts:
        raise PromptFileError(f"The prompt file has {len(prompts):,} prompts; "
                              f"a campaign takes at most {max_prompts:,}.")
    return prompts


def shipped_prompt_sets() -> list[str]:
    """Names of the prompt sets in data/prompts (.txt: one prompt per line, or .jsonl)."""
    if not SHIPPED_DIR.exists():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.suffix in (".txt", ".jsonl"))


def load_shipped(name: str, max_prompts: int = 5000) -> list[CampaignPrompt]:
    path = SHIPPED_DIR / Path(name).name
    if path.name not in shipped_prompt_sets():
        raise PromptFileError(f"No shipped prompt set named {name!r}; choose one of {shipped_prompt_sets()}.")
    text = path.read_text()
    if path.suffix == ".jsonl":
        return parse_prompt_jsonl(text, max_prompts)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [CampaignPrompt(f"{path.stem}-{i}", line) for i, line in enumerate(lines[:max_prompts], start=1)]
