"""Training data in trl's formats, from JSONL, JSON, CSV or Parquet, checked row by row.

Every problem names the row and what is wrong, and is raised before a run starts, so a
malformed upload never costs a model load. Rows are normalised to {"messages": [...]}.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from qwen3arena.errors import Refused
from qwen3arena.train.batching import padded_length, token_budget_batches

ROLES = {"system", "user", "assistant"}
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEXT_SUFFIXES = (".jsonl", ".json", ".csv")  # read as UTF-8 text (Parquet is binary)
MIN_ROWS = 2


class DatasetError(Refused, ValueError):
    """The dataset cannot be trained on; the message names the row and the problem."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_conversations(path: str | Path, min_rows: int = MIN_ROWS) -> list[dict[str, Any]]:
    """Reads and checks a dataset; returns rows as {"messages": [...]}."""
    path = _existing(path)
    return _enough([_check_row(row, number, path.name) for number, row in _read(path)], path, min_rows, "row(s)")


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{path.name}: unsupported file type {suffix or '(none)'}; use one of {', '.join(SUFFIXES)}")
    if suffix in TEXT_SUFFIXES:
        _check_utf8(path)
    return path


def _check_utf8(path: Path, block_size: int = 1 << 20) -> None:
    """DatasetError naming the first byte that is not UTF-8 and where it is: a file saved in
    Latin-1 or Windows-1252 (a spreadsheet's CSV export) would otherwise fail deep in a reader
    with a codec traceback that does not say what to do."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes of the file handed to the decoder before this block
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            pending = len(decoder.getstate()[0])  # an unfinished character carried from the last block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, exc, offset - pending) from None
            offset += len(block)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:  # the file ends inside a character
            raise _not_utf8(path, exc, offset - pending) from None


def _not_utf8(path: Path, exc: UnicodeDecodeError, start: int) -> DatasetError:
    offset = start + exc.start
    return DatasetError(f"{path.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {offset}); "
                        "save it as UTF-8 (in a spreadsheet: CSV UTF-8) and upload it again")


def _enough(rows: list[dict[str, Any]], path: Path, min_rows: int, unit: str) -> list[dict[str, Any]]:
    if not rows:
        raise DatasetError(f"{path.name}: the dataset is empty")
    if len(rows) < min_rows:
        raise DatasetError(f"{path.name}: {len(rows)} {unit} is too small to train on (at least {min_rows})")
    return rows


@dataclass(frozen=True)
class _Table:
    """What a CSV/Parquet file must hold: one of the column sets; `lists`: the columns whose
    cells are message lists (JSON text in CSV, arrays in Parquet)."""

    columns: tuple[frozenset[str], ...]
    lists: frozenset[str]
    wanted: str


CONVERSATIONS = _Table((frozenset({"messages"}), frozenset({"prompt", "completion"})), frozenset({"messages"}),
                       "a 'messages' column or 'prompt' and 'completion' columns")
PAIRS = _Table((frozenset({"prompt", "chosen", "rejected"}),), frozenset({"prompt", "chosen", "rejected"}),
               "'prompt', 'chosen' and 'rejected' columns (preference data)")


def _read(path: Path, table: _Table = CONVERSATIONS) -> Iterable[tuple[int, Any]]:
    """(row number, row) from any supported file; tables are checked against `table`."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path.name}: row {number} is not valid JSON ({exc.msg})") from exc
        return
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(data, list):
            raise DatasetError(f"{path.name}: expected a JSON list of rows")
        yield from enumerate(data, start=1)
        return
    import pandas as pd

    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DatasetError(f"{path.name}: cannot be read as {suffix[1:].upper()} ({exc})") from exc
    found = set(map(str, frame.columns))
    if not any(needed <= found for needed in table.columns):
        raise DatasetError(f"{path.name}: expected {table.wanted}; found {sorted(found)}")
    for number, record in enumerate(frame.to_dict(orient="records"), start=2 if suffix == ".csv" else 1):
        for key in table.lists & set(record):
            value = record[key]
            if isinstance(value, str) and value.lstrip().startswith("["):
                try:
                    record[key] = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path.name}: row {number}: '{key}' is not valid JSON ({exc.msg})") from exc
            elif hasattr(value, "tolist"):
                record[key] = [dict(m) for m in value.tolist()]
        yield number, record

def _check_row(row: Any, number: int, name: str) -> dict[str, Any]:
    where = f"{name}: row {number}"
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected an object with 'messages' or 'prompt' and 'completion'")
    if row.get("messages") is not None:
        messages = row["messages"]
        _check_messages(messages, where)
        if messages[-1]["role"] != "assistant":
            raise DatasetError(f"{where}: the last message must be the assistant's answer")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not prompt.strip() or not completion.strip():
                raise DatasetError(f"{where}: empty prompt or completion")
            return {"messages": [{"role": "user", "content": prompt},
                                 {"role": "assistant", "content": completion}]}
        _check_messages(prompt, where + " (prompt)")
        _check_messages(completion, where + " (completion)")
        if completion[-1]["role"] != "assistant":
            raise DatasetError(f"{where}: the completion must end with an assistant message")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in prompt + completion]}
    raise DatasetError(f"{where}: expected 'messages', or 'prompt' and 'completion'; found {sorted(row)}")


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DatasetError(f"{where}: message {i} needs a role of system, user or assistant")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise DatasetError(f"{where}: message {i} ({message.get('role')}) needs non-empty text content")


def split_for_training(rows: list[dict[str, Any]], answers_only: bool) -> list[dict[str, Any]]:
    """answers_only: prompt/completion pairs, so trl computes the loss on the last answer only."""
    if not answers_only:
        return rows
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


