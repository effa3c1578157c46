"""Dataset checks: every problem names the row and what is wrong, before anything starts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from qwen3arena.train import DatasetError, load_conversations

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_messages_and_prompt_completion_rows_are_normalised(tmp_path):
    rows = load_conversations(write_jsonl(tmp_path / "d.jsonl", [
        GOOD,
        {"prompt": "hi", "completion": "hello"},
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}],
         "completion": [{"role": "assistant", "content": "y"}]},
    ]))
    assert [len(r["messages"]) for r in rows] == [2, 2, 3]
    assert rows[1]["messages"][1] == {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize("bad, message", [
    ('{"messages": [', "row 2 is not valid JSON"),
    ({"messages": [{"role": "user", "content": "q"}]}, "row 2: the last message must be the assistant"),
    ({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}, "row 2: message 0 needs a role"),
    ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}, "row 2: message 0 (user) needs non-empty"),
    ({"question": "q", "answer": "a"}, "row 2: expected 'messages', or 'prompt' and 'completion'"),
    ({"prompt": "q", "completion": " "}, "row 2: empty prompt or completion"),
])
def test_a_bad_row_is_named(tmp_path, bad, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_conversations(write_jsonl(tmp_path / "d.jsonl", [GOOD, bad, GOOD]))


def test_empty_too_small_and_unknown_files(tmp_path):
    with pytest.raises(DatasetError, match="empty"):
        load_conversations(write_jsonl(tmp_path / "e.jsonl", []))
    with pytest.raises(DatasetError, match="too small"):
        load_conversations(write_jsonl(tmp_path / "s.jsonl", [GOOD]))
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_conversations(tmp_path / "d.txt")
    with pytest.raises(DatasetError, match="no such file"):
        load_conversations(tmp_path / "missing.jsonl")


def test_csv_and_parquet(tmp_path):
    pd.DataFrame({"prompt": ["a", "b"], "completion": ["c", "d"]}).to_csv(tmp_path / "d.csv", index=False)
    assert len(load_conversations(tmp_path / "d.csv")) == 2
    pd.DataFrame({"text": ["a", "b"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DatasetError, match="expected a 'messages' column"):
        load_conversations(tmp_path / "bad.csv")
    pd.DataFrame({"messages": [GOOD["messages"], GOOD["messages"]]}).to_parquet(tmp_path / "d.parquet")
    assert load_conversations(tmp_path / "d.parquet")[0] == GOOD


def _uploads(tmp_path):
    """The application layer over just what uploads need: the data directory."""
    from types import SimpleNamespace

    from qwen3arena.api import Actions

    runtime = SimpleNamespace(settings=SimpleNamespace(home=tmp_path / "home"),
                              harvester=SimpleNamespace(round_files=lambda: []))
    return Actions(runtime)  # type: ignore[arg-type]


@pytest.mark.parametrize("name, content, offset", [
    ("latin1.jsonl", b'{"prompt": "caf\xe9", "completion": "a"}\n' + json.dumps(GOOD).encode() + b"\n", 15),
    ("latin1.csv", b"prompt,completion\nq,a\ncaf\xe9,b\n", 25),
    ("cut.json", b'[{"prompt": "q", "completion": "caf\xc3', 35),  # the file ends inside a character
])
def test_a_dataset_that_is_not_utf8_is_refused_and_not_kept(tmp_path, name, content, offset):
    actions = _uploads(tmp_path)
    before = actions.datasets()
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DatasetError) as refused:
        actions.upload_dataset(str(tmp_path / name))
    byte = content[offset]
    assert str(refused.value) == (f"{name} is not UTF-8 text (byte 0x{byte:02x} at offset {offset}); save it as "
                                  "UTF-8 (in a spreadsheet: CSV UTF-8) and upload it again")
    assert actions.datasets() == before  # nothing kept, nothing offered
    assert not list((tmp_path / "home" / "datasets").glob("*"))
    with pytest.raises(DatasetError, match="is not UTF-8 text"):  # a run on it is refused the same way
        load_conversations(tmp_path / name)


def test_an_upload_is_not_kept_whatever_its_check_raises(tmp_path, monkeypatch):
    import qwen3arena.train.data as data

    def broken(path, min_rows=2):
        raise MemoryError("too big")

    monkeypatch.setattr(data, "load_conversations", broken)
    write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    actions = _uploads(tmp_path)
    with pytest.raises(MemoryError):
        actions.upload_dataset(str(tmp_path / "d.jsonl"))
    assert not list((tmp_path / "home" / "datasets").glob("*"))


def test_the_shipped_datasets_are_valid():
    from qwen3arena.config import REPO_ROOT

    for path in (REPO_ROOT / "data" / "sft").glob("*.jsonl"):
        assert len(load_conversations(path)) > 100


PAIR = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}]}


def test_preference_pairs_in_both_trl_formats(tmp_path):
    from qwen3arena.train import load_preferences

    rows = load_preferences(write_jsonl(tmp_path / "p.jsonl", [
        PAIR, {"prompt": "q2", "chosen": "yes", "rejected": "no"}]))
    assert rows[0] == PAIR
    assert rows[1]["prompt"] == [{"role": "user", "content": "q2"}]
    assert rows[1]["rejected"] == [{"role": "assistant", "content": "no"}]
    csv = tmp_path / "p.csv"
    pd.DataFrame([{"prompt": "a", "chosen": "b", "rejected": "c"},
                  {"prompt": "d", "chosen": "e", "rejected": "f"}]).to_csv(csv, index=False)
    assert len(load_preferences(csv)) == 2


@pytest.mark.parametrize("row, message", [
    (GOOD, "row 2: a preference pair needs 'prompt', 'chosen' and 'rejected'; found ['messages']"),
    ({**PAIR, "chosen": PAIR["rejected"]}, "row 2: chosen and rejected are the same answer"),
    ({**PAIR, "prompt": [{"role": "assistant", "content": "x"}]}, "row 2: the prompt must end with a user message"),
    ({**PAIR, "chosen": [{"role": "user", "content": "x"}]}, "row 2: 'chosen' must be one assistant message"),
    ({**PAIR, "rejected": ""}, "row 2: empty rejected answer"),
])
def test_malformed_pairs_name_the_row(tmp_path, row, message):
    from qwen3arena.train import load_preferences

    with pytest.raises(DatasetError) as caught:
        load_preferences(write_jsonl(tmp_path / "p.jsonl", [PAIR, row, PAIR]))
    assert message in str(caught.value)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from qwen3arena.embedded import DATA_DIR
    from qwen3arena.embedded.tiny_qwen3 import build_tokenizer

    texts = (DATA_DIR / "corpus" / "kitchen.txt").read_text().splitlines()
    return build_tokenizer(texts, tmp_path_factory.mktemp("tok"), 2048)


def _chat(words: int) -> dict:
    return {"messages": [{"role": "user", "content": "Explain."},
                         {"role": "assistant", "content": " ".join(["salt"] * words)}]}


def test_length_stats_count_tokens_cuts_and_padding(tokenizer):
    from qwen3arena.train import length_stats

    rows = [_chat(n) for n in (5, 10, 20, 40, 400)]
    lengths = sorted(len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False),
                                   add_special_tokens=False)["input_ids"]) for r in rows)
    stats = length_stats(rows, tokenizer, max_length=lengths[3], batch_size=1)
    assert (stats.measured, stats.median, stats.longest) == (5, lengths[2], lengths[4])
    assert stats.truncated == 1, "only the 400-word row is over max_length"
    assert stats.padding_share == 0.0, "one row per batch: no padding"
    # all rows in one batch: padding is what the longest (cut) row adds to the others
    whole = length_stats(rows, tokenizer, max_length=lengths[3], batch_size=5)
    kept = [min(n, lengths[3]) for n in lengths]
    assert whole.padding_share == pytest.approx(1 - sum(kept) / (5 * lengths[3]))
    same = length_stats([_chat(10)] * 4, tokenizer, max_length=4096, batch_size=2)
    assert same.padding_share == 0.0 and same.truncated == 0
    assert length_stats(rows, tokenizer, 4096, 2, limit=3).measured == 3
    # short and long answers mixed: random pairs are mostly padding, length-grouped ones are not
    mixed = length_stats([_chat(n) for n in (5, 300) * 100], tokenizer, max_length=1024, batch_size=2)
    assert mixed.padding_share > 0.2 and mixed.grouped_padding_share < 0.05
    # rounded up to a multiple (grouped batches on a CPU), the same batches carry more padding
    rounded = length_stats([_chat(n) for n in (5, 300) * 100], tokenizer, max_length=1024, batch_size=2,
                           grouped_multiple=256)
    assert rounded.grouped_padding_share > mixed.grouped_padding_share + 0.1
    assert mixed.padded_steps == 100 and mixed.grouped_steps < 20, "fewer, fuller steps"


def test_the_preview_suggests_grouping_with_the_steps_an_epoch_would_take():
    from qwen3arena.train import LengthStats, LoraTrainConfig
    from qwen3arena.ui.train_tab import _lengths_note

    stats = LengthStats(measured=400, median=120, p95=900, longest=1500, truncated=3, padding_share=0.55,
                        grouped_padding_share=0.04, padded_steps=50, grouped_steps=9)
    config = LoraTrainConfig(name="n", base_model="b", dataset="d", output_dir="o", max_length=1024)
    note = _lengths_note(stats, 400, config)
    assert "3 row(s) are longer than max length 1,024" in note
    assert "55% padding; grouped by length, 4%" in note
    assert "takes 9 grouped steps instead of 50 padded ones" in note
    config.batching = "grouped"
    assert "batching is grouped" in _lengths_note(stats, 400, config) and "instead of" not in _lengths_note(
        stats, 400, config)
    calm = LengthStats(measured=400, median=120, p95=130, longest=140, truncated=0, padding_share=0.05,
                       grouped_padding_share=0.01, padded_steps=50, grouped_steps=8)
    assert "padding" not in _lengths_note(calm, 400, config)
