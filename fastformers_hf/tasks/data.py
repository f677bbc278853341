"""Loading GLUE-style data (local TSV/CSV or Hub datasets) and tokenising it with dynamic padding."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from ..errors import FastFormersError
from .names import TASKS, TaskSpec, get_task  # noqa: F401 (public here)


# GLUE file names for each split, in the order we look for them.
_SPLIT_FILES = {"train": ("train",), "validation": ("dev", "validation", "val")}
_SPLIT_STEMS = {stem for stems in _SPLIT_FILES.values() for stem in stems} | {"test"}

# ``datasets`` names data loaded from local files after the loader's format; reports must not call data "csv".
LOADER_FORMATS = ("csv", "json", "parquet", "text", "arrow", "pandas", "generator")


def local_data_name(path: str | os.PathLike) -> str:
    """What reports call local data: a file's stem (``boolq_dev``), or its folder's name when the stem only names a
    split (``sst2`` for ``data/sst2/dev.tsv``), or a folder's own name (``sst2`` for ``data/sst2``)."""
    path = Path(os.path.abspath(path))  # abspath: "." and ".." get their real names, symlinks keep theirs
    if path.suffix and path.stem.lower() not in _SPLIT_STEMS:
        return path.stem
    return (path.parent if path.suffix else path).name


def dataset_name(dataset, default: str) -> str:
    """A Dataset's own name for reports (``glue/sst2``, or the folder its files came from); ``default`` when it has
    none, or only the name of the loader's format."""
    info = dataset.info
    name = info.dataset_name or info.builder_name
    if not name or name in LOADER_FORMATS:
        return default
    return f"{name}/{info.config_name}" if info.config_name not in (None, "default", name) else name


def load_local_split(path: str | os.PathLike) -> Dataset:
    """A GLUE-style ``.tsv`` (tab-separated, header row, no quoting) or ``.csv``/``.json``/``.jsonl`` file, named
    after its data (:func:`local_data_name`), not after the loader's format."""
    dataset = _load_local_file(Path(path))
    dataset.info.dataset_name = local_data_name(path)
    return dataset


def _load_local_file(path: Path) -> Dataset:
    if not path.exists():
        raise FastFormersError(f"data file not found: {path}")
    if path.suffix == ".tsv":
        # GLUE text contains bare quotes; QUOTE_NONE keeps them as text instead of merging rows.
        return load_dataset("csv", data_files=str(path), delimiter="\t", quoting=csv.QUOTE_NONE, split="train")
    if path.suffix == ".csv":
        return load_dataset("csv", data_files=str(path), split="train")
    if path.suffix in (".json", ".jsonl"):
        return load_dataset("json", data_files=str(path), split="train")
    raise FastFormersError(f"unsupported data file {path.name}: use .tsv, .csv, .json or .jsonl")


def load_task_data(data: str | os.PathLike, task: str | None = None, max_train_samples: int | None = None,
                   max_eval_samples: int | None = None, seed: int = 0,
                   loader_options: dict | None = None) -> DatasetDict:
    """``train``/``validation`` splits from a local folder of GLUE files or a Hub dataset id.

    A folder must hold ``train.{tsv,csv,jsonl}`` and ``dev``/``validation`` files. A Hub id goes through
    ``datasets.load_dataset(data, task)`` (which needs the network or a local cache). ``loader_options``: keyword
    settings of the task's own loader (e.g. ``{"mixed_choices": "pad"}`` for multiple choice).
    """
    path = Path(data)
    spec = TASKS.get(task) if task else None
    if spec is not None and spec.loader and path.exists():
        dsd = spec.load(path, **(loader_options or {}))
    elif path.is_dir() or (path.suffix and path.exists()):
        dsd = load_local_data(path)
    else:
        dsd = load_dataset(str(data), task) if task else load_dataset(str(data))
        if "validation" not in dsd and "dev" in dsd:
            dsd["validation"] = dsd.pop("dev")
    if max_train_samples is not None and "train" in dsd and len(dsd["train"]) > max_train_samples:
        dsd["train"] = dsd["train"].shuffle(seed=seed).select(range(max_train_samples))
    if max_eval_samples is not None and "validation" in dsd and len(dsd["validation"]) > max_eval_samples:
        dsd["validation"] = dsd["validation"].select(range(max_eval_samples))
    return dsd


