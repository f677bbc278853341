"""Loading CoNLL-2003 NER data: CoNLL column files or Hub ``conll2003``-style JSON lines, as ``id`` / ``tokens`` /
``ner_tags`` splits whose ``ner_tags`` are ints with a ``ClassLabel`` feature naming the tags.

Column files: one token a line, whitespace-separated columns, the NER tag (IOB2) in the last column, a blank line
between sentences, ``-DOCSTART-`` lines skipped. JSON lines: one sentence an object with ``tokens`` and
``ner_tags`` (tag names, or ints that index the label list). The label list is the one given (a list, or a model
config's ``id2label``), else it comes from the data: ``O`` first, then the B-/I- pair of every entity type found.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from ..errors import FastFormersError

# The Hub `conll2003` dataset's label order: what its int `ner_tags` mean when no label list is given.
HUB_CONLL2003_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
# File stems of each split in a folder, in the order we look for them.
SPLIT_FILES = {"train": ("train",), "validation": ("dev", "valid", "validation", "val"), "test": ("test",)}
SUFFIXES = (".txt", ".conll", ".jsonl", ".json")
DOCSTART = "-DOCSTART-"
_IOB2_TAG = re.compile(r"^(O|[BI]-\S+)$")

Labels = Sequence[str] | Mapping[int | str, str]


def label_list(labels: Labels) -> list[str]:
    """A label list from a list of names or an ``id2label`` mapping (int or string keys, as in ``config.json``)."""
    if isinstance(labels, Mapping):
        ids = sorted(int(k) for k in labels)
        if ids != list(range(len(ids))):
            raise FastFormersError(f"id2label must have the ids 0..{len(ids) - 1}, got {ids}.")
        return [labels[k] if k in labels else labels[str(k)] for k in ids]
    return list(labels)


def sort_labels(tags: Iterable[str]) -> list[str]:
    """``O`` first, then ``B-TYPE``, ``I-TYPE`` for every entity type, types in alphabetical order (both tags of a
    type even when the data has only one, so ``B-`` always has its ``I-`` for continuation sub-tokens)."""
    types = sorted({t[2:] for t in tags if t != "O"})
    return ["O"] + [f"{bi}-{t}" for t in types for bi in "BI"]


def _tag_error(tag, where: str, known: Sequence[str] | None) -> FastFormersError:
    if known is None:
        return FastFormersError(f"{where}: tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE); convert the tags to IOB2 "
                                "or pass labels=[...] listing every tag the data uses.")
    return FastFormersError(f"{where}: tag {tag!r} is not in the label list ({', '.join(map(str, known))}); fix the "
                            "data, or pass labels= that include it (a model can only be evaluated on tags it "
                            "predicts).")


def _read_columns(path: Path, lines: list[str]) -> list[dict]:
    """Sentences of a CoNLL column file: ``tokens`` and tag names (checked later), with their line numbers."""
    sentences, tokens, tags, first_line, width = [], [], [], None, None
    for number, line in enumerate(lines + [""], start=1):  # the sentinel closes the last sentence
        columns = line.split()
        if not columns or columns[0] == DOCSTART:
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "line": first_line})
            tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise FastFormersError(f"{path}, line {number}: {line.strip()!r} has one column; CoNLL lines are "
                                   "`TOKEN [POS CHUNK ...] TAG` with the NER tag last.")
        # One width a file: a line that lost a column would otherwise pass its chunk tag (I-NP) as the NER tag.
        width = width or len(columns)
        if len(columns) != width:
            raise FastFormersError(f"{path}, line {number}: {line.strip()!r} has {len(columns)} columns, the lines "
                                   f"before it have {width}; fix the line (a missing column, or a space in a token).")
        first_line = first_line if tokens else number
        tokens.append(columns[0])
        tags.append((columns[-1], number))
    return sentences


def _read_json_lines(path: Path, lines: list[str]) -> list[dict]:
    text = "\n".join(lines).strip()
    if text.startswith("["):  # one JSON array of sentences
        try:
            rows = [(i + 1, r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as e:
            raise FastFormersError(f"{path} is not valid JSON ({e}).") from None
    else:
        rows = []
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise FastFormersError(f"{path}, line {number}: not a JSON object ({e.msg}); JSON lines hold "
                                           "one sentence an object.") from None
    sentences = []
    for number, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("tokens"), list) or not isinstance(
                row.get("ner_tags"), list) or len(row["tokens"]) != len(row["ner_tags"]):
            raise FastFormersError(f"{path}, line {number}: a sentence needs `tokens` and `ner_tags` lists of the "
                                   "same length (Hub conll2003 columns).")
        if row["tokens"]:
            sentences.append({"tokens": [str(t) for t in row["tokens"]], "tags": [(t, number) for t in row["ner_tags"]],
                              "line": number, "id": row.get("id")})
    return sentences


def read_sentences(path: str | os.PathLike) -> list[dict]:
    """The sentences of one file (either format), tags not yet checked: ``tokens``, ``tags`` as (tag, line)."""
    path = Path(path)
    if not path.is_file():
        raise FastFormersError(f"data file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FastFormersError(f"{path} is not UTF-8 text; pass CoNLL column files or JSON lines.") from None
    first = next((line for line in lines if line.strip() and not line.startswith(DOCSTART)), None)
    if first is None:
        raise FastFormersError(f"{path} holds no sentences.")
    if first.lstrip()[:1] in "{[":
        return _read_json_lines(path, lines)
    columns = first.split()
    if len(columns) < 2 or not _IOB2_TAG.match(columns[-1]):
        raise FastFormersError(f"{path} is neither CoNLL columns (`TOKEN ... TAG` a line, the IOB2 NER tag last) nor "
                               f"JSON lines with `tokens`/`ner_tags`; its first line is {first.strip()[:80]!r}.")
    return _read_columns(path, lines)


def _tag_ids(sentences: list[dict], path: Path, labels: list[str], known: bool) -> list[list[int]]:
    """Tag ids of each sentence; ``known``: the label list was given (or is the Hub's), so name it in errors."""
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for sentence in sentences:
        ids = []
        for tag, number in sentence["tags"]:
            where = f"{path}, line {number}"
            if isinstance(tag, bool) or not isinstance(tag, (int, str)):
                raise FastFormersError(f"{where}: tag {tag!r} is a {type(tag).__name__}; tags are names or ints.")
            if isinstance(tag, int):
                if not 0 <= tag < len(labels):
                    raise FastFormersError(f"{where}: tag id {tag} is outside the label list ({len(labels)} labels: "
                                           f"{', '.join(labels)}); pass labels= with the names the ids stand for.")
                ids.append(tag)
            elif tag in index:
                ids.append(index[tag])
            else:
                raise _tag_error(tag, where, labels if known else None)
        out.append(ids)
    return out


def load_conll(path: str | os.PathLike, labels: Labels | None = None) -> DatasetDict:
    """``train`` / ``validation`` (/ ``test``) splits from a folder (``train.txt``, ``dev.txt`` or ``valid.txt``,
    ``test.txt``; also ``.conll``, ``.jsonl``, ``.json``) or one file (its one split is ``train``).

    ``labels``: the label list (names, or a config's ``id2label``); every tag must be in it. Without it the list
    comes from the tags of all splits together (:func:`sort_labels`), so the splits share one; int tags then mean
    the Hub ``conll2003`` labels (:data:`HUB_CONLL2003_LABELS`).
    """
    path = Path(path)
    if path.is_dir():
        files = {}
        for split, stems in SPLIT_FILES.items():
            found = [path / f"{s}{x}" for s in stems for x in SUFFIXES if (path / f"{s}{x}").is_file()]
            if found:
                files[split] = found[0]
        if not files:
            raise FastFormersError(f"{path} holds no CoNLL files (train.txt, dev.txt or valid.txt, test.txt; or "
                                   ".conll / .jsonl).")
    else:
        files = {"train": path}
    read = {split: read_sentences(file) for split, file in files.items()}

    known = labels is not None
    if known:
        names = label_list(labels)
    else:
        tags = [t for sentences in read.values() for s in sentences for t, _ in s["tags"]]
        if any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
            names, known = list(HUB_CONLL2003_LABELS), True
        else:
            for split, sentences in read.items():  # every tag IOB2, before it becomes a label
                for s in sentences:
                    for tag, number in s["tags"]:
                        if not isinstance(tag, str) or not _IOB2_TAG.match(tag):
                            raise _tag_error(tag, f"{files[split]}, line {number}", None)
            names = sort_labels(tags)
    features = Features({"id": Value("string"), "tokens": List(Value("string")),
                         "ner_tags": List(ClassLabel(names=names))})
    splits = {}
    for split, sentences in read.items():
        ids = _tag_ids(sentences, files[split], names, known)
        dataset = Dataset.from_dict({"id": [str(s["id"]) if s.get("id") is not None else str(i)
                                            for i, s in enumerate(sentences)],
                                     "tokens": [s["tokens"] for s in sentences], "ner_tags": ids}, features=features)
        dataset.info.dataset_name = path.name if path.is_dir() else path.stem
        splits[split] = dataset
    return DatasetDict(splits)


def label_names(dataset) -> list[str]:
    """The tag names of a split's ``ner_tags`` ``ClassLabel`` feature."""
    feature = dataset.features.get("ner_tags")
    names = getattr(getattr(feature, "feature", None), "names", None)
    if names is None:
        raise FastFormersError(f"the dataset's ner_tags column has no ClassLabel feature ({feature}); load it with "
                               "load_conll or pass label_names=[...].")
    return list(names)
