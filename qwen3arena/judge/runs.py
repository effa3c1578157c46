"""Judge runs the app starts: voted arena battles, and a fixed prompt set against a baseline
(so a fresh checkpoint has a judge score before any human has seen it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

from qwen3arena.config import JudgeSettings
from qwen3arena.judge.service import Judge, Pair, PairJudgement
from qwen3arena.judge.store import JudgeStore
from qwen3arena.serve import ChatError, ChatResult, Contestant, stream_chat
from qwen3arena.store import Store

CHUNK = 8


def judge_voted_battles(store: Store, settings: JudgeSettings, limit: int = 200) -> Iterator[str]:
    """Judges voted battles the current judge has not judged yet; yields progress lines."""
    done = {j.battle_id for j in JudgeStore(store).list_judgements(judge_model=settings.model) if j.battle_id}
    rows = store.execute("SELECT battle_id FROM votes ORDER BY created_at DESC LIMIT ?", [limit * 4])
    todo = [bid for (bid,) in rows if bid not in done][:limit]
    if not todo:
        yield "Every voted battle is already judged."
        return
    judge = Judge(settings, store)
    pairs = [Pair.from_battle(store.get_battle(bid)) for bid in todo]
    yield from _run(judge, pairs, "battles")


def judge_prompt_set(store: Store, settings: JudgeSettings, candidate: Contestant, baseline: Contestant,
                     prompts_file: Path, limit: int = 20, timeout_s: float = 120) -> Iterator[str]:
    """Both models answer each prompt of the set (greedy), then the judge compares them."""
    prompts = [p for p in prompts_file.read_text().splitlines() if p.strip()][:limit]
    judge = Judge(settings, store)
    pairs, failed = [], 0
    for number, prompt in enumerate(prompts, start=1):
        answers = []
        for contestant in (candidate, baseline):
            answers.append(_answer(contestant, prompt, timeout_s))
        if None in answers:
            failed += 1
        else:
            pairs.append(Pair.from_prompt(f"{prompts_file.stem}/{number}", prompt, candidate.name, answers[0],
                                          baseline.name, answers[1]))
        yield f"answers: {number}/{len(prompts)}" + (f" ({failed} failed)" if failed else "")
    yield from _run(judge, pairs, "prompts")


def _answer(contestant: Contestant, prompt: str, timeout_s: float) -> str | None:
    params = dataclasses.replace(contestant.generation, temperature=0.0)
    try:
        for event in stream_chat(contestant.endpoint, [{"role": "user", "content": prompt}], params,
                                 False if contestant.thinking_switch else None, timeout_s):
            if isinstance(event, ChatResult):
                return event.content
    except ChatError:
        return None
    return None


def _run(judge: Judge, pairs: list[Pair], what: str) -> Iterator[str]:
    results: list[PairJudgement] = []
    for start in range(0, len(pairs), CHUNK):
        results += judge.judge(pairs[start:start + CHUNK])
        yield f"judged {len(results)}/{len(pairs)} {what}"
    verdicts = sum(r.outcome is not None for r in results)
    errors = sum(1 for r in results for g in r.games if g.error)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in results)
    yield (f"Done: {verdicts} of {len(results)} {what} have a verdict; {errors} judge replies had no usable "
           f"verdict or failed (excluded, never counted as ties); {tokens:,} tokens used.")
