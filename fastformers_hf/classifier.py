"""``TextClassifier``: one ``predict(texts)`` over any of our models — PyTorch, ONNX Runtime, pruned, quantized.

Inputs are tokenised per batch and padded only to the batch's own longest input (dynamic length); with
``sort_by_length`` a batch size above 1 groups inputs of similar length, and results come back in the caller's
order. This is the building block of the serving runtime and the cascade.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .errors import FastFormersError
from .io_utils import read_json

logger = logging.getLogger(__name__)

TextInput = Union[str, tuple[str, str]]
LONG_INPUT_POLICIES = ("truncate", "error")


@dataclass
class InferenceConfig:
    """How a ``TextClassifier`` batches and tokenises."""

    batch_size: int = field(default=1, metadata={"help": "Inputs per forward pass."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Token limit (default: the model's maximum)."})
    sort_by_length: bool = field(default=True, metadata={"help": "Group similar lengths when batch_size > 1."})
    long_inputs: str = field(default="truncate", metadata={"help": "Inputs over max_length: 'truncate' (and log "
                                                                     "how many) or 'error'."})
    threads: int = field(default=1, metadata={"help": "Intra-op threads of the model (torch or ONNX Runtime)."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise FastFormersError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.long_inputs not in LONG_INPUT_POLICIES:
            raise FastFormersError(f"long_inputs must be one of {LONG_INPUT_POLICIES}, got {self.long_inputs!r}.")
        if self.threads < 1:
            raise FastFormersError(f"threads must be >= 1, got {self.threads}.")


def _onnx_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.onnx")) if path.is_dir() else []


class TextClassifier:
    """Predict labels and probabilities for texts (or text pairs) with a PyTorch or ONNX Runtime model."""

    def __init__(self, runner: Callable[[dict], np.ndarray], tokenizer, id2label: dict[int, str],
                 config: InferenceConfig | None = None, backend: str = "pytorch", source: str | None = None):
        self.runner, self.tokenizer = runner, tokenizer
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.config = config or InferenceConfig()
        self.backend, self.source = backend, source
        model_max = getattr(tokenizer, "model_max_length", 512)
        self.max_length = self.config.max_length or (model_max if model_max and model_max < 100_000 else 512)

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: InferenceConfig | None = None,
                        backend: str = "auto") -> "TextClassifier":
        """From a loaded model or a directory: one holding ``*.onnx`` runs on ONNX Runtime, else PyTorch."""
        from .onnx_config import SessionConfig
        from .onnx_runtime import inference_session, load_pytorch_model, load_tokenizer
        from .onnx_variants import ort_runner, pytorch_runner

        config = config or InferenceConfig()
        if not isinstance(model_or_dir, (str, os.PathLike)):  # a loaded PyTorch model
            import torch

            torch.set_num_threads(config.threads)
            if tokenizer is None:
                raise FastFormersError("pass tokenizer=... with a loaded model.")
            return cls(pytorch_runner(model_or_dir.eval()), tokenizer, model_or_dir.config.id2label, config, "pytorch")
        path = Path(model_or_dir)
        if not (path / "config.json").exists():
            raise FastFormersError(f"{path} holds no model (no config.json); pass a directory saved with "
                                   "save_pretrained or written by export_onnx/optimize_for_inference.")
        tokenizer = tokenizer or load_tokenizer(path)
        if tokenizer is None:
            raise FastFormersError(f"{path} has no tokenizer; save one beside the model or pass tokenizer=...")
        id2label = read_json(path / "config.json").get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}
        use_onnx = backend == "onnx" or (backend == "auto" and _onnx_files(path))
        if use_onnx:
            session = inference_session(path, SessionConfig(intra_op_num_threads=config.threads))
            return cls(ort_runner(session), tokenizer, id2label, config, "onnxruntime", str(path))
        import torch

        torch.set_num_threads(config.threads)
        return cls(pytorch_runner(load_pytorch_model(path)), tokenizer, id2label, config, "pytorch", str(path))

    # -- inputs ----------------------------------------------------------------------------------------------------

    @staticmethod
    def _validate(inputs) -> list[TextInput]:
        if isinstance(inputs, (str, tuple)):
            inputs = [inputs]
        inputs = list(inputs)
        for i, x in enumerate(inputs):
            ok = isinstance(x, str) or (isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(p, str) for p in x))
            if not ok:
                raise FastFormersError(f"input {i} is a {type(x).__name__}, not text: pass strings, or (text, text) "
                                       "pairs for sentence-pair tasks.")
        return [tuple(x) if not isinstance(x, str) else x for x in inputs]

    def _encode(self, batch: Sequence[TextInput]) -> dict[str, np.ndarray]:
        firsts = [x if isinstance(x, str) else x[0] for x in batch]
        seconds = None if all(isinstance(x, str) for x in batch) else [x[1] if not isinstance(x, str) else "" for x in batch]
        enc = self.tokenizer(firsts, seconds, truncation=True, max_length=self.max_length, padding=True,
                             return_tensors="np")
        return {k: v.astype(np.int64) for k, v in enc.items()}

    def _check_lengths(self, inputs: Sequence[TextInput]) -> list[int]:
        firsts = [x if isinstance(x, str) else x[0] for x in inputs]
        seconds = None if all(isinstance(x, str) for x in inputs) else [x[1] if not isinstance(x, str) else "" for x in inputs]
        lengths = [len(ids) for ids in self.tokenizer(firsts, seconds, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if too_long:
            if self.config.long_inputs == "error":
                raise FastFormersError(f"{len(too_long)} input(s) exceed {self.max_length} tokens (first: index "
                                       f"{too_long[0]}, {lengths[too_long[0]]} tokens); shorten them or set "
                                       "long_inputs='truncate'.")
            logger.warning("%d input(s) longer than %d tokens were truncated.", len(too_long), self.max_length)
        return [min(n, self.max_length) for n in lengths]

    # -- prediction -----------------------------------------------------------------------------------------------

    def predict_logits(self, inputs) -> np.ndarray:
        """Logits ``(N, num_labels)`` in the caller's order."""
        inputs = self._validate(inputs)
        if not inputs:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        lengths = self._check_lengths(inputs)
        bs = self.config.batch_size
        order = np.argsort(lengths, kind="stable") if self.config.sort_by_length and bs > 1 else np.arange(len(inputs))
        out = np.empty((len(inputs), len(self.id2label)), dtype=np.float32)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            out[idx] = self.runner(self._encode([inputs[i] for i in idx]))
        return out

    def predict_proba(self, inputs) -> np.ndarray:
        logits = self.predict_logits(inputs)
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)  # (N, C) softmax

    def predict(self, inputs) -> list[dict[str, Any]]:
        """``[{"label": str, "label_id": int, "score": float}]`` per input, in order."""
        probs = self.predict_proba(inputs)
        ids = probs.argmax(-1)
        return [{"label": self.id2label[int(i)], "label_id": int(i), "score": float(p[i])} for i, p in zip(ids, probs)]
