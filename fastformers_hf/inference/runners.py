"""Runners: one call = one batch of features (input name -> int64 array of shape (B, T)) -> logits (B, num_labels),
or the named outputs (e.g. a QA model's start and end logits, see ``outputs`` of :mod:`~fastformers_hf.tasks.kinds`),
for a PyTorch model or an ONNX Runtime session. The classifier, the QA predictor, the variant choice and the
benchmarks all run models through these two."""
from __future__ import annotations

import inspect
from typing import Callable, Sequence, Union

import numpy as np

from ..errors import FastFormersError

Features = dict  # input name -> int64 array of shape (B, T)
Outputs = Union[np.ndarray, tuple]  # one array for one named output, else a tuple of arrays in the named order




def _names(outputs) -> tuple[str, ...]:
    names = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    if not names:
        raise FastFormersError("outputs must name at least one model output, e.g. ('logits',).")
    return names


def pytorch_runner(model, outputs: str | Sequence[str] = ("logits",)) -> Callable[[Features], Outputs]:
    """A batch -> the model's ``outputs`` as numpy arrays: one array when one output is named (``.logits`` by
    default), else a tuple in the order of ``outputs`` (e.g. ``("start_logits", "end_logits")``)."""
    import torch

    names = _names(outputs)
    accepted = set(inspect.signature(model.forward).parameters)

    def run(features: Features) -> Outputs:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in features.items() if k in accepted}
            out = model(**inputs)
        missing = [n for n in names if getattr(out, n, None) is None]
        if missing:
            raise FastFormersError(f"{type(model).__name__} returned no {missing}; it returns "
                                   f"{[k for k, v in out.items() if v is not None]}.")
        arrays = tuple(getattr(out, n).float().numpy() for n in names)
        return arrays[0] if len(arrays) == 1 else arrays

    return run


def ort_runner(session, outputs: str | Sequence[str] | None = None) -> Callable[[Features], Outputs]:
    """The same over an ``onnxruntime.InferenceSession``: the graph outputs named ``outputs`` (one array for one
    name, else a tuple in that order); ``None`` (the default) is the graph's first output, as classifiers use."""
    names = [i.name for i in session.get_inputs()]
    graph_outputs = [o.name for o in session.get_outputs()]
    wanted = [graph_outputs[0]] if outputs is None else list(_names(outputs))
    missing = [n for n in wanted if n not in graph_outputs]
    if missing:
        raise FastFormersError(f"the ONNX graph has outputs {graph_outputs}, not {missing}: export it with the task "
                               f"of the model's kind (fastformers_hf.tasks.kinds).")

    def run(features: Features) -> Outputs:
        # Graphs of models without segment ids (DistilBERT, RoBERTa exports) take no token_type_ids.
        feed = {n: features[n] if n in features else np.zeros_like(features["input_ids"]) for n in names}
        arrays = session.run(wanted, feed)
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    return run


def open_model_folder(path, tokenizer, backend: str, threads: int):
    """``(tokenizer, backend, loaded)`` of a model folder for a predictor: ``("onnxruntime", session)`` when it
    holds ``*.onnx`` (or ``backend="onnx"``), else ``("pytorch", model)`` with any recorded pruned shape rebuilt;
    the folder's own tokenizer unless one is passed."""
    from ..onnx.config import SessionConfig
    from ..onnx.graph import inference_session
    from ..utils.model_folder import load_pytorch_model, load_tokenizer, onnx_files

    tokenizer = tokenizer or load_tokenizer(path)
    if tokenizer is None:
        raise FastFormersError(f"{path} has no tokenizer; save one beside the model or pass tokenizer=...")
    if backend == "onnx" or (backend == "auto" and onnx_files(path)):
        return tokenizer, "onnxruntime", inference_session(path, SessionConfig(intra_op_num_threads=threads))
    import torch

    torch.set_num_threads(threads)
    return tokenizer, "pytorch", load_pytorch_model(path).eval()
