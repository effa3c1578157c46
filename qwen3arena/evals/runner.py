"""Benchmarks a served checkpoint with EvalScope on the shipped local datasets, offline.

EvalScope runs in a child process (`python -m qwen3arena.evals`): its imports are heavy and a
crash in it must never touch the app. The parent only writes the task file, watches the
prediction files grow (progress), and reads the reports back with plain json (report.py).
Each dataset gets its own EvalScope run and output directory, so one failing dataset does not
hide the scores of another, and two datasets of the same EvalScope benchmark never collide.

Written against EvalScope 1.14.1 (pinned in requirements.txt); the child refuses another
minor version rather than misread its output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from qwen3arena.config import REPO_ROOT, EvalSettings
from qwen3arena.errors import Refused
from qwen3arena.evals.report import BenchmarkScore, ReportError, collect, utcnow
from qwen3arena.jobs import INTERRUPTED, JobRecord, JobTable, join_all, wait_for
from qwen3arena.procs import ChildProcess, child_env, log_tail, new_job_id

log = logging.getLogger(__name__)

DATA_DIR = REPO_ROOT / "data" / "evals"
EVALSCOPE_VERSION = "1.14.1"
# The child reads the endpoint's key from here, so it is never written to a task file.
API_KEY_ENV = "QWEN3ARENA_EVAL_API_KEY"

# EvalScope's own English single-answer template (utils.multi_choices.SINGLE_ANSWER_TEMPLATE):
# the general_mcq default is Chinese, and a non-Chinese template selects the English
# 'ANSWER: X' parser.
MCQ_PROMPT = (
    "Answer the following multiple choice question. The entire content of your response should "
    "be of the following format: 'ANSWER: [LETTER]' (without quotes) where [LETTER] is one of "
    "{letters}.\n\n{question}\n\n{choices}"
)

JobStatus = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled", "interrupted"]
FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")
LOG_NAME = "eval.log"
ProgressFn = Callable[[int, int, str], None]  # (predictions written, predictions planned, stage)


class EvalRejected(Refused, ValueError):
    """A benchmark job cannot start as asked (unknown dataset, bad limit); nothing was queued."""


class EvalFailed(Refused, RuntimeError):
    """No score could be measured; the message says why. `job` holds the details."""

    def __init__(self, job: "EvalJob"):
        super().__init__(job.error or "evaluation failed")
        self.job = job


@dataclass(frozen=True)
class EvalDataset:
    """A local dataset in one of EvalScope's custom formats.

    general_qa: <path>/<subset>.jsonl with {"query", "response"} (or "messages"), ROUGE.
    general_mcq: <path>/<subset>_val.jsonl with id, question, A-D, answer; accuracy.
    """

    name: str
    benchmark: Literal["general_qa", "general_mcq"]
    path: Path
    # general_qa: ROUGE only. BLEU needs NLTK's punkt_tab, absent offline, and EvalScope then
    # records it as 0.0 per sample (report.py refuses such scores if it is asked for).
    metrics: tuple[str, ...] = ("Rouge",)

    def subsets(self) -> list[str]:
        if self.benchmark == "general_mcq":
            return sorted(p.name[: -len("_val.jsonl")] for p in self.path.glob("*_val.jsonl"))
        return sorted(p.stem.removesuffix("_test") for p in self.path.glob("*.jsonl"))

    def rows(self, limit: int | None = None) -> int:
        """Samples one run evaluates (EvalScope applies the limit per subset)."""
        total = 0
        for subset in self.subsets():
            name = f"{subset}_val.jsonl" if self.benchmark == "general_mcq" else f"{subset}.jsonl"
            path = self.path / name
            if not path.exists():
                path = self.path / f"{subset}_test.jsonl"
            count = sum(1 for line in path.read_text().splitlines() if line.strip())
            total += min(count, limit) if limit else count
        return total

    def dataset_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"local_path": str(self.path), "subset_list": self.subsets()}
        if self.benchmark == "general_qa":
            args["metric_list"] = list(self.metrics)
        else:
            args["prompt_template"] = MCQ_PROMPT
        return args


DATASETS: dict[str, EvalDataset] = {
    "kitchen_qa": EvalDataset("kitchen_qa", "general_qa", DATA_DIR / "kitchen_qa"),
    "kitchen_mcq": EvalDataset("kitchen_mcq", "general_mcq", DATA_DIR / "kitchen_mcq"),
}


@dataclass
class EvalJob:
    """One benchmark run of one model: what a page polls."""

    job_id: str
    model: str
    base_url: str
    datasets: list[str]
    work_dir: str
    limit: int | None = None
    status: JobStatus = "queued"
    done: int = 0
    total: int = 0
    stage: str = "queued"
    error: str | None = None
    scores: list[BenchmarkScore] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None  # the EvalScope child, while it runs
    specs: list[EvalDataset] = field(default_factory=list, repr=False)  # resolved datasets

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fraction(self) -> float:
        return 1.0 if self.status == "succeeded" else min(self.done / self.total, 1.0) if self.total else 0.0

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(Path(self.work_dir) / LOG_NAME, lines)


def build_task_config(model: str, base_url: str, dataset: EvalDataset, work_dir: Path,
                      settings: EvalSettings, limit: int | None = None) -> dict[str, Any]:
    """The TaskConfig keyword arguments for one dataset (JSON; the API key is added by the child)."""
    extra_body = dict(settings.extra_body)
    if not settings.thinking:
        kwargs = {**extra_body.get("chat_template_kwargs", {}), "enable_thinking": False}
        extra_body["chat_template_kwargs"] = kwargs
    generation: dict[str, Any] = {
        "temperature": 0.0, "max_tokens": settings.max_tokens, "timeout": settings.request_timeout_s,
        "retries": settings.retries, "retry_interval": settings.retry_interval_s,
    }
    if extra_body:
        generation["extra_body"] = extra_body
    return {
        "model": model, "api_url": base_url, "eval_type": "openai_api",
        "datasets": [dataset.benchmark], "dataset_args": {dataset.benchmark: dataset.dataset_args()},
        "generation_config": generation, "eval_batch_size": settings.concurrency,
        "limit": limit, "work_dir": str(work_dir), "no_timestamp": True, "seed": 42,
    }


def run_evalscope(model_name: str, base_url: str, datasets: Sequence[str | EvalDataset] | None = None,
                  work_dir: str | Path = "evals", limit: int | None = None,
                  on_progress: ProgressFn | None = None, settings: EvalSettings | None = None,
                  api_key: str | None = None, cancel: threading.Event | None = None,
                  run_id: str | None = None) -> list[BenchmarkScore]:
    """Runs EvalScope in a child process and returns its scores (blocking).

    Rows whose number would be fake (a metric that raised, rejected requests, empty answers)
    come back with status "failed", score None and the reason. Raises EvalFailed when nothing
    at all could be measured (server unreachable, EvalScope crashed...).
    """
    settings = settings or EvalSettings()
    job = _new_job(model_name, base_url, datasets or settings.datasets, Path(work_dir),
                   settings.limit if limit is None else limit, run_id)
    execute(job, settings, api_key=api_key, on_progress=on_progress, cancel=cancel)
    if job.status in ("failed", "cancelled"):
        raise EvalFailed(job)
    return job.scores


def execute(job: EvalJob, settings: EvalSettings, api_key: str | None = None,
            on_progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            persist: Callable[[EvalJob], None] | None = None) -> None:
    """Runs one job to its end in the calling thread, recording everything on `job`.

    `persist` runs before the job shows a final status, so whoever waits for the job finds
    its rows already stored."""
    datasets = job.specs or [_resolve(d) for d in job.datasets]
    job_dir = Path(job.work_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    job.status, job.started_at, job.stage = "running", utcnow(), "checking the server"
    job.total = sum(d.rows(job.limit) for d in datasets)
    tasks = [{"dataset": d.name, "benchmark": d.benchmark,
              "config": build_task_config(job.model, job.base_url, d, job_dir / d.name, settings, job.limit)}
             for d in datasets]
    configs = {t["dataset"]: json.dumps(t["config"], sort_keys=True) for t in tasks}

    def progress(stage: str) -> None:
        job.done, job.stage = _predictions_written(job_dir, datasets), stage
        if on_progress is not None:
            on_progress(job.done, job.total, stage)

    reason = _preflight(job.base_url, job.model, api_key) if settings.preflight else None
    if reason:
        _finish(job, datasets, configs, {d.name: reason for d in datasets}, persist=persist)
        return
    spec = job_dir / "task.json"
    spec.write_text(json.dumps({"evalscope_version": EVALSCOPE_VERSION, "tasks": tasks}, indent=1))
    env = child_env({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     API_KEY_ENV: api_key or os.environ.get(API_KEY_ENV) or "EMPTY"})
    command = [sys.executable, "-m", "qwen3arena.evals", str(spec), "--events", str(job_dir / "events.jsonl")]
    child = ChildProcess(job.job_id, command, job_dir, env, log_name=LOG_NAME, cwd=job_dir)
    job.pid = child.start()
    deadline = time.monotonic() + settings.run_timeout_s
    stopped: str | None = None
    progress("starting EvalScope")
    while child.poll() is None:
        time.sleep(0.5)
        current = [e for e in child.events() if e.get("event") == "start"]
        progress(f"evaluating {current[-1]['dataset']}" if current else "starting EvalScope")
        if cancel is not None and cancel.is_set():
            stopped = "cancelled"
        elif time.monotonic() > deadline:
            stopped = f"timed out after {settings.run_timeout_s:.0f} s"
        if stopped:
            child.stop(grace_s=10.0)
            break
    child.wait()
    progress("reading the reports")
    if stopped == "cancelled":
        _finish(job, datasets, configs, {d.name: "cancelled" for d in datasets}, cancelled=True)
        return
    failures: dict[str, str] = {}
    events = child.events()
    done = {e["dataset"] for e in events if e.get("event") == "done"}
    for e in events:
        if e.get("event") == "failed" and e.get("dataset"):
            failures[e["dataset"]] = e.get("reason") or "EvalScope failed"
    crash = stopped or _crash_reason(child, job)
    for d in datasets:
        if d.name not in done and d.name not in failures:
            failures[d.name] = crash or "EvalScope did not finish this dataset"
    version = next((e.get("evalscope_version") for e in events if e.get("evalscope_version")), None)
    _finish(job, datasets, configs, failures, version=version, persist=persist)


def _finish(job: EvalJob, datasets: list[EvalDataset], configs: dict[str, str],
            failures: dict[str, str], cancelled: bool = False, version: str | None = None,
            persist: Callable[[EvalJob], None] | None = None) -> None:
    rows: list[BenchmarkScore] = []
    for d in datasets:
        if d.name in failures:
            got = [BenchmarkScore(job.model, d.name, None, None, 0, benchmark=d.benchmark,
                                  status="failed", error=failures[d.name])]
        else:
            try:
                got = collect(Path(job.work_dir) / d.name, d.name, d.benchmark, job.model)
            except ReportError as exc:
                got = [BenchmarkScore(job.model, d.name, None, None, 0, benchmark=d.benchmark,
                                      status="failed", error=str(exc))]
        now = utcnow()
        rows += [replace(r, run_id=job.job_id, created_at=now, config_json=configs[d.name],
                         work_dir=str(Path(job.work_dir) / d.name), source_version=version)
                 for r in got]
    job.scores = rows
    job.finished_at = utcnow()
    ok = [r for r in rows if r.status == "ok"]
    bad = {}
    for r in rows:
        if r.status == "failed":
            bad.setdefault(r.dataset, r.error)
    job.error = "; ".join(f"{name}: {why}" for name, why in bad.items()) or None
    if cancelled:
        job.status, job.stage = "cancelled", "cancelled"
        return
    if persist is not None and rows:
        persist(job)
    job.status = "succeeded" if not bad else "partial" if ok else "failed"
    job.stage = job.status


def _crash_reason(child: ChildProcess, job: EvalJob) -> str | None:
    if child.returncode == 0:
        return None
    reason = f"the EvalScope process ended: {child.exit_reason(lines=3)}"
    log.error("benchmark job %s: %s", job.job_id, reason)
    return reason


def _preflight(base_url: str, model: str, api_key: str | None, timeout_s: float = 10.0) -> str | None:
    """A clear reason now, instead of EvalScope retrying a dead or wrong endpoint per sample."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key or os.environ.get(API_KEY_ENV) or 'EMPTY'}"}
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"cannot reach the server at {base_url}: {type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"the server at {base_url} answered GET /models with HTTP {response.status_code}"
    try:
        served = [m.get("id") for m in response.json().get("data", [])]
    except (ValueError, AttributeError):
        return None  # not a listing we understand; let EvalScope try
    if served and model not in served:
        return f"the server at {base_url} does not serve {model!r} (it serves: {', '.join(map(str, served))})"
    return None


