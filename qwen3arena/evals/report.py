"""Reads one EvalScope 1.14.1 output directory into BenchmarkScore rows, refusing fake zeros.

EvalScope writes <work_dir>/{predictions,reviews,reports}/<model_id>/... . The report
(reports/<model_id>/<benchmark>.json, schema_version 2) has no top-level score: each entry of
metrics[] names itself by identity {name, aggregation, dimensions} and carries per-subset
scores in categories[].subsets[]. Parsed here with plain json, so the app never imports
EvalScope.

EvalScope degrades some failures into scores: a metric that raises (BLEU without NLTK's
punkt_tab, offline) is recorded as 0.0 for the sample, its error only kept in the review's
score.metadata.metric_errors; a request the server rejects as too long becomes an "answer"
holding the error text. Such numbers are not measurements, so the checks below turn them into
failed rows with the reason (score None), never into a stored 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal
from qwen3arena.errors import Refused

REPORT_SCHEMA_VERSION = 2
ScoreStatus = Literal["ok", "failed"]
# Identity dimensions that name the metric variant, in the order they read best.
_DIMENSION_ORDER = ("variant", "ngram", "statistic")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class BenchmarkScore:
    """One metric of one subset of one dataset for one model; score is None when failed."""

    model: str
    dataset: str                      # shipped dataset name, e.g. kitchen_qa
    metric: str | None                # e.g. accuracy, rouge-l-recall; None for a run-level failure
    score: float | None               # 0-1; None whenever status is failed
    num: int                          # samples the score is over
    subset: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    config_json: str = "{}"
    work_dir: str | None = None
    benchmark: str | None = None      # EvalScope benchmark, e.g. general_qa
    primary: bool = False             # the report's primary metric (its conclusion)
    status: ScoreStatus = "ok"
    error: str | None = None
    run_id: str | None = None
    source: str = "evalscope"
    source_version: str | None = None


class ReportError(Refused, ValueError):
    """The output directory does not hold a report this parser understands."""


def metric_name(identity: dict[str, Any]) -> str:
    """'accuracy', 'rouge-l-recall', 'rouge-1-f1': name, then the variant dimensions."""
    dims = {k: v for k, v in (identity.get("dimensions") or {}).items() if k != "subset"}
    ordered = [k for k in _DIMENSION_ORDER if k in dims] + sorted(k for k in dims if k not in _DIMENSION_ORDER)
    return "-".join([str(identity["name"]), *(str(dims[k]).lower() for k in ordered)])


def parse_report(path: Path, dataset: str, model: str) -> list[BenchmarkScore]:
    """Rows for every metric x subset of one report file (schema_version 2 only)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read EvalScope report {path}: {exc}") from exc
    if data.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise ReportError(f"{path}: report schema_version {data.get('schema_version')!r}, "
                          f"this parser reads {REPORT_SCHEMA_VERSION} (EvalScope 1.14.1)")
    primary = data.get("primary_metric_identity")
    rows = []
    for metric in data.get("metrics") or []:
        identity = metric["identity"]
        subsets = [s for c in metric.get("categories") or [] for s in c.get("subsets") or []
                   if not s.get("is_aggregate")]
        common = dict(model=model, dataset=dataset, metric=metric_name(identity),
                      benchmark=data.get("dataset_name"), primary=identity == primary)
        for subset in subsets:
            rows.append(BenchmarkScore(score=float(subset["score"]), num=int(subset["num"]),
                                       subset=subset["name"], **common))
        if len(subsets) > 1:  # the metric over all subsets, as EvalScope aggregates it
            rows.append(BenchmarkScore(score=float(metric["score"]), num=int(metric["num"]),
                                       subset="OVERALL", **common))
    if not rows:
        reason = data.get("primary_metric_unavailable_reason") or "the report holds no metric"
        raise ReportError(f"{path}: no scores ({reason})")
    summary = data.get("execution_summary") or {}
    if summary.get("errored") or summary.get("incomplete"):
        raise ReportError(f"{path}: {summary.get('errored')} of {summary.get('requested')} samples "
                          "errored; a score over the rest would be biased")
    return rows


@dataclass
class _MetricErrors:
    samples: int = 0
    first: str = ""


def review_metric_errors(review_files: Iterable[Path]) -> tuple[int, dict[str, _MetricErrors]]:
    """(samples reviewed, metric family -> samples whose metric raised) from review JSONL."""
    total, errors = 0, {}
    for path in review_files:
        for record in _jsonl(path):
            total += 1
            score = (record.get("sample_score") or {}).get("score") or {}
            for family, text in ((score.get("metadata") or {}).get("metric_errors") or {}).items():
                entry = errors.setdefault(family.lower(), _MetricErrors(first=_oneline(text)))
                entry.samples += 1
    return total, errors


def prediction_problem(prediction_files: Iterable[Path]) -> str | None:
    """Why the answers are not the model's answers (errors, rejected requests, all empty)."""
    total, empty, failed, first = 0, 0, 0, ""
    for path in prediction_files:
        for record in _jsonl(path):
            total += 1
            output = record.get("model_output") or {}
            choice = (output.get("choices") or [{}])[0]
            text = _text((choice.get("message") or {}).get("content"))
            rejected = choice.get("stop_reason") in ("model_length", "content_filter") and not output.get("usage")
            if output.get("error") or rejected:
                failed += 1
                first = first or _oneline(output.get("error") or text)
            elif not text.strip():
                empty += 1
    if failed:
        return (f"{failed} of {total} requests failed or were rejected by the server, so their "
                f"answers are error text, not the model's: {first}")
    if total and empty == total:
        return (f"all {total} answers are empty (does the model only think? evaluate with "
                "thinking off, or raise max_tokens)")
    return None


def collect(work_dir: Path, dataset: str, benchmark: str, model: str) -> list[BenchmarkScore]:
    """Scores of one EvalScope run over one dataset, with every fake score turned into a failure.

    Raises ReportError when there is no usable report at all.
    """
    work_dir = Path(work_dir)
    reports = sorted(work_dir.glob(f"reports/*/{benchmark}.json"))
    if not reports:
        raise ReportError(f"EvalScope wrote no report for {benchmark} under {work_dir / 'reports'}")
    rows = parse_report(reports[0], dataset, model)
    problem = prediction_problem(sorted(work_dir.glob(f"predictions/*/{benchmark}_*.jsonl")))
    if problem:
        return [_failed(row, problem) for row in rows]
    reviewed, errors = review_metric_errors(sorted(work_dir.glob(f"reviews/*/{benchmark}_*.jsonl")))
    out = []
    for row in rows:
        family = row.metric.split("-", 1)[0].lower() if row.metric else ""
        # Errors of a family no report metric is named after cannot be placed: fail them all.
        hits = [errors[family]] if family in errors else [
            e for f, e in errors.items() if not any(r.metric and r.metric.startswith(f) for r in rows)]
        if hits:
            worst = max(hits, key=lambda e: e.samples)
            out.append(_failed(row, f"{row.metric} could not be computed for {worst.samples} of "
                                    f"{reviewed} samples (EvalScope scored them 0.0): {worst.first}"))
        else:
            out.append(row)
    return out


def _failed(row: BenchmarkScore, reason: str) -> BenchmarkScore:
    return replace(row, score=None, status="failed", error=reason)


def _oneline(text: Any, limit: int = 200) -> str:
    """NLTK's LookupError is a framed banner: keep its words, on one line."""
    return " ".join(str(text).replace("*", " ").split())[:limit]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line being written
