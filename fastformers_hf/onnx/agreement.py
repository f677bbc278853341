"""How far an ONNX candidate's outputs are from PyTorch's: for kinds with per-position outputs (token
classification, question answering) output by output, position by position, on the real (unpadded) positions of
every input; for the others, one row of logits per example (:func:`run_all`)."""
from __future__ import annotations

import numpy as np

from ..errors import FastFormersError
from ..inference.runners import Features


# Kinds whose outputs are per position, checked position by position on random inputs (and, given an eval split,
# scored by their task's metric: onnx/task_metric.py): what the argmax of each output picks, as the report words it.
PER_POSITION = {"token_classification": "the label of every token",
                "question_answering": "the start and the end index"}


def check_eval_supported(kind, eval_dataset) -> None:
    """Refuse an eval set for a per-position kind whose task metric the variant choice does not compute."""
    from .task_metric import scored_by_task_metric

    if eval_dataset is not None and kind.name in PER_POSITION and not scored_by_task_metric(kind):
        raise FastFormersError(f"an eval set for {kind.name} is not supported by the variant choice yet; pass none "
                               "to check against PyTorch on random inputs.")


def as_tuple(out) -> tuple[np.ndarray, ...]:
    return out if isinstance(out, tuple) else (out,)


def compare_per_position(kind, features: list[Features], reference: list[tuple], candidate: list[tuple]
                         ) -> tuple[float, float, dict[str, dict[str, float]]]:
    """``(max abs diff, agreement, per output)`` of a candidate's outputs against PyTorch's, over the real
    (attention mask 1) positions of every input: token classification compares the argmax label of every token
    (agreement over all tokens), question answering the argmax start and end index of every input (padding
    excluded). The overall diff is the largest of any output, the overall agreement the lowest."""
    per_output: dict[str, dict[str, float]] = {}
    for j, name in enumerate(kind.outputs):
        diff, agree, total = 0.0, 0, 0
        for f, ref, got in zip(features, reference, candidate):
            mask = f["attention_mask"].astype(bool) if "attention_mask" in f else np.ones_like(f["input_ids"], bool)
            r, g = np.asarray(ref[j], dtype=np.float64), np.asarray(got[j], dtype=np.float64)
            if r.shape != g.shape:
                raise FastFormersError(f"{name} of the ONNX graph has shape {g.shape}, PyTorch's {r.shape}.")
            diff = max(diff, float(np.abs(r[mask] - g[mask]).max()))
            if kind.name == "token_classification":  # (B, T, num_labels): a label per real token
                agree += int((r[mask].argmax(-1) == g[mask].argmax(-1)).sum())
                total += int(mask.sum())
            else:  # (B, T): one index per input, over its real positions
                r, g = np.where(mask, r, -np.inf), np.where(mask, g, -np.inf)
                agree += int((r.argmax(-1) == g.argmax(-1)).sum())
                total += r.shape[0]
        per_output[name] = {"max_abs_diff": diff, "agreement": agree / max(total, 1), "compared": total}
    return (max(o["max_abs_diff"] for o in per_output.values()),
            min(o["agreement"] for o in per_output.values()), per_output)


PAD_SCORE = -1e9  # the logit of a missing choice: never the argmax, the same for PyTorch and ONNX (diff 0)


def run_all(runner, features: list[Features]) -> np.ndarray:
    """Logits of every example, ``(N, num_labels)``; ``(N, most choices)`` for multiple choice, whose examples may
    have different numbers of choices (the missing ones padded with :data:`PAD_SCORE`)."""
    outs = [runner(f) for f in features]  # (1, num_labels) or (1, choices) each
    width = max(o.shape[-1] for o in outs)
    return np.concatenate([np.pad(o, ((0, 0), (0, width - o.shape[-1])), constant_values=PAD_SCORE) for o in outs])


def pearson_points(reference, candidate) -> float:
    """Pearson correlation of two score vectors ``(N,)`` in points (100: perfectly correlated); 0 where either is
    constant and no correlation is defined."""
    from ..tasks.metrics import regression_metrics

    r = regression_metrics(reference, candidate)["pearson"]
    return 0.0 if np.isnan(r) else 100.0 * r
