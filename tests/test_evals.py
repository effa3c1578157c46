"""qwen3arena.evals: EvalScope reports -> BenchmarkScore rows -> DuckDB, never a fake zero.

The fixtures under tests/fixtures/evalscope_report_*.json were written by EvalScope 1.14.1
against the tiny Qwen3 served by vLLM (perf_metrics and the long description removed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import free_port
from qwen3arena.evals import (
    DATASETS,
    EvalDataset,
    EvalFailed,
    EvalRunner,
    EvalSettings,
    ReportError,
    collect,
    parse_report,
    run_evalscope,
)
from qwen3arena.evals.report import prediction_problem
from qwen3arena.evals.store import latest_primary_scores, list_scores, save_scores
from qwen3arena.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "tiny-qwen3-base"


def _work_dir(tmp_path: Path, benchmark: str, report: str, reviews: str | None = None,
              predictions: list[dict] | None = None) -> Path:
    """An EvalScope output layout (reports/, reviews/, predictions/) around captured files."""
    (tmp_path / "reports" / MODEL).mkdir(parents=True)
    shutil.copy(FIXTURES / report, tmp_path / "reports" / MODEL / f"{benchmark}.json")
    if reviews:
        (tmp_path / "reviews" / MODEL).mkdir(parents=True)
        shutil.copy(FIXTURES / reviews, tmp_path / "reviews" / MODEL / f"{benchmark}_default.jsonl")
    if predictions is not None:
        (tmp_path / "predictions" / MODEL).mkdir(parents=True)
        (tmp_path / "predictions" / MODEL / f"{benchmark}_default.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in predictions))
    return tmp_path


def _prediction(content: str, stop_reason: str = "stop", error: str | None = None, usage: bool = True) -> dict:
    return {"index": 0, "model_output": {
        "choices": [{"message": {"role": "assistant", "content": content}, "stop_reason": stop_reason}],
        "usage": {"input_tokens": 10, "output_tokens": 5} if usage else None, "error": error}}


# -- (a) report parsing --------------------------------------------------------------------------

def test_qa_report_gives_every_rouge_metric_and_marks_the_primary_one():
    rows = parse_report(FIXTURES / "evalscope_report_general_qa.json", "kitchen_qa", MODEL)
    by_metric = {r.metric: r for r in rows}
    assert sorted(by_metric) == sorted(f"rouge-{v}-{s}" for v in ("1", "2", "l")
                                       for s in ("recall", "precision", "f1"))
    primary = [r for r in rows if r.primary]
    assert [r.metric for r in primary] == ["rouge-l-recall"]
    assert primary[0].score == pytest.approx(0.6548)
    assert all(r.num == 5 and r.subset == "default" and r.benchmark == "general_qa" for r in rows)
    assert all(0 <= r.score <= 1 and r.status == "ok" for r in rows)


def test_mcq_report_gives_accuracy():
    [row] = parse_report(FIXTURES / "evalscope_report_general_mcq.json", "kitchen_mcq", MODEL)
    assert (row.metric, row.score, row.num, row.subset, row.primary) == ("accuracy", 0.2, 5, "default", True)


def test_collect_reads_a_whole_output_directory(tmp_path):
    rows = collect(_work_dir(tmp_path, "general_mcq", "evalscope_report_general_mcq.json",
                             predictions=[_prediction("ANSWER: A")]), "kitchen_mcq", "general_mcq", MODEL)
    assert [(r.metric, r.score, r.status) for r in rows] == [("accuracy", 0.2, "ok")]


def test_an_unknown_report_schema_or_a_missing_report_is_refused(tmp_path):
    data = json.loads((FIXTURES / "evalscope_report_general_mcq.json").read_text())
    data["schema_version"] = 3
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="schema_version"):
        parse_report(tmp_path / "r.json", "kitchen_mcq", MODEL)
    with pytest.raises(ReportError, match="no report"):
        collect(tmp_path, "kitchen_mcq", "general_mcq", MODEL)


def test_errored_samples_make_the_report_unusable(tmp_path):
    data = json.loads((FIXTURES / "evalscope_report_general_mcq.json").read_text())
    data["execution_summary"].update(errored=2, incomplete=True)
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="2 of 5 samples errored"):
        parse_report(tmp_path / "r.json", "kitchen_mcq", MODEL)


def test_shipped_datasets_are_in_evalscope_local_formats():
    qa, mcq = DATASETS["kitchen_qa"], DATASETS["kitchen_mcq"]
    assert qa.subsets() == ["default"] and mcq.subsets() == ["default"]
    assert qa.rows() == 30 and mcq.rows() == 30 and mcq.rows(limit=5) == 5
    for line in (qa.path / "default.jsonl").read_text().splitlines():
        assert set(json.loads(line)) == {"query", "response"}
    for line in (mcq.path / "default_val.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert set(row) == {"id", "question", "A", "B", "C", "D", "answer"}
        assert row["answer"] in "ABCD" and len({row[c] for c in "ABCD"}) == 4
    assert "ANSWER: [LETTER]" in mcq.dataset_args()["prompt_template"]  # English, not the Chinese default
    assert qa.dataset_args()["metric_list"] == ["Rouge"]


# -- (b) silent zeros ------------------------------------------------------------------------------

def test_a_metric_that_raised_is_failed_not_zero(tmp_path):
    """Offline, BLEU cannot load punkt_tab: EvalScope reports 0.0 and hides the error in the
    review metadata. The BLEU rows fail with the reason; ROUGE of the same run stays."""
    report = json.loads((FIXTURES / "evalscope_report_bleu_failed.json").read_text())
    assert {m["score"] for m in report["metrics"] if m["identity"]["name"] == "bleu"} == {0.0}
    rows = collect(_work_dir(tmp_path, "general_qa", "evalscope_report_bleu_failed.json",
                             "evalscope_report_bleu_failed_reviews.jsonl"), "kitchen_qa", "general_qa", MODEL)
    bleu = [r for r in rows if r.metric.startswith("bleu")]
    rouge = [r for r in rows if r.metric.startswith("rouge")]
    assert len(bleu) == 4 and len(rouge) == 9
    for row in bleu:
        assert row.status == "failed" and row.score is None
        assert "punkt_tab" in row.error and "3 of 3 samples" in row.error
    assert all(r.status == "ok" and r.score > 0 for r in rouge if r.metric.endswith("-1-recall"))


@pytest.mark.parametrize("predictions, message", [
    ([_prediction(""), _prediction("  ")], "all 2 answers are empty"),
    ([_prediction("ok"), _prediction("", error="boom")], "1 of 2 requests failed"),
    ([_prediction("This model's maximum context length is 2048 tokens", "model_length", usage=False)],
     "rejected by the server"),
])
def test_answers_that_are_not_answers_fail_the_dataset(tmp_path, predictions, message):
    assert message in prediction_problem([_work_dir(tmp_path, "general_mcq", "evalscope_report_general_mcq.json",
                                                    predictions=predictions)
                                          / "predictions" / MODEL / "general_mcq_default.jsonl"])
    rows = collect(tmp_path, "kitchen_mcq", "general_mcq", MODEL)
    assert [(r.status, r.score) for r in rows] == [("failed", None)]
    assert message in rows[0].error


def test_the_table_refuses_a_failed_row_with_a_score(tmp_path, store_target):
    store = Store(store_target)
    rows = collect(_work_dir(tmp_path / "w", "general_qa", "evalscope_report_bleu_failed.json",
                             "evalscope_report_bleu_failed_reviews.jsonl"), "kitchen_qa", "general_qa", MODEL)
    assert save_scores(store, rows) == 13
    stored = list_scores(store)
    assert sum(r.status == "failed" for r in stored) == 4
    assert store.execute("SELECT count(*) FROM benchmark_scores WHERE status = 'failed' "
                         "AND score IS NOT NULL") == [(0,)]
    bad = rows[0].__class__(**{**rows[0].__dict__, "status": "failed", "score": 0.0})
    with pytest.raises(ValueError, match="cannot carry a score"):
        save_scores(store, [bad])
    store.close()


# -- (c) a failed EvalScope run --------------------------------------------------------------------

@pytest.mark.slow  # starts Unsloth, vLLM or EvalScope
def test_a_dead_endpoint_fails_with_the_reason_and_stores_no_score(tmp_path):
    """Preflight off: EvalScope itself runs against a closed port and crashes; the job is failed
    with that reason, and the rows it leaves in DuckDB carry no score."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings = EvalSettings(preflight=False, retries=0, retry_interval_s=0)
    with pytest.raises(EvalFailed) as failed:
        run_evalscope(MODEL, url, ["kitchen_mcq"], tmp_path / "evals", limit=1, settings=settings)
    job = failed.value.job
    assert job.status == "failed"
    assert f"cannot reach the server at {url}" in job.error and "APIConnectionError" in job.error
    assert [(r.dataset, r.status, r.score, r.metric) for r in job.scores] == [("kitchen_mcq", "failed", None, None)]
    assert "APIConnectionError" in job.log_tail(200)  # the traceback is in the job's log

    store = Store(tmp_path / "db.duckdb")
    save_scores(store, job.scores)
    assert store.execute("SELECT count(*), count(score) FROM benchmark_scores") == [(1, 0)]
    assert latest_primary_scores(store) == []
    store.close()