def split_files(path: str | os.PathLike) -> dict[str, Path]:
    """The file of each split: in a folder, ``train`` and ``dev`` (or ``validation``/``val``) with a ``.tsv``,
    ``.csv``, ``.jsonl`` or ``.json`` suffix; a single file is ``train``."""
    path = Path(path)
    if not path.is_dir():
        return {"train": path}
    files = {}
    for split, stems in _SPLIT_FILES.items():
        found = [p for stem in stems for p in (path / f"{stem}{ext}" for ext in (".tsv", ".csv", ".jsonl", ".json"))
                 if p.exists()]
        if found:
            files[split] = found[0]
    if not files:
        raise FastFormersError(f"{path} holds no train/dev files (train.tsv, dev.tsv, ...).")
    return files


def load_local_data(path: str | os.PathLike) -> DatasetDict:
    """The splits of a local folder (or one file) of GLUE-style files (:func:`split_files`)."""
    return DatasetDict({split: load_local_split(file) for split, file in split_files(path).items()})


def load_labelled_pairs(path: str | os.PathLike, task: str) -> DatasetDict:
    """A named two-text classification task from local files, checked before use: both text columns present, and
    every label one of the task's names (or an id of one), stored as its id with a ``ClassLabel`` feature."""
    from datasets import ClassLabel

    spec = get_task(task)
    names = list(spec.label_names)
    splits = {}
    for split, file in split_files(path).items():
        ds = load_local_split(file)
        missing = [f for f in spec.text_fields if f not in ds.column_names]
        if missing:
            raise FastFormersError(
                f"{file} has no {', '.join(map(repr, missing))} column (it has {ds.column_names}): {task} classifies "
                f"({', '.join(spec.text_fields)}) pairs, and this file looks like single sentences; add the "
                "missing text column (or rename yours to it), or choose a single-sentence task.")
        if spec.label_field not in ds.column_names:
            raise FastFormersError(f"{file} has no {spec.label_field!r} column (it has {ds.column_names}); "
                                   f"{task} needs labels ({', '.join(names)}).")
        ids = []
        for row, label in enumerate(ds[spec.label_field], 1):
            if isinstance(label, str) and label in names:
                ids.append(names.index(label))
            elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(names):
                ids.append(label)
            else:
                raise FastFormersError(
                    f"{file}, row {row}: label {label!r} is not a {task} label; use one of {', '.join(names)} (or "
                    f"their ids 0-{len(names) - 1}): fix the row, or remove it (test files have no labels).")
        ds = ds.remove_columns(spec.label_field).add_column(spec.label_field, ids)
        splits[split] = ds.cast_column(spec.label_field, ClassLabel(names=names))
        splits[split].info.dataset_name = local_data_name(file)
    return DatasetDict(splits)


def load_cb(path: str | os.PathLike) -> DatasetDict:
    """SuperGLUE CommitmentBank (``train.jsonl``, ``dev.jsonl``: ``premise``, ``hypothesis``, ``label`` in
    entailment / contradiction / neutral) with labels as ids in that order."""
    return load_labelled_pairs(path, "cb")


def check_columns(dataset: Dataset, needed, what: str = "dataset") -> None:
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise FastFormersError(
            f"the {what} has no column {', '.join(map(repr, missing))} (it has {dataset.column_names}); "
            "rename the columns or pass the right task / text_fields."
        )


def tokenize(dataset, tokenizer, text_fields=("sentence",), label_field: str | None = "label", max_length: int = 128):
    """Tokenise without padding (the collator pads each batch to its own longest input: dynamic length).

    Keeps the label as ``labels`` (and a cached ``teacher_logits`` column); drops the raw text columns.
    """
    keep = {label_field, "teacher_logits"}

    def encode(batch):
        return tokenizer(*[batch[f] for f in text_fields], truncation=True, max_length=max_length)

    def one(ds):
        check_columns(ds, list(text_fields) + ([label_field] if label_field else []))
        ds = ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c not in keep])
        if label_field and label_field != "labels":
            ds = ds.rename_column(label_field, "labels")
        return ds

    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: one(ds) for name, ds in dataset.items()})
    return one(dataset)


