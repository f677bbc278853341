"""``TextClassifier``: one ``predict(texts)`` over any of our models — PyTorch, ONNX Runtime, pruned, quantized.

Inputs are tokenised per batch and padded only to the batch's own longest input (dynamic length); with
``sort_by_length`` a batch size above 1 groups inputs of similar length, and results come back in the caller's
order. This is the building block of the serving runtime and the cascade.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import FastFormersError
from .inputs import TextInput, validate_inputs

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


class TextClassifier:
    """Predict labels and probabilities for texts (or text pairs) with a PyTorch or ONNX Runtime model."""

    def __init__(self, runner: Callable[[dict], np.ndarray], tokenizer, id2label: dict[int, str],
                 config: InferenceConfig | None = None, backend: str = "pytorch", source: str | None = None,
                 model_config: dict | None = None):
        self.runner, self.tokenizer = runner, tokenizer
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.config = config or InferenceConfig()
        self.backend, self.source = backend, source
        self.max_length = self.config.max_length or model_token_limit(model_config, tokenizer)

    @classmethod
    def from_pretrained(cls, model_or_dir, tokenizer=None, config: InferenceConfig | None = None,
                        backend: str = "auto") -> "TextClassifier":
        """From a loaded model or a directory: one holding ``*.onnx`` runs on ONNX Runtime, else PyTorch."""
        from ..onnx.config import SessionConfig
        from ..onnx.export import inference_session
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

    def _rust_encoder(self):
        """A private copy of a fast tokenizer's Rust ``Tokenizer``, set to truncate like ``tokenizer(...,
        truncation=True, max_length=...)`` (longest first, on the tokenizer's truncation side); None for slow
        tokenizers. A copy because the ``transformers`` wrapper re-configures its own one on every call."""
        if not hasattr(self, "_rust"):
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            self._rust = None
            if backend is not None and hasattr(backend, "encode_batch_fast"):
                from tokenizers import Tokenizer

                self._rust = Tokenizer.from_str(backend.to_str())
                self._rust.no_padding()
                self._rust.enable_truncation(self.max_length, strategy="longest_first",
                                             direction=getattr(self.tokenizer, "truncation_side", "right"))
                names = getattr(self.tokenizer, "model_input_names", ["input_ids", "token_type_ids", "attention_mask"])
                self._rust_fields = [(k, a) for k, a in (("input_ids", "ids"), ("token_type_ids", "type_ids"),
                                                         ("attention_mask", "attention_mask")) if k in names]
        return self._rust

    def _token_ids(self, inputs: Sequence[TextInput]) -> list[dict[str, list[int]]]:
        """Token ids of each input, truncated to ``max_length``. Single texts and pairs are tokenised apart: in one
        call a single text would get the pairs' extra [SEP].

        Fast tokenizers are called through their Rust ``encode_batch_fast``: the same ids as the ``transformers``
        call, without the character offsets it computes and we never use (timed once here, ad hoc: ~20% less
        tokenising time on ~140-token pairs, where tokenising is ~8% of a small int8 model's serving time)."""
        rust = self._rust_encoder()
        if rust is not None:
            fields = self._rust_fields
            return [{k: getattr(e, a) for k, a in fields} for e in rust.encode_batch_fast(list(inputs))]
        out: list = [None] * len(inputs)
        singles = [i for i, x in enumerate(inputs) if isinstance(x, str)]
        pairs = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
        for idx, is_pair in ((singles, False), (pairs, True)):
            if not idx:
                continue
            firsts = [inputs[i][0] if is_pair else inputs[i] for i in idx]
            enc = self.tokenizer(firsts, [inputs[i][1] for i in idx] if is_pair else None, truncation=True,
                                 max_length=self.max_length)
            for j, i in enumerate(idx):
                out[i] = {k: enc[k][j] for k in enc.keys()}
        return out

    def collate(self, ids: Sequence[dict[str, list[int]]]) -> dict[str, np.ndarray]:
        """Pad a batch to its own longest input. By hand, not ``tokenizer.pad``: that warns on fast tokenizers and
        costs more than this for the small batches of serving."""
        width = max(len(x["input_ids"]) for x in ids)
        pad = {"input_ids": self.tokenizer.pad_token_id or 0}
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        out = {k: np.full((len(ids), width), pad.get(k, 0), dtype=np.int64) for k in ids[0]}  # (B, T) each
        for b, x in enumerate(ids):
            n = len(x["input_ids"])
            for k, v in x.items():
                if left:
                    out[k][b, width - n:] = v
                else:
                    out[k][b, :n] = v
        return out

    def _count_cut(self, inputs: Sequence[TextInput], ids: Sequence[dict]) -> list[int]:
        """Indices of inputs that truncation cut: only those that reached the limit are tokenised again, in full."""
        at_limit = [i for i, x in enumerate(ids) if len(x["input_ids"]) >= self.max_length]
        if not at_limit:
            return []
        firsts = [inputs[i] if isinstance(inputs[i], str) else inputs[i][0] for i in at_limit]
        full = [len(self.tokenizer(f, None if isinstance(inputs[i], str) else inputs[i][1], truncation=False)["input_ids"])
                for i, f in zip(at_limit, firsts)]
        return [i for i, n in zip(at_limit, full) if n > self.max_length]

    # -- prediction -----------------------------------------------------------------------------------------------

    def predict_logits(self, inputs, seconds: np.ndarray | None = None) -> np.ndarray:
        """Logits ``(N, num_labels)`` in the caller's order. ``seconds`` (optional, shape ``(N,)``) gets each input's
        cost added: its batch's wall time shared by the batch, plus an equal share of the tokenisation pass."""
        inputs = self.validate_inputs(inputs)
        if not inputs:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        t0 = time.perf_counter()
        ids = self._token_ids(inputs)  # tokenised once; batches are only padded
        cut = self._count_cut(inputs, ids)
        if seconds is not None:
            seconds += (time.perf_counter() - t0) / len(inputs)
        if cut:
            if self.config.long_inputs == "error":
                raise FastFormersError(f"{len(cut)} input(s) exceed {self.max_length} tokens (first: index {cut[0]}); "
                                       "shorten them or set long_inputs='truncate'.")
            logger.warning("%d input(s) longer than %d tokens were truncated.", len(cut), self.max_length)
        lengths = [len(x["input_ids"]) for x in ids]
        bs = self.config.batch_size
        order = np.argsort(lengths, kind="stable") if self.config.sort_by_length and bs > 1 else np.arange(len(inputs))
        out = np.empty((len(inputs), len(self.id2label)), dtype=np.float32)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            t0 = time.perf_counter()
            out[idx] = self.runner(self.collate([ids[i] for i in idx]))
            if seconds is not None:
                seconds[idx] += (time.perf_counter() - t0) / len(idx)
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
