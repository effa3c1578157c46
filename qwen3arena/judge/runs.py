"""Judge runs the app starts: voted arena battles, and a fixed prompt set against a baseline
(so a fresh checkpoint has a judge score before any human has seen it).

The runs are generators of progress lines; `JudgeRuns` runs them as background jobs (kind
"judge" in the jobs table), so a run outlives the request that started it, any page
re-attaches to it, and the app's shutdown stops it between chunks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from qwen3arena.config import JudgeSettings
from qwen3arena.jobs import INTERRUPTED, JobRecord, JobTable, join_all, wait_for
from qwen3arena.judge.service import Judge, JudgeError, Pair, PairJudgement
from qwen3arena.judge.store import JudgeStore
from qwen3arena.procs import new_job_id
from qwen3arena.serve import ChatError, ChatResult, Contestant, stream_chat
from qwen3arena.store import Store, utcnow

log = logging.getLogger(__name__)

CHUNK = 8


class Progress(str):
    """A progress line that also carries its counts, so a job records how far it got without
    reading the words back."""

    done: int
    total: int

    def __new__(cls, text: str, done: int = 0, total: int = 0) -> "Progress":
        line = super().__new__(cls, text)
        line.done, line.total = done, total
        return line


def judge_voted_battles(store: Store, settings: JudgeSettings, limit: int = 200) -> Iterator[Progress]:
    """Judges voted battles the current judge has not judged yet; yields Progress lines."""
    done = {j.battle_id for j in JudgeStore(store).list_judgements(judge_model=settings.model) if j.battle_id}
    todo = [bid for bid in store.recently_voted(limit * 4) if bid not in done][:limit]
    if not todo:
        yield Progress("Every voted battle is already judged.")
        return
    judge = Judge(settings, store)
    pairs = [Pair.from_battle(store.get_battle(bid)) for bid in todo]
    yield from _run(judge, pairs, "battles")


def judge_prompt_set(store: Store, settings: JudgeSettings, candidate: Contestant, baseline: Contestant,
                     prompts_file: Path, limit: int = 20, timeout_s: float = 120) -> Iterator[Progress]:
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
        yield Progress(f"answers: {number}/{len(prompts)}" + (f" ({failed} failed)" if failed else ""),
                       number, len(prompts))
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


def _run(judge: Judge, pairs: list[Pair], what: str) -> Iterator[Progress]:
    results: list[PairJudgement] = []
    for start in range(0, len(pairs), CHUNK):
        results += judge.judge(pairs[start:start + CHUNK])
        yield Progress(f"judged {len(results)}/{len(pairs)} {what}", len(results), len(pairs))
    verdicts = sum(r.outcome is not None for r in results)
    errors = sum(1 for r in results for g in r.games if g.error)
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in results)
    yield Progress(f"Done: {verdicts} of {len(results)} {what} have a verdict; {errors} judge replies had no usable "
                   f"verdict or failed (excluded, never counted as ties); {tokens:,} tokens used.",
                   len(results), len(pairs))


class JudgeRuns:
    """Judge runs as background jobs, one at a time (two runs would pay twice for the replies
    neither has cached yet). A thread runs each: the judge is HTTP, no child process needed."""

    def __init__(self, store: Store, settings: JudgeSettings):
        self.store = store
        self.settings = settings
        self._table = JobTable(store)
        self._stop: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._table.interrupt("judge")

    def start_battles(self, limit: int = 200) -> str:
        """Judges the voted battles the current judge has not judged yet; returns the job id."""
        return self._start({"what": "battles", "limit": limit},
                           lambda: judge_voted_battles(self.store, self.settings, limit))

    def start_prompt_set(self, candidate: Contestant, baseline: Contestant, prompts_file: Path,
                         limit: int = 20) -> str:
        """Both models answer the prompt set, the judge compares them; returns the job id."""
        if candidate.name == baseline.name:
            raise JudgeError("Choose two different models.")
        params = {"what": "prompts", "candidate": candidate.name, "baseline": baseline.name,
                  "prompts": str(prompts_file), "limit": limit}
        return self._start(params, lambda: judge_prompt_set(self.store, self.settings, candidate, baseline,
                                                            prompts_file, limit))

    def get(self, job_id: str) -> JobRecord | None:
        job = self._table.get(job_id)
        return job if job is not None and job.kind == "judge" else None

    def latest(self) -> JobRecord | None:
        return self._table.latest("judge")

    def jobs(self, limit: int = 50) -> list[JobRecord]:
        return self._table.list("judge", limit)

    def stop(self, job_id: str) -> bool:
        """Asks a running job to stop after its current chunk; False if it is not running here."""
        event = self._stop.get(job_id)
        if event is None or not self._threads[job_id].is_alive():
            return False
        event.set()
        return True

    def wait(self, job_id: str, timeout: float = 600.0) -> JobRecord:
        return wait_for(job_id, self.get, lambda job: not job.active, timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stops every job between chunks and waits for its row to say interrupted."""
        self._closing = True
        for job_id in list(self._stop):
            self.stop(job_id)
        join_all(self._threads.values(), timeout)

    def _start(self, params: dict, run: Callable[[], Iterator[Progress]]) -> str:
        with self._lock:
            if self._closing:
                raise JudgeError("The app is shutting down.")
            if any(t.is_alive() for t in self._threads.values()):
                raise JudgeError("A judge run is already running; it is shown below. Start another when it ends.")
            job = self._table.save(JobRecord(new_job_id(), "judge", params=params, progress={"stage": "queued"}))
            self._stop[job.job_id] = threading.Event()
            thread = threading.Thread(target=self._work, args=(job, run), daemon=True, name=f"judge-{job.job_id}")
            self._threads[job.job_id] = thread
            thread.start()
        return job.job_id

    def _work(self, job: JobRecord, run: Callable[[], Iterator[Progress]]) -> None:
        stop = self._stop[job.job_id]
        job = self._save(replace(job, status="running", started_at=utcnow(), progress={"stage": "starting"}))
        line, status, error = "", "succeeded", None
        try:
            lines = run()
            for line in lines:
                done, total = (line.done, line.total) if line.total else (job.done, job.total)
                job = self._save(replace(job, progress={"done": done, "total": total, "stage": str(line)}))
                if stop.is_set():
                    lines.close()
                    status, error = ("interrupted", INTERRUPTED) if self._closing else ("cancelled", "stopped")
                    break
        except JudgeError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # the app must survive any one run
            log.exception("judge job %s", job.job_id)
            status, error = "failed", f"judge run error: {type(exc).__name__}: {exc}"
        result = {"summary": str(line)} if status == "succeeded" else None
        self._save(replace(job, status=status, error=error, result=result, finished_at=utcnow()))

    def _save(self, job: JobRecord) -> JobRecord:
        try:
            return self._table.save(job)
        except Exception:  # the store closing under a shutdown: the next start marks it interrupted
            log.exception("saving judge job %s", job.job_id)
            return job