def tokenize_task(dataset, tokenizer, task: str | TaskSpec, max_length: int = 128, doc_stride: int = 128,
                  label_names=None):
    """Training features of a task's splits, by its kind (:data:`~fastformers_hf.tasks.kinds.KINDS`):

    - sequence classification / regression: :func:`tokenize` (unchanged);
    - token classification: :func:`~fastformers_hf.tasks.token_classification.tokenize_and_align`; the tag names
      come from the data's ``ClassLabel`` feature and must be the model's ``label_names`` (its ``id2label``, a
      list or a mapping): data whose tags are all among the model's are re-indexed to the model's order, a tag the
      model lacks is refused;
    - multiple choice: one row of token ids per choice, ``(choices, length)`` per example
      (:func:`~fastformers_hf.tasks.multiple_choice.tokenize_choices`);
    - question answering: ``train`` becomes training windows (span positions,
      :func:`~fastformers_hf.tasks.question_answering.train_features`), ``validation`` evaluation windows
      (``example_id`` and context offsets for decoding, :func:`~fastformers_hf.tasks.question_answering.eval_features`).

    ``dataset``: a ``DatasetDict`` (splits named ``train`` / ``validation``) or one ``Dataset`` (taken as train).
    """
    spec = get_task(task) if isinstance(task, str) else task
    if spec.kind in ("sequence_classification", "regression"):
        return tokenize(dataset, tokenizer, spec.text_fields, spec.label_field, max_length)
    splits = dataset if isinstance(dataset, DatasetDict) else DatasetDict({"train": dataset})
    if spec.kind == "token_classification":
        from .token_classification import tokenize_and_align

        if label_names is not None:
            splits = DatasetDict({name: _to_label_list(ds, label_names, spec.label_field, name)
                                  for name, ds in splits.items()})
        return tokenize_and_align(splits, tokenizer, max_length=max_length, label_field=spec.label_field,
                                  label_names=label_names and _names(label_names))
    if spec.kind == "multiple_choice":
        from .multiple_choice import tokenize_choices

        return tokenize_choices(splits, tokenizer, max_length)
    if spec.kind == "question_answering":
        from .question_answering import eval_features, train_features

        return DatasetDict({name: (eval_features if name != "train" else train_features)(
            ds, tokenizer, max_length=max_length, doc_stride=doc_stride) for name, ds in splits.items()})
    raise FastFormersError(f"task kind {spec.kind!r} has no feature preparation here.")


def _names(labels) -> list[str]:
    from .conll import label_list

    return label_list(labels)


def _to_label_list(ds: Dataset, labels, field: str, split: str) -> Dataset:
    """``ds`` with its ``field`` tag ids indexing ``labels`` (the model's); the data's tags come from its
    ``ClassLabel`` feature. Tags the model lacks are refused."""
    from datasets import ClassLabel, List

    from .conll import label_names as data_label_names

    model, data = _names(labels), data_label_names(ds)
    if data == model:
        return ds
    unknown = [t for t in data if t not in model]
    if unknown:
        raise FastFormersError(
            f"the {split} split's tags ({', '.join(data)}) do not match the model's labels ({', '.join(model)}): "
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the model's; use a teacher "
            "trained on these tags (its config's id2label), or data tagged with its labels.")
    index = [model.index(t) for t in data]  # data id -> model id
    features = ds.features.copy()
    features[field] = List(ClassLabel(names=model))
    return ds.map(lambda row: {field: [index[t] for t in row[field]]}, features=features)


def guess_text_fields(dataset) -> tuple[str, ...]:
    """Text columns of a dataset: those of a known task (sentence; question+passage; ...), else ``text``."""
    columns = dataset.column_names
    for spec in TASKS.values():
        if all(f in columns for f in spec.text_fields):
            return spec.text_fields
    for name in ("text", "sentence", "content"):
        if name in columns:
            return (name,)
    raise FastFormersError(f"cannot tell which columns hold the text (columns: {columns}); pass text_fields=(...).")
