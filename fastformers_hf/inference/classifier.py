"""``TextClassifier``: one ``predict(texts)`` over any of our models — PyTorch, ONNX Runtime, pruned, quantized.

Inputs are tokenised once per call (:mod:`~fastformers_hf.inference.tokenization`) and each batch is padded only
to its own longest input (dynamic length); with ``sort_by_length`` a batch size above 1 groups inputs of similar
length, and results come back in the caller's order. ``predict_proba`` / ``predict`` come from
:class:`~fastformers_hf.inference.predictor.Predictor`. This is the building block of the serving runtime (whose
workers call :meth:`TextClassifier.token_ids`, :meth:`~TextClassifier.truncated` and
:meth:`~TextClassifier.collate` directly) and of the cascade.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import FastFormersError
from ..serving.batching import length_buckets
from . import tokenization
from .inputs import TextInput, validate_inputs
from .predictor import Predictor
from .tokenization import TokenIds

logger = logging.getLogger(__name__)

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


def model_token_limit(model_config: dict | None, tokenizer) -> int:
    """The longest input the model takes: the tokenizer's limit, capped by the model's position embeddings."""
    from ..architectures import ARCHITECTURES

    model_config = model_config or {}
    limits = [getattr(tokenizer, "model_max_length", None)]
    if model_config.get("max_position_embeddings"):
        spec = ARCHITECTURES.get(model_config.get("model_type"))
        limits.append(model_config["max_position_embeddings"] - (spec.position_offset if spec else 0))
    limits = [x for x in limits if x and x < 100_000]  # tokenizers without a limit say 1e30
    return min(limits) if limits else 512


class TextClassifier(Predictor):
    """Predict labels and probabilities for texts (or text pairs) with a PyTorch or ONNX Runtime model: the
    ``runner`` maps a padded batch (:meth:`collate`) to logits; ``predict_proba`` / ``predict`` are
    :class:`~fastformers_hf.inference.predictor.Predictor`'s."""

    def __init__(self, runner: Callable[[dict], np.ndarray], tokenizer, id2label: dict[int, str],
                 config: InferenceConfig | None = None, backend: str = "pytorch", source: str | None = None,
                 model_config: dict | None = None):
        self.runner, self.tokenizer = runner, tokenizer
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.config = config or InferenceConfig()
        self.backend, self.source = backend, source
        self.max_length = self.config.max_length or model_token_limit(model_config, tokenizer)
        # The Rust fast path of fast tokenizers, set up for max_length (None: slow tokenizer, or set it to None to
        # use the transformers call).
        self.fast_encoder = tokenization.rust_encoder(tokenizer, self.max_length)

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: InferenceConfig | None = None,
                        backend: str = "auto") -> "TextClassifier":
        """From a loaded model or a directory: one holding ``*.onnx`` runs on ONNX Runtime, else PyTorch."""
        from ..onnx.config import SessionConfig
        from ..onnx.graph import inference_session
        from ..utils.model_folder import load_pytorch_model, load_tokenizer, model_config, onnx_files
        from .runners import ort_runner, pytorch_runner

        config = config or InferenceConfig()
        if not isinstance(model_or_dir, (str, os.PathLike)):  # a loaded PyTorch model
            import torch

            torch.set_num_threads(config.threads)
            if tokenizer is None:
                raise FastFormersError("pass tokenizer=... with a loaded model.")
            return cls(pytorch_runner(model_or_dir.eval()), tokenizer, model_or_dir.config.id2label, config, "pytorch",
                       model_config=model_or_dir.config.to_dict())
        path = Path(model_or_dir)
        folder_config = model_config(path)
        tokenizer = tokenizer or load_tokenizer(path)
        if tokenizer is None:
            raise FastFormersError(f"{path} has no tokenizer; save one beside the model or pass tokenizer=...")
        id2label = folder_config.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}
        use_onnx = backend == "onnx" or (backend == "auto" and onnx_files(path))
        if use_onnx:
            session = inference_session(path, SessionConfig(intra_op_num_threads=config.threads))
            return cls(ort_runner(session), tokenizer, id2label, config, "onnxruntime", str(path), folder_config)
        import torch

        torch.set_num_threads(config.threads)
        return cls(pytorch_runner(load_pytorch_model(path)), tokenizer, id2label, config, "pytorch", str(path),
                   folder_config)

    # -- inputs ----------------------------------------------------------------------------------------------------

    validate_inputs = staticmethod(validate_inputs)  # the accepted input forms: inference/inputs.py

    def token_ids(self, inputs: Sequence[TextInput]) -> list[TokenIds]:
        """Token ids of each (validated) input, truncated to ``max_length``: through ``fast_encoder`` (fast
        tokenizers) or the ``transformers`` call, which give the same ids; see
        :mod:`~fastformers_hf.inference.tokenization` for why there are two."""
        if self.fast_encoder is not None:
            return self.fast_encoder(inputs)
        return tokenization.transformers_token_ids(self.tokenizer, inputs, self.max_length)

    def truncated(self, inputs: Sequence[TextInput], ids: Sequence[TokenIds]) -> list[int]:
        """Indices of the inputs whose :meth:`token_ids` truncation cut (only inputs at the limit are tokenised
        again)."""
        return tokenization.truncated(self.tokenizer, inputs, ids, self.max_length)

    def collate(self, ids: Sequence[TokenIds]) -> dict[str, np.ndarray]:
        """A batch of :meth:`token_ids` padded to its own longest input: name -> int64 array ``(B, T)``."""
        return tokenization.collate(self.tokenizer, ids)

    # -- prediction -----------------------------------------------------------------------------------------------

    def predict_logits(self, inputs, seconds: np.ndarray | None = None) -> np.ndarray:
        """Logits ``(N, num_labels)`` in the caller's order. ``seconds`` (optional, shape ``(N,)``) gets each input's
        cost added: its batch's wall time shared by the batch, plus an equal share of the tokenisation pass."""
        inputs = self.validate_inputs(inputs)
        if not inputs:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        t0 = time.perf_counter()
        ids = self.token_ids(inputs)  # tokenised once; batches are only padded
        cut = self.truncated(inputs, ids)
        if seconds is not None:
            seconds += (time.perf_counter() - t0) / len(inputs)
        if cut:
            if self.config.long_inputs == "error":
                raise FastFormersError(f"{len(cut)} input(s) exceed {self.max_length} tokens (first: index {cut[0]}); "
                                       "shorten them or set long_inputs='truncate'.")
            logger.warning("%d input(s) longer than %d tokens were truncated.", len(cut), self.max_length)
        out = np.empty((len(inputs), len(self.id2label)), dtype=np.float32)
        for idx in length_buckets([len(x["input_ids"]) for x in ids], self.config.batch_size, self.config.sort_by_length):
            t0 = time.perf_counter()
            out[idx] = self.runner(self.collate([ids[i] for i in idx]))
            if seconds is not None:
                seconds[idx] += (time.perf_counter() - t0) / len(idx)
        return out
