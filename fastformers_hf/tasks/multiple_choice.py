"""Multiple-choice data: SuperGLUE COPA and OpenBookQA JSON lines read into one raw layout, ``id`` / ``context`` /
``choices`` (a list of texts) / ``label`` (the index of the right choice), and its tokenisation to one row of token
ids per choice, ``(choices, length)`` per example, padded per batch by ``DataCollatorForMultipleChoice``.

Each choice is encoded as the pair ``(context, choice)``. OpenBookQA: ``(question_stem, choice text)``. COPA, as
the SuperGLUE baselines do, turns the question into a connective that starts the second segment: ``(premise,
"because " + choice)`` for ``question == "cause"``, ``(premise, "so " + choice)`` for ``"effect"``, the choice's
first letter lowercased unless its first word is ``I`` (``I'm``, ...) or an acronym (``NASA``).

Every row is checked before a Dataset is built; bad input raises :class:`FastFormersError` naming the file, the
line and the fix.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from datasets import Dataset, DatasetDict, Features, List, Value

from ..errors import FastFormersError
from .data import local_data_name
from .names import MIXED_CHOICES

FEATURES = Features({"id": Value("string"), "context": Value("string"), "choices": List(Value("string")),
                     "label": Value("int64")})
SPLIT_STEMS = {"train": ("train",), "validation": ("dev", "validation", "val")}
EXTENSIONS = (".jsonl", ".json")
COPA_CONNECTIVES = {"cause": "because", "effect": "so"}
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")

Row = dict  # one JSON object of a file
Reader = Callable[[Path, int, Row], dict]  # (file, line number, row) -> {"id", "context", "choices", "label"}


def _field(path: Path, number: int, row: Row, name: str, kind: type = str):
    value = row.get(name) if isinstance(row, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        got = "missing" if not isinstance(row, dict) or name not in row else f"a {type(value).__name__}"
        raise FastFormersError(f"{path}, line {number}: field {name!r} is {got}, not a {kind.__name__}; fix the "
                               "row or remove it.")
    return value


def lower_first(text: str) -> str:
    """``text`` with its first letter lowercased, unless its first word is ``I`` (``I'm``) or an acronym (``NASA``)."""
    word = text.split(" ", 1)[0].split("'", 1)[0]
    keep = not text or word == "I" or (len(word) > 1 and word.isupper())
    return text if keep else text[0].lower() + text[1:]


def copa_row(path: Path, number: int, row: Row) -> dict:
    """One COPA row (``premise``, ``choice1``, ``choice2``, ``question``, ``label``) in the raw layout."""
    premise, question = _field(path, number, row, "premise"), _field(path, number, row, "question")
    if question not in COPA_CONNECTIVES:
        raise FastFormersError(f"{path}, line {number}: question {question!r} is neither 'cause' nor 'effect'; "
                               "COPA asks for the cause or the effect of the premise.")
    connective = COPA_CONNECTIVES[question]
    choices = [f"{connective} {lower_first(_field(path, number, row, name))}" for name in ("choice1", "choice2")]
    label = _field(path, number, row, "label", int)
    if label not in (0, 1):
        raise FastFormersError(f"{path}, line {number}: label {label} is not 0 (choice1) or 1 (choice2); fix it, or "
                               "remove the row (SuperGLUE's unlabelled test file marks rows -1).")
    return {"id": str(row.get("idx", number - 1)), "context": premise, "choices": choices, "label": label}


def openbookqa_row(path: Path, number: int, row: Row) -> dict:
    """One OpenBookQA row (``question_stem``, ``choices: {text, label}``, ``answerKey``) in the raw layout."""
    stem = _field(path, number, row, "question_stem")
    choices = _field(path, number, row, "choices", dict)
    texts, keys = choices.get("text"), choices.get("label")
    if not isinstance(texts, list) or not isinstance(keys, list) or len(texts) != len(keys) or not texts \
            or not all(isinstance(x, str) for x in texts + keys):
        raise FastFormersError(f"{path}, line {number}: 'choices' must be {{'text': [...], 'label': [...]}}, two "
                               f"lists of strings of one length; got {json.dumps(choices)[:120]}.")
    answer = _field(path, number, row, "answerKey")
    if answer not in keys:
        raise FastFormersError(f"{path}, line {number}: answerKey {answer!r} is not among the choice labels "
                               f"{keys}; set it to the label of the right choice.")
    return {"id": str(row.get("id", number - 1)), "context": stem, "choices": texts, "label": keys.index(answer)}


def read_file(path: str | os.PathLike, reader: Reader, mixed_choices: str = "refuse") -> Dataset:
    """One JSON lines file as a Dataset of the raw layout, every row checked. Rows with different numbers of
    choices are refused (``mixed_choices="refuse"``) or kept as they are (``"pad"``: training batches pad them with
    a choice mask, see :mod:`~fastformers_hf.tasks.choice_mask`)."""
    if mixed_choices not in MIXED_CHOICES:
        raise FastFormersError(f"mixed_choices must be one of {', '.join(MIXED_CHOICES)}, got {mixed_choices!r}.")
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FastFormersError(f"{path}, line {number} is not JSON ({e.msg}); expected one object a "
                                   "line.") from None
        rows.append((number, reader(path, number, row)))
    if not rows:
        raise FastFormersError(f"{path} holds no rows.")
    first_line, first = rows[0]
    for number, row in rows:
        if len(row["choices"]) != len(first["choices"]) and mixed_choices == "refuse":
            raise FastFormersError(
                f"{path}, line {number}: {len(row['choices'])} choices, but line {first_line} has "
                f"{len(first['choices'])}; every row of a file needs the same number of choices (a batch is one "
                "(examples, choices, tokens) tensor): complete or remove the rows that differ, or pad them with a "
                "choice mask (--mixed_choices pad).")
        if len(row["choices"]) < 2:
            raise FastFormersError(f"{path}, line {number}: {len(row['choices'])} choice; a multiple-choice row needs "
                                   "at least two.")
    dataset = Dataset.from_dict({name: [row[name] for _, row in rows] for name in FEATURES}, features=FEATURES)
    dataset.info.dataset_name = local_data_name(path)
    return dataset


def load_choices(path: str | os.PathLike, reader: Reader, what: str, mixed_choices: str = "refuse") -> DatasetDict:
    """``train``/``validation`` from a folder of ``train.jsonl`` and ``dev.jsonl`` (``validation``/``val`` also
    name the second; ``.json`` too), or one file (its split named by its stem, else ``train``)."""
    path = Path(path)
    if path.is_file():
        split = next((s for s, stems in SPLIT_STEMS.items() if path.stem.lower() in stems), "train")
        return DatasetDict({split: read_file(path, reader, mixed_choices)})
    if not path.is_dir():
        raise FastFormersError(f"{what} data not found: {path}")
    splits = {}
    for split, stems in SPLIT_STEMS.items():
        found = [path / f"{s}{x}" for s in stems for x in EXTENSIONS if (path / f"{s}{x}").is_file()]
        if found:
            splits[split] = read_file(found[0], reader, mixed_choices)
    if not splits:
        raise FastFormersError(f"{path} holds no {what} files: expected train.jsonl and dev.jsonl.")
    return DatasetDict(splits)


def load_copa(path: str | os.PathLike, mixed_choices: str = "refuse") -> DatasetDict:
    """SuperGLUE COPA (``train.jsonl``, ``dev.jsonl``) as 2-choice rows: ``(premise, "because|so " + choice)``."""
    return load_choices(path, copa_row, "COPA", mixed_choices)


def load_openbookqa(path: str | os.PathLike, mixed_choices: str = "refuse") -> DatasetDict:
    """OpenBookQA-style rows (``train.jsonl``, ``dev.jsonl``): ``(question_stem, choice text)`` per choice, four in
    OpenBookQA; rows with other numbers of choices are refused or kept by ``mixed_choices`` (``refuse`` | ``pad``)."""
    return load_choices(path, openbookqa_row, "OpenBookQA", mixed_choices)


def tokenize_choices(dataset, tokenizer, max_length: int = 128, pad_each_example: bool = False):
    """Model inputs of raw multiple-choice rows: each of ``input_ids`` / ``token_type_ids`` / ``attention_mask``
    a list of ``choices`` token lists (each its own length; the collator pads a batch), ``label`` as ``labels``.

    ``pad_each_example``: pad an example's choices to their longest, so that each example is one ``(choices, T)``
    array (the batch-1 inputs the ONNX variant choice reads from a tokenised eval set).
    """
    from ..inference.tokenization import collate

    def encode(batch):
        counts = [len(c) for c in batch["choices"]]
        firsts = [context for context, n in zip(batch["context"], counts) for _ in range(n)]
        enc = tokenizer(firsts, [c for cs in batch["choices"] for c in cs], truncation=True, max_length=max_length)
        names = [k for k in MODEL_INPUTS if k in enc]
        out, start = {k: [] for k in names}, 0
        for n in counts:
            rows = [{k: enc[k][i] for k in names} for i in range(start, start + n)]
            padded = collate(tokenizer, rows) if pad_each_example else None  # name -> (choices, T)
            for k in names:
                out[k].append(padded[k].tolist() if padded is not None else [r[k] for r in rows])
            start += n
        return out

    def one(ds):
        missing = [c for c in ("context", "choices") if c not in ds.column_names]
        if missing:
            raise FastFormersError(f"the dataset has no column {missing} (it has {ds.column_names}); load "
                                   "multiple-choice data with load_copa / load_openbookqa (context, choices, label).")
        keep = {"label", "teacher_logits"}
        ds = ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c not in keep])
        return ds.rename_column("label", "labels") if "label" in ds.column_names else ds

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: one(ds) for name, ds in dataset.items()})
    return one(dataset)
