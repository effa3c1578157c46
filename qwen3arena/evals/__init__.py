"""Benchmarks of served checkpoints with EvalScope, offline, on shipped local datasets.

    from qwen3arena.evals import EvalRunner
    runner = EvalRunner(settings.home / "evals", store)
    job_id = runner.start("tiny-qwen3-base", "http://127.0.0.1:8011/v1", limit=5)
    runner.get(job_id)      # status, done/total, error, scores, log_tail()

EvalScope itself runs in a child process (python -m qwen3arena.evals); scores land in the
DuckDB table benchmark_scores (qwen3arena.evals.store).
"""

from qwen3arena.evals.report import BenchmarkScore, ReportError, collect, parse_report
from qwen3arena.evals.runner import (
    DATASETS,
    EVALSCOPE_VERSION,
    EvalDataset,
    EvalFailed,
    EvalRejected,
    EvalJob,
    EvalRunner,
    EvalSettings,
    run_evalscope,
)

__all__ = [
    "BenchmarkScore", "DATASETS", "EVALSCOPE_VERSION", "EvalDataset", "EvalFailed", "EvalJob", "EvalRejected",
    "EvalRunner", "EvalSettings", "ReportError", "collect", "parse_report", "run_evalscope",
]