def render_preview(rows: list[dict[str, Any]], tokenizer: Any, answers_only: bool,
                   limit: int = 3) -> list[tuple[str, str]]:
    """(masked, trained) text per row as the model sees it: the chat template applied; with
    answers_only the prompt part carries no loss."""
    previews = []
    for row in rows[:limit]:
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
        if answers_only and full.startswith(prompt):
            previews.append((prompt, full[len(prompt):]))
        else:
            previews.append(("", full))
    return previews


@dataclass(frozen=True)
class LengthStats:
    """Conversation lengths in tokens (chat template applied), and what they mean for batching."""

    measured: int          # rows measured (the first `limit`)
    median: int
    p95: int
    longest: int
    truncated: int         # rows longer than max_length: cut at max_length when training
    padding_share: float   # share of padded batches that would be padding (shuffled, batch_size rows)
    grouped_padding_share: float  # the same for length-grouped batches (batching "grouped")
    padded_steps: int      # steps an epoch of the measured rows takes: padded rows
    grouped_steps: int     # the same, grouped by length (up to batch x max_length tokens a step)


def length_stats(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, batch_size: int,
                 limit: int = 5000, seed: int = 0, grouped_multiple: int = 1) -> LengthStats:
    """Lengths decide whether grouping or packing pays (mixed lengths waste most of a padded
    batch) and whether max_length cuts answers; both are easier to fix before a run than after.
    `grouped_multiple`: what grouped batches are padded to on this device (`grouping_multiple`)."""
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in rows[:limit]]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [min(n, max_length) for n in lengths]
    random.Random(seed).shuffle(kept)  # the Trainer shuffles too
    batches = [kept[i:i + batch_size] for i in range(0, len(kept), max(batch_size, 1))]
    grouped = [[kept[i] for i in batch]
               for batch in token_budget_batches(kept, max(batch_size, 1) * max_length, seed,
                                                 multiple=grouped_multiple)]

    def padding(batches: list[list[int]], multiple: int = 1) -> float:
        padded = sum(padded_length(max(b), multiple) * len(b) for b in batches if b)
        return 1 - sum(kept) / padded if padded else 0.0

    ordered = sorted(lengths)
    return LengthStats(measured=len(lengths), median=int(statistics.median(lengths)),
                       p95=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], longest=ordered[-1],
                       truncated=sum(n > max_length for n in lengths),
                       padding_share=padding(batches), grouped_padding_share=padding(grouped, grouped_multiple),
                       padded_steps=len(batches), grouped_steps=len(grouped))


def load_preferences(path: str | Path, min_rows: int = MIN_ROWS) -> list[dict[str, Any]]:
    """Reads and checks preference pairs (trl's format, for DPO); returns conversational rows
    {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}."""
    path = _existing(path)
    return _enough([_check_pair(row, number, path.name) for number, row in _read(path, PAIRS)], path, min_rows,
                   "pair(s)")


def _check_pair(row: Any, number: int, name: str) -> dict[str, Any]:
    where = f"{name}: row {number}"
    if not isinstance(row, dict) or not {"prompt", "chosen", "rejected"} <= set(row):
        found = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DatasetError(f"{where}: a preference pair needs 'prompt', 'chosen' and 'rejected'; found {found}")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DatasetError(f"{where}: empty prompt")
        prompt = [{"role": "user", "content": prompt}]
    _check_messages(prompt, where + " (prompt)")
    if prompt[-1]["role"] != "user":
        raise DatasetError(f"{where}: the prompt must end with a user message")
    answers = {}
    for key in ("chosen", "rejected"):
        value = row[key]
        if isinstance(value, str):
            if not value.strip():
                raise DatasetError(f"{where}: empty {key} answer")
            value = [{"role": "assistant", "content": value}]
        _check_messages(value, f"{where} ({key})")
        if len(value) != 1 or value[0]["role"] != "assistant":
            raise DatasetError(f"{where}: '{key}' must be one assistant message")
        answers[key] = [{"role": "assistant", "content": value[0]["content"]}]
    if answers["chosen"] == answers["rejected"]:
        raise DatasetError(f"{where}: chosen and rejected are the same answer")
    return {"prompt": [{"role": m["role"], "content": m["content"]} for m in prompt], **answers}


def render_preference_preview(rows: list[dict[str, Any]], tokenizer: Any,
                              limit: int = 3) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) text per pair as DPO sees it: the chat template applied."""
    previews = []
    for row in rows[:limit]:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        texts = []
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=False)
            texts.append(full[len(prompt):] if full.startswith(prompt) else full)
        previews.append((prompt, texts[0], texts[1]))
    return previews


@dataclass(frozen=True)
class Upload:
    path: Path
    rows: int
    kind: str  # "conversations" (SFT) or "preferences" (DPO pairs)


def accept_upload(source: str | Path, uploads_dir: Path, stamp: str) -> Upload:
    """Keeps an uploaded dataset under `uploads_dir` (named `stamp-original`) if it is trainable as
    SFT conversations or as DPO pairs; a file that is neither is deleted again and the SFT check's
    DatasetError (naming the bad row) is raised: an upload is kept whole or not at all, whatever
    the check raises (a kept bad file would be offered as a dataset)."""
    source = _existing(source)  # a file type or encoding problem, named as the person named the file
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / f"{stamp}-{source.name}"
    target.write_bytes(source.read_bytes())
    try:
        return _classify(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _classify(path: Path) -> Upload:
    try:
        return Upload(path, len(load_conversations(path)), "conversations")
    except DatasetError as as_conversations:
        try:
            return Upload(path, len(load_preferences(path)), "preferences")
        except DatasetError:
            raise as_conversations from None
