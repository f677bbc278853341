"""Runners: one call = one batch of features (input name -> int64 array of shape (B, T)) -> logits (B, num_labels),
for a PyTorch model or an ONNX Runtime session. The classifier, the variant choice and the benchmarks all run
models through these two."""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

Features = dict  # input name -> int64 array of shape (B, T)




def pytorch_runner(model) -> Callable[[Features], np.ndarray]:
    import torch

    accepted = set(inspect.signature(model.forward).parameters)

    def run(features: Features) -> np.ndarray:
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v) for k, v in features.items() if k in accepted}
            return model(**inputs).logits.numpy()

    return run


def ort_runner(session) -> Callable[[Features], np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    output = session.get_outputs()[0].name

    def run(features: Features) -> np.ndarray:
        # Graphs of models without segment ids (DistilBERT, RoBERTa exports) take no token_type_ids.
        feed = {n: features[n] if n in features else np.zeros_like(features["input_ids"]) for n in names}
        return session.run([output], feed)[0]

    return run