def _predictions_written(job_dir: Path, datasets: list[EvalDataset]) -> int:
    count = 0
    for d in datasets:
        for path in (job_dir / d.name).glob(f"predictions/*/{d.benchmark}_*.jsonl"):
            try:
                with open(path, "rb") as f:
                    count += f.read().count(b"\n")
            except OSError:
                pass
    return count


def _resolve(dataset: str | EvalDataset) -> EvalDataset:
    if isinstance(dataset, EvalDataset):
        return dataset
    if dataset not in DATASETS:
        raise EvalRejected(f"unknown eval dataset {dataset!r}; known: {sorted(DATASETS)}")
    return DATASETS[dataset]


def _new_job(model: str, base_url: str, datasets: Sequence[str | EvalDataset], work_root: Path,
             limit: int | None, run_id: str | None = None) -> EvalJob:
    resolved: list[EvalDataset] = []
    for dataset in map(_resolve, datasets):  # bad datasets fail here, before any job exists
        if not _NAME.match(dataset.name):
            raise EvalRejected(f"dataset name {dataset.name!r}: use letters, digits, '.', '_' or '-'")
        if not dataset.subsets():
            raise EvalRejected(f"dataset {dataset.name!r}: no {dataset.benchmark} files in {dataset.path}")
        if dataset.name not in {d.name for d in resolved}:
            resolved.append(dataset)
    if not resolved:
        raise EvalRejected("choose at least one dataset")
    if limit is not None and limit <= 0:
        raise EvalRejected("limit must be a positive number of samples per subset")
    run_id = run_id or new_job_id()
    return EvalJob(run_id, model, base_url, [d.name for d in resolved],
                   str(Path(work_root).resolve() / run_id), limit=limit, specs=resolved)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
