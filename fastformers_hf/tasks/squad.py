"""Loading SQuAD v1.1 data: the official nested JSON or Hub ``squad``-style JSON lines, flattened to the Hub
``squad`` columns (``id, title, context, question, answers: {text: [...], answer_start: [...]}``).

Parsed with the standard library: ``datasets.load_dataset("json")`` reads the official file as one row holding the
whole nested ``data`` list, so it would have to be flattened by hand anyway; reading it ourselves also lets every
answer be checked against its context (``context[answer_start:][:len(text)] == text``) with the question id named.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Sequence, Value

from ..errors import FastFormersError
from .data import local_data_name

logger = logging.getLogger(__name__)

BAD_ANSWER_POLICIES = ("skip", "error")
# The Hub `squad` dataset's features, so local files and the Hub dataset give the same columns and types.
SQUAD_FEATURES = Features({
    "id": Value("string"), "title": Value("string"), "context": Value("string"), "question": Value("string"),
    "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")}),
})
# File stems of each split, in the order we look for them; a single file whose stem names none goes to "train",
# as in `load_task_data`.
SPLIT_STEMS = {"train": ("train",), "validation": ("dev", "validation", "val")}
EXTENSIONS = (".json", ".jsonl")
_FORMATS = ("SQuAD v1.1 JSON ({'data': [{'title', 'paragraphs': [{'context', 'qas': [{'id', 'question', "
            "'answers': [{'text', 'answer_start'}]}]}]}]}) or JSON lines with the Hub `squad` columns "
            "(id, title, context, question, answers: {text: [...], answer_start: [...]})")


def load_squad(path: str | os.PathLike, on_bad_answers: str = "skip") -> DatasetDict:
    """``train``/``validation`` splits from a folder holding ``train.json`` and ``dev.json`` (or ``.jsonl``;
    ``validation``/``val`` also name the second) or from one file (its split named by its stem, else ``train``).

    ``on_bad_answers``: questions without answers and answers whose ``answer_start`` does not point at their text
    are counted, skipped and reported in the log (``"skip"``), or refused with the file and question id
    (``"error"``).
    """
    if on_bad_answers not in BAD_ANSWER_POLICIES:
        raise FastFormersError(f"on_bad_answers must be one of {BAD_ANSWER_POLICIES}, got {on_bad_answers!r}.")
    path = Path(path)
    if path.is_file():
        stem = path.stem.lower()
        split = next((s for s, stems in SPLIT_STEMS.items() if stem in stems), "train")
        return DatasetDict({split: read_squad_file(path, on_bad_answers)})
    if not path.is_dir():
        raise FastFormersError(f"SQuAD data not found: {path}")
    splits = {}
    for split, stems in SPLIT_STEMS.items():
        found = [path / f"{stem}{ext}" for stem in stems for ext in EXTENSIONS if (path / f"{stem}{ext}").is_file()]
        if found:
            splits[split] = read_squad_file(found[0], on_bad_answers)
    if not splits:
        raise FastFormersError(f"{path} holds no SQuAD files: expected train.json and dev.json (or .jsonl).")
    return DatasetDict(splits)


def read_squad_file(path: str | os.PathLike, on_bad_answers: str = "skip") -> Dataset:
    """One file of SQuAD v1.1 JSON or Hub-style JSON lines as a Dataset with the Hub ``squad`` columns."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # not one JSON document: JSON lines, or neither
    if isinstance(whole, dict) and "data" in whole:
        records = _from_squad_json(path, whole)
    elif whole is None or (isinstance(whole, dict) and "question" in whole):  # a one-line JSON lines file parses whole
        records = _from_json_lines(path, text)
    else:
        raise FastFormersError(f"{path} is JSON but not SQuAD data (a {type(whole).__name__}"
                               f"{' with keys ' + str(sorted(whole)[:5]) if isinstance(whole, dict) else ''}); "
                               f"expected {_FORMATS}.")
    rows = _check_answers(path, records, on_bad_answers)
    seen = set()
    for row in rows:
        if row["id"] in seen:  # predictions are matched to questions by id
            raise FastFormersError(f"{path}: question id {row['id']!r} appears twice; ids must be unique.")
        seen.add(row["id"])
    columns = {name: [row[name] for row in rows] for name in SQUAD_FEATURES}
    dataset = Dataset.from_dict(columns, features=SQUAD_FEATURES)
    dataset.info.dataset_name = local_data_name(path)
    return dataset