def test_preflight_names_a_dead_endpoint_at_once(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EvalFailed, match="cannot reach the server"):
        run_evalscope(MODEL, url, work_dir=tmp_path, limit=1)
    with pytest.raises(ValueError, match="unknown eval dataset"):
        run_evalscope(MODEL, url, ["nope"], work_dir=tmp_path)


# -- (d) a real run: EvalScope against vLLM serving the tiny Qwen3 --------------------------------

def test_a_real_run_scores_the_served_model_and_stores_the_rows(runtime, tmp_path):
    store = Store(tmp_path / "db.duckdb")
    runner = EvalRunner(tmp_path / "evals", store)
    job_id = runner.start(MODEL, runtime.server.base_url, limit=5)
    job = runner.wait(job_id, timeout=600)
    assert job.status == "succeeded", f"{job.error}\n{job.log_tail(40)}"
    assert (job.done, job.total) == (10, 10)
    by_metric = {(r.dataset, r.metric): r for r in job.scores}
    rouge = by_metric[("kitchen_qa", "rouge-l-recall")]
    accuracy = by_metric[("kitchen_mcq", "accuracy")]
    assert rouge.primary and accuracy.primary
    assert rouge.num == 5 and accuracy.num == 5
    # The base was trained on these answers: ROUGE is a real, non-zero measurement.
    assert 0 < rouge.score <= 1
    assert 0 <= accuracy.score <= 1
    assert all(r.status == "ok" and r.source_version == "1.14.1" and r.run_id == job_id for r in job.scores)

    # The MCQ answers went through the English parser: each review has an extracted letter or none.
    reviews = list(Path(accuracy.work_dir).glob("reviews/*/general_mcq_default.jsonl"))[0]
    extracted = [json.loads(line)["sample_score"]["score"]["extracted_prediction"]
                 for line in reviews.read_text().splitlines()]
    assert len(extracted) == 5 and all(e in ("", "A", "B", "C", "D") for e in extracted)
    config = json.loads(rouge.config_json)
    assert config["generation_config"]["temperature"] == 0.0
    assert config["generation_config"]["extra_body"] == {"chat_template_kwargs": {"enable_thinking": False}}
    assert "api_key" not in config

    stored = list_scores(store, model=MODEL, run_id=job_id)
    assert len(stored) == len(job.scores) == 10
    assert {(r.dataset, r.metric) for r in latest_primary_scores(store)} == {
        ("kitchen_qa", "rouge-l-recall"), ("kitchen_mcq", "accuracy")}
    store.close()


def test_a_real_metric_error_is_caught_on_real_output(runtime, tmp_path):
    """BLEU asked for, offline: EvalScope writes 0.0; the rows come back failed, ROUGE stays."""
    nltk = pytest.importorskip("nltk")
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        pytest.skip("punkt_tab is installed here: BLEU would really be computed")
    except LookupError:
        pass
    bleu = EvalDataset("kitchen_qa_bleu", "general_qa", DATASETS["kitchen_qa"].path, metrics=("BLEU", "Rouge"))
    rows = run_evalscope(MODEL, runtime.server.base_url, [bleu], tmp_path, limit=2)
    failed = {r.metric for r in rows if r.status == "failed"}
    assert failed == {"bleu-1", "bleu-2", "bleu-3", "bleu-4"}
    assert all(r.score is None and "punkt_tab" in r.error for r in rows if r.status == "failed")
    assert any(r.metric == "rouge-l-recall" and r.status == "ok" for r in rows)
