"""Reading a model folder: the one check that a folder holds a model, and the loaders of what it holds (PyTorch
weights, including per-layer pruned shapes; the tokenizer; an ONNX graph). Every part of the package that opens a
user's model folder goes through here, so a bad folder gets the same clear message everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import FastFormersError
from .io import read_json

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def not_a_model_folder(path: str | os.PathLike) -> FastFormersError:
    return FastFormersError(f"{path} holds no model (no config.json); pass a folder written by save_pretrained, "
                            "export_onnx or optimize_for_inference.")


def model_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a model folder, after checking it is one."""
    path = Path(path)
    if not path.is_dir():
        raise FastFormersError(f"{path} is not a directory; pass a model folder saved with save_pretrained.")
    config = read_json(path / "config.json")
    if config is None:
        raise not_a_model_folder(path)
    return config


def onnx_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    return sorted(path.glob("*.onnx")) if path.is_dir() else []


def check_model_folder(model_dir: str | os.PathLike, need_weights: bool = True) -> Path:
    """The one "is this a model folder" check; returns the path. ``need_weights``: PyTorch weights must be there."""
    model_dir = Path(model_dir)
    model_config(model_dir)
    if need_weights and not any((model_dir / w).exists() for w in WEIGHT_FILES):
        raise FastFormersError(
            f"{model_dir} has a config.json but no weights ({', '.join(WEIGHT_FILES[:2])}); "
            "save the model with save_pretrained.")
    return model_dir


def load_pytorch_model(model_dir: str | os.PathLike):
    """The PyTorch model saved in ``model_dir``, with the head its config names (any kind in
    :data:`~fastformers_hf.tasks.kinds.KINDS`); pruned shapes are rebuilt from the ``config.fastformers`` record."""
    from safetensors import SafetensorError

    from ..tasks.kinds import kind_of

    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    from ..shape_record import compression_record

    from ..hub_code import needs_remote_code

    try:
        if needs_remote_code(model_config(model_dir)):
            # Pruned heads (gone from transformers 5 configs) or per-layer FFN widths: the pruning module rebuilds
            # the recorded shape in every transformers version, without running the folder's modeling file.
            from ..pruning import load_pruned

            return load_pruned(model_dir).eval()
        return kind_of(model_config(model_dir)).model_class().from_pretrained(model_dir).eval()
    except SafetensorError as e:  # a truncated or corrupt weight file
        raise FastFormersError(
            f"the weights in {model_dir} cannot be read ({str(e).splitlines()[0][:200]}): the file is truncated or "
            "corrupt; save the model there again with save_pretrained (or download it again).") from None
    except (OSError, RuntimeError, ValueError, ImportError) as e:
        if isinstance(e, FastFormersError):
            raise
        raise FastFormersError(
            f"could not load {model_dir} ({str(e).splitlines()[0][:200]}); if it was "
            "reshaped (e.g. per-layer FFN widths), load it with the loader that made it and pass the model object."
        ) from None


# Files a saved tokenizer leaves in its folder (one at least).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                   "spiece.model", "spm.model")


def load_tokenizer(model_dir: str | os.PathLike | None):
    """The tokenizer saved in ``model_dir``, or None when there is none (transformers 5.x would build one from the
    config alone, with no vocabulary)."""
    from transformers import AutoTokenizer

    if model_dir is None or not Path(model_dir).is_dir():
        return None
    if not any((Path(model_dir) / name).exists() for name in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError):
        return None


def check_onnx_dir(onnx_dir: str | os.PathLike) -> Path:
    """The one ``.onnx`` file of ``onnx_dir``, after checking that it parses and has a config beside it."""
    import onnx

    onnx_dir = Path(onnx_dir)
    if not onnx_dir.is_dir():
        raise FastFormersError(f"{onnx_dir} is not a directory; pass a directory written by export_onnx.")
    files = sorted(onnx_dir.glob("*.onnx"))
    if not files:
        raise FastFormersError(f"{onnx_dir} holds no .onnx model; export one first with export_onnx(model, dir).")
    if len(files) > 1:
        raise FastFormersError(
            f"{onnx_dir} holds several .onnx files ({', '.join(f.name for f in files)}); keep one model per directory.")
    if not (onnx_dir / "config.json").exists():
        raise FastFormersError(
            f"{onnx_dir} has no config.json beside {files[0].name}; "
            "re-export it with export_onnx so the config is saved.")
    try:
        onnx.checker.check_model(str(files[0]))
    except Exception as e:  # onnx raises several types (DecodeError, ValidationError, ...)
        detail = str(e).splitlines()[0][:200] if str(e) else ""
        raise FastFormersError(
            f"{files[0]} is not a valid ONNX model ({type(e).__name__}: {detail}); re-export it with export_onnx."
        ) from e
    return files[0]