def _from_squad_json(path: Path, whole: dict) -> list[dict]:
    """The official nesting (article -> paragraph -> question) flattened; answers as ``[(text, start), ...]``."""
    records = []
    try:
        for article in whole["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    records.append(dict(id=str(qa["id"]), title=article.get("title", ""),
                                        context=paragraph["context"], question=qa["question"],
                                        answers=[(a["text"], a["answer_start"]) for a in qa["answers"]],
                                        impossible=bool(qa.get("is_impossible"))))
    except (KeyError, TypeError) as e:
        where = f" (after question {records[-1]['id']!r})" if records else ""
        raise FastFormersError(f"{path} is not valid SQuAD v1.1 JSON{where}: missing or malformed "
                               f"{e if isinstance(e, KeyError) else 'entry'} ({type(e).__name__}); "
                               f"expected {_FORMATS}.") from None
    if not records:
        raise FastFormersError(f"{path} holds no questions; expected {_FORMATS}.")
    return records


def _from_json_lines(path: Path, text: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers = row["answers"]
            records.append(dict(id=str(row["id"]), title=row.get("title") or "", context=row["context"],
                                question=row["question"],
                                answers=list(zip(answers["text"], answers["answer_start"], strict=True)),
                                impossible=False))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            detail = f"missing {e}" if isinstance(e, KeyError) else type(e).__name__
            raise FastFormersError(f"{path} line {number} is not a SQuAD record ({detail}); "
                                   f"expected {_FORMATS}.") from None
    if not records:
        raise FastFormersError(f"{path} holds no questions; expected {_FORMATS}.")
    return records


def _check_answers(path: Path, records: list[dict], on_bad_answers: str) -> list[dict]:
    """Rows with only the answers found at their ``answer_start``; questions left with none are dropped."""
    rows, no_answers, all_bad, bad_answers, impossible = [], 0, 0, 0, 0
    for r in records:
        good = [(t, s) for t, s in r["answers"] if isinstance(s, int) and s >= 0 and r["context"][s:s + len(t)] == t]
        if len(good) < len(r["answers"]) and on_bad_answers == "error":
            text, start = next((t, s) for t, s in r["answers"] if (t, s) not in good)
            found = r["context"][start:start + len(text)] if isinstance(start, int) else None
            raise FastFormersError(
                f"{path}: question {r['id']!r}: answer {text!r} is not at answer_start {start!r} of its context "
                f"(found {found!r}); set answer_start to the answer's character offset in the context, or pass "
                "on_bad_answers='skip' to drop such answers.")
        if not r["answers"] and on_bad_answers == "error":
            raise FastFormersError(
                f"{path}: question {r['id']!r} has no answers; SQuAD v1.1 needs at least one per question "
                f"{'(this looks like SQuAD v2, which has unanswerable questions) ' if r['impossible'] else ''}"
                "— remove it, or pass on_bad_answers='skip' to drop such questions.")
        bad_answers += len(r["answers"]) - len(good)
        no_answers += not r["answers"]
        impossible += r["impossible"]
        if not good:
            all_bad += bool(r["answers"])
            continue
        rows.append(dict(id=r["id"], title=r["title"], context=r["context"], question=r["question"],
                         answers={"text": [t for t, _ in good], "answer_start": [s for _, s in good]}))
    if no_answers or bad_answers:
        logger.warning(
            "%s: skipped %d of %d questions (%d without answers%s, %d whose every answer is off its answer_start) "
            "and %d answers whose answer_start does not match the context; pass on_bad_answers='error' to refuse "
            "such data.", path, no_answers + all_bad, len(records), no_answers,
            f", {impossible} marked is_impossible: SQuAD v2" if impossible else "", all_bad, bad_answers)
    if not rows:
        raise FastFormersError(f"{path}: no question has an answer found in its context.")
    return rows