class EvalRunner:
    """Background benchmark jobs for the app: start() returns a job id at once; one job runs at a
    time (they share the vLLM server with the arena); pages poll get()/log_tail().

    With a store, every job is a row of the jobs table (kind "benchmark"): a page re-attaches
    to it, an app restart still lists it, and a job the app died in is marked interrupted."""

    def __init__(self, work_root: Path, store: Any | None = None, settings: EvalSettings | None = None):
        self.work_root = Path(work_root)
        self.store = store
        self.settings = settings or EvalSettings()
        self._jobs: dict[str, EvalJob] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._keys: dict[str, str | None] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._slot = threading.Semaphore(1)
        self._lock = threading.Lock()
        self._closing = False
        self._table = JobTable(store) if store is not None else None
        if self._table is not None:
            self._table.interrupt("benchmark", marker="qwen3arena.evals")

    def start(self, model: str, base_url: str, datasets: Sequence[str | EvalDataset] | None = None,
              limit: int | None = None, api_key: str | None = None) -> str:
        """Queues a job; raises EvalRejected (nothing queued) for unknown datasets or a bad limit."""
        job = _new_job(model, base_url, datasets or self.settings.datasets, self.work_root,
                       self.settings.limit if limit is None else limit)
        thread = threading.Thread(target=self._work, args=(job.job_id,), daemon=True, name=f"eval-{job.job_id}")
        with self._lock:
            self._jobs[job.job_id] = job
            self._cancel[job.job_id] = threading.Event()
            self._keys[job.job_id] = api_key
            self._threads[job.job_id] = thread
        self._save(job)
        thread.start()
        return job.job_id

    def get(self, job_id: str) -> EvalJob | None:
        """A snapshot of the job (safe to read while it runs), or the stored job of an earlier
        app process."""
        job = self._jobs.get(job_id)
        if job is not None:
            return replace(job, scores=list(job.scores))
        record = self._table.get(job_id) if self._table is not None else None
        return self._from_record(record) if record is not None and record.kind == "benchmark" else None

    def jobs(self, limit: int = 50) -> list[EvalJob]:
        """Newest first, this process's and the stored ones."""
        if self._table is None:
            return [self.get(i) for i in reversed(list(self._jobs))][:limit]  # type: ignore[misc]
        return [self.get(r.job_id) or self._from_record(r) for r in self._table.list("benchmark", limit)]

    def latest(self) -> EvalJob | None:
        """The newest job (what a page that opens re-attaches to)."""
        jobs = self.jobs(limit=1)
        return jobs[0] if jobs else None

    def log_tail(self, job_id: str, lines: int = 25) -> str:
        job = self.get(job_id)
        return job.log_tail(lines) if job else ""

    def cancel(self, job_id: str) -> bool:
        event = self._cancel.get(job_id)
        job = self._jobs.get(job_id)
        if event is None or job is None or job.finished:
            return False
        event.set()
        return True

    def wait(self, job_id: str, timeout: float = 600.0) -> EvalJob:
        return wait_for(job_id, self.get, lambda job: job.finished, timeout)

    def shutdown(self, timeout: float = 15.0) -> None:
        """Stops every job (its EvalScope child, TERM then KILL) and waits for their rows to say
        interrupted, up to `timeout` seconds."""
        self._closing = True
        for job_id in list(self._jobs):
            self.cancel(job_id)
        join_all(self._threads.values(), timeout)

    def _work(self, job_id: str) -> None:
        job, cancel = self._jobs[job_id], self._cancel[job_id]
        seen: list[Any] = []

        def on_progress(done: int, total: int, stage: str) -> None:
            if seen != [done, stage]:  # a row write per change, not per poll
                seen[:] = [done, stage]
                self._save(job)

        with self._slot:
            try:
                if cancel.is_set():
                    job.status = job.stage = "cancelled"
                    job.finished_at = utcnow()
                else:
                    execute(job, self.settings, api_key=self._keys.pop(job_id, None), cancel=cancel,
                            on_progress=on_progress, persist=self._persist if self.store is not None else None)
            except Exception as exc:  # the runner must survive any one job
                job.status, job.error, job.finished_at = "failed", f"runner error: {exc}", utcnow()
                job.stage = "failed"
            if self._closing and job.status == "cancelled":
                job.status, job.stage, job.error = "interrupted", "interrupted", INTERRUPTED
            job.pid = None
            self._save(job)

    def _persist(self, job: EvalJob) -> None:
        from qwen3arena.evals.store import save_scores

        try:
            save_scores(self.store, job.scores)
        except Exception as exc:
            job.error = (job.error + "; " if job.error else "") + f"saving the scores failed: {exc}"

    def _save(self, job: EvalJob) -> None:
        """The job's row; a failed write (the store closing under a shutdown) loses only this
        update: the next start marks an unfinished row interrupted."""
        if self._table is None:
            return
        params = {"model": job.model, "base_url": job.base_url, "datasets": job.datasets,
                  "work_dir": job.work_dir, "limit": job.limit}
        result = {"rows": len(job.scores), "ok": sum(s.status == "ok" for s in job.scores)} if job.finished else None
        try:
            self._table.save(JobRecord(
                job.job_id, "benchmark", job.status, job.created_at, job.started_at, job.finished_at, job.pid,
                params, {"done": job.done, "total": job.total, "stage": job.stage}, result, job.error))
        except Exception:
            log.exception("saving benchmark job %s", job.job_id)

    def _from_record(self, record: JobRecord) -> EvalJob:
        """A job an earlier app process ran, as stored (its scores from benchmark_scores)."""
        from qwen3arena.evals.store import list_scores

        p = record.params
        return EvalJob(record.job_id, p["model"], p["base_url"], list(p["datasets"]), p["work_dir"],
                       limit=p.get("limit"), status=record.status, done=record.done, total=record.total,
                       stage=record.stage, error=record.error, scores=list_scores(self.store, run_id=record.job_id),
                       created_at=record.created_at, started_at=record.started_at,
                       finished_at=record.finished_at, pid=record.pid)


def job_summary(job: EvalJob) -> dict[str, Any]:
    """A JSON-able view of a job (for an API or a page)."""
    data = asdict(job)
    data.pop("specs")
    data["scores"] = [{k: v for k, v in asdict(s).items() if k != "config_json"} for s in job.scores]
    return json.loads(json.dumps(data, default=str))
