"""Teacher outputs computed once and stored as dataset columns (the teacher then never runs while training), and the
collator that pads cached per-position rows to each batch's own length. Per-position outputs (QA start/end,
per-token logits) are stored as float16 rows of each example's own length."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import FastFormersError
from ..tasks.choice_mask import MASKED_CHOICE_LOGIT, forward_masked, pad_choices
from ..tasks.kinds import kind_of
from .losses import loss_for
from .student import load_model


def teacher_columns(kind, column: str = "teacher_logits") -> dict[str, str]:
    """Dataset column of each cached teacher output of ``kind``: ``column`` with "logits" replaced by the output's
    name (``teacher_logits``; ``teacher_start_logits`` and ``teacher_end_logits`` for QA)."""
    return {name: _column_name(column, name) for name in kind.outputs}


class TeacherOutputsCollator:
    """Wraps a collator: cached teacher outputs are taken out of the features (the wrapped collator never sees them)
    and batched here. Per-position outputs, a row of the example's own length, are padded with zeros (or cut) to the
    batch's sequence length on the tokenizer's padding side; the losses ignore padded positions."""

    def __init__(self, collator, columns: list[str], per_position: bool, padding_side: str = "right"):
        self.collator, self.columns, self.per_position, self.padding_side = collator, columns, per_position, padding_side

    def __call__(self, features):
        present = [c for c in self.columns if c in features[0]]
        if not present:
            return self.collator(features)
        batch = self.collator([{k: v for k, v in f.items() if k not in present} for f in features])
        length = batch["input_ids"].shape[-1] if self.per_position else None
        for column in present:
            batch[column] = _batch_rows([f[column] for f in features], length, self.padding_side)
            if batch["input_ids"].dim() == 3:  # choices: rows cached as wide as the data's most choices
                batch[column] = batch[column][:, :batch["input_ids"].shape[1]]  # (B, C)
        return batch


def _batch_rows(rows, length: int | None, side: str) -> torch.Tensor:
    """``(B, C)`` from per-example rows; ``(B, T, ...)`` from per-position rows, padded or cut to ``T = length``."""
    if length is None:
        return torch.tensor(np.asarray(rows, dtype=np.float32))  # (B, C)
    arrays = [np.asarray(r, dtype=np.float32) for r in rows]  # (L_i,) or (L_i, C)
    out = np.zeros((len(arrays), length, *arrays[0].shape[1:]), dtype=np.float32)  # (B, T) or (B, T, C)
    for i, a in enumerate(arrays):
        if side == "left":
            a = a[-length:]
            out[i, length - len(a):] = a
        else:
            a = a[:length]
            out[i, :len(a)] = a
    return torch.from_numpy(out)


def _pad_inputs(tokenizer, features):
    """Pad model inputs; nested rows (multiple choice: one row per choice) are padded as one batch, then reshaped
    (B, C, T), with a ``choice_mask`` when the examples have different numbers of choices."""
    if not isinstance(features[0]["input_ids"][0], list):
        return tokenizer.pad(features, return_tensors="pt")
    return pad_choices(tokenizer, features)


def _ragged_column(values: np.ndarray, lengths: np.ndarray):
    """An Arrow list column from concatenated rows ``values`` (sum L, ...) of the given lengths (no padding stored)."""
    import pyarrow as pa

    total = int(lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64 if total >= 2**31 else np.int32)
    flat = pa.array(values.reshape(-1))  # float16 -> Arrow halffloat
    if values.ndim == 2:  # (sum L, C): one fixed-size list of C values per position
        flat = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    lists = pa.LargeListArray if total >= 2**31 else pa.ListArray
    return lists.from_arrays(pa.array(offsets), flat)


def _reuse_cache(cache_file, dataset, column: str):
    """The dataset with the outputs an earlier call saved, or None when they do not fit it (other rows, lengths)."""
    saved = np.load(cache_file)
    if isinstance(saved, np.ndarray):  # per-example outputs: an (N, C) array
        if len(saved) != len(dataset):
            return None
        return dataset.add_column(column, [row for row in saved.astype(np.float32)])
    with saved:  # per-position outputs: row lengths and each output's concatenated rows
        lengths = saved["lengths"]
        if not np.array_equal(lengths, [len(ids) for ids in dataset["input_ids"]]):
            return None
        for name in (f for f in saved.files if f != "lengths"):
            dataset = dataset.add_column(_column_name(column, name), _ragged_column(saved[name], lengths))
    return dataset


def _column_name(column: str, output: str) -> str:
    return column.replace("logits", output) if "logits" in column else f"{column}_{output}"


def cache_teacher_logits(teacher, dataset, tokenizer=None, batch_size: int = 64, column: str = "teacher_logits",
                         cache_file: str | os.PathLike | None = None, desc: str = "teacher logits"):
    """Run the teacher once over a tokenised dataset and add its distilled outputs as columns.

    The columns are :func:`teacher_columns` of the teacher's kind. Per-example outputs (classification, regression,
    multiple-choice logits) are float32 rows; per-position outputs (QA start and end logits, token logits) are float16
    rows of the example's own length, ``(L,)`` or ``(L, C)``, which the trainer's collator pads to each batch.

    With ``cache_file`` the outputs are saved at that path (an ``.npy`` array for per-example outputs, an ``.npz``
    archive of row lengths and concatenated float16 rows for per-position ones) and reused by later runs, so
    distillation needs no teacher forward pass at all.
    """
    if cache_file is not None and Path(cache_file).exists():
        reused = _reuse_cache(cache_file, dataset, column)
        if reused is not None:
            return reused
    if isinstance(teacher, (str, os.PathLike)):
        teacher = load_model(teacher)
    if tokenizer is None:
        raise FastFormersError("cache_teacher_logits needs the tokenizer (for padding) when logits are not cached yet.")
    kind = kind_of(teacher)
    per_position = loss_for(kind).per_position
    side = getattr(tokenizer, "padding_side", "right")
    model_inputs = [c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    features = dataset.select_columns(model_inputs)
    lengths = np.array([len(ids) for ids in features["input_ids"]])  # tokens (choices, for multiple choice)
    # Batches of similar length waste little on padding (2-3x faster on short, varied sentences like SST-2).
    order = np.argsort(lengths, kind="stable")
    loader = torch.utils.data.DataLoader(features.select(order), batch_size=batch_size,
                                         collate_fn=lambda f: _pad_inputs(tokenizer, f))
    device = next(teacher.parameters()).device
    teacher.eval()
    out = {name: [] for name in kind.outputs}  # per batch (per-example) or per row (per-position), in sorted order
    done = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc):
            result, _ = forward_masked(teacher, {k: v.to(device) for k, v in batch.items()})
            n = len(batch["input_ids"])
            for name in kind.outputs:
                x = result[name].float().cpu().numpy()  # (B, C), (B, T) or (B, T, C)
                if not per_position:
                    out[name].append(x)
                    continue
                t = x.shape[1]
                for row, length in zip(x, lengths[order[done:done + n]]):  # each row's own positions only
                    out[name].append((row[:length] if side == "right" else row[t - length:]).astype(np.float16))
            done += n
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
    if not per_position:
        (name,) = kind.outputs
        # Choices: batches of fewer choices than the data's most are widened with masked (never chosen) logits.
        width = max(x.shape[1] for x in out[name]) if out[name][0].ndim == 2 else None
        rows = [x if width is None or x.shape[1] == width else
                np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=MASKED_CHOICE_LOGIT) for x in out[name]]
        logits = np.empty((len(order), *rows[0].shape[1:]), dtype=np.float32)
        logits[order] = np.concatenate(rows)  # back to the dataset's order
        if cache_file is not None:
            np.save(cache_file, logits)
        return dataset.add_column(column, [row for row in logits])
    values = {}
    for name, rows in out.items():
        in_order = [None] * len(order)
        for position, row in zip(order, rows):  # back to the dataset's order
            in_order[position] = row
        values[name] = np.concatenate(in_order)  # (sum L,) or (sum L, C), float16
    if cache_file is not None:
        with open(cache_file, "wb") as f:  # np.savez on a path would append ".npz"
            np.savez(f, lengths=lengths, **values)
    for name, flat in values.items():
        dataset = dataset.add_column(_column_name(column, name), _ragged_column(flat, lengths))
    return dataset
