"""The inputs the variant choice checks and times: the user's eval set (tokenised one example at a time, batch 1)
or, without one, a random-token sample of the model's vocabulary. For question answering and token classification
an eval set is scored by the task's F1 (:mod:`~fastformers_hf.onnx.task_metric`), while outputs are still compared
on the random sample; the random sample serves every kind."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import FastFormersError
from ..inference.runners import Features
from ..inference.tokenization import with_special_tokens
from ..tasks.data import guess_text_fields
from .config import VariantChoiceConfig


def label_column(dataset) -> str | None:
    return next((c for c in ("label", "labels") if c in dataset.column_names), None)


def eval_split(eval_dataset):
    """The split a DatasetDict is judged on (validation, else test, else train); anything else unchanged."""
    from datasets import DatasetDict

    if not isinstance(eval_dataset, DatasetDict):
        return eval_dataset
    split = next((s for s in ("validation", "test", "train") if s in eval_dataset), None)
    if split is None:
        raise FastFormersError(f"the eval DatasetDict has no validation/test split (it has {list(eval_dataset)}).")
    return eval_dataset[split]


def eval_examples(eval_dataset, tokenizer, config: VariantChoiceConfig, label2id: Mapping[str, int] | None = None,
                  name: str | None = None):
    """``(features, labels or None, description)`` from a Dataset/DatasetDict/list of texts, one example each."""
    from datasets import Dataset

    from ..tasks.data import dataset_name

    eval_dataset = eval_split(eval_dataset)
    if isinstance(eval_dataset, (list, tuple)):
        eval_dataset = Dataset.from_dict({"text": list(eval_dataset)})
    if not isinstance(eval_dataset, Dataset):
        raise FastFormersError(f"eval_dataset must be a datasets.Dataset, a DatasetDict or a list of texts, "
                               f"got {type(eval_dataset).__name__}.")
    if len(eval_dataset) == 0:
        raise FastFormersError("eval_dataset is empty; pass at least a few labelled examples.")
    if config.max_eval_samples is not None:
        eval_dataset = eval_dataset.select(range(min(config.max_eval_samples, len(eval_dataset))))
    label_col = label_column(eval_dataset)
    labels = None
    if label_col is not None:
        raw = list(eval_dataset[label_col])
        if raw and isinstance(raw[0], str):
            if not label2id or any(r not in label2id for r in raw):
                raise FastFormersError(
                    f"eval labels {sorted(set(raw))[:5]} are not the model's labels {list(label2id or {})}.")
            raw = [label2id[r] for r in raw]
        labels = np.asarray(raw)
        labels = labels if labels.dtype.kind == "f" else labels.astype(np.int64)  # float: regression scores
    if "input_ids" in eval_dataset.column_names:
        features = [{k: np.asarray([row[k]], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")
                     if k in row} for row in eval_dataset]
    else:
        fields = tuple(config.text_fields or guess_text_fields(eval_dataset))
        missing = [f for f in fields if f not in eval_dataset.column_names]
        if missing:
            raise FastFormersError(f"eval_dataset has no column {missing} (it has {eval_dataset.column_names}).")
        features = [dict(tokenizer(*[row[f] for f in fields], truncation=True, max_length=config.max_length,
                                   return_tensors="np")) for row in eval_dataset]
        features = [{k: v.astype(np.int64) for k, v in f.items()} for f in features]
    name = name or dataset_name(eval_dataset, "eval_dataset")
    return features, labels, f"{name} ({len(features)} examples{'' if labels is not None else ', no labels'})"


def random_examples(tokenizer, n: int, max_length: int, seed: int = 0, choices: int | None = None) -> list[Features]:
    """``n`` inputs of random vocabulary tokens and random lengths in [8, max_length], for use without eval data:
    ``(1, T)`` arrays, or ``(1, choices, T)`` for a multiple-choice model (its choices of one length)."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    out = []
    for length in rng.integers(8, max(9, max_length - 1), size=n):
        rows = [with_special_tokens(tokenizer, rng.choice(vocab, size=int(length) - 2).tolist())
                for _ in range(choices or 1)]
        ids = np.asarray(rows if choices else rows[0], dtype=np.int64)[None]  # (1, T) or (1, choices, T)
        out.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return out


def choice_eval_set(kind, eval_dataset, tokenizer, max_length: int):
    """A raw multiple-choice split (``context``, ``choices``, ``label``) tokenised to one ``(choices, T)`` array per
    example, as the variant choice reads it; any other data (or kind) unchanged."""
    from datasets import Dataset

    if getattr(kind, "name", kind) != "multiple_choice":
        return eval_dataset
    eval_dataset = eval_split(eval_dataset)
    if not isinstance(eval_dataset, Dataset) or "input_ids" in eval_dataset.column_names:
        return eval_dataset
    missing = [c for c in ("context", "choices") if c not in eval_dataset.column_names]
    if missing:
        raise FastFormersError(f"a multiple-choice eval_dataset needs the columns context, choices and label (as "
                               f"load_copa / load_openbookqa give them); it lacks {missing} (it has "
                               f"{eval_dataset.column_names}).")
    from ..tasks.multiple_choice import tokenize_choices

    return tokenize_choices(eval_dataset, tokenizer, max_length, pad_each_example=True)
