"""What every ONNX step shares: Optimum's classes (imported on first use, with the install hint), the files of a
variant folder (graph, companions, the recipe record), and loading a graph into an ONNX Runtime session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import FastFormersError
from ..utils.io import read_json
from ..utils.model_folder import check_onnx_dir
from .config import SESSION_FILE, SessionConfig

ONNX_FILE = "model.onnx"
# Files of a variant directory that describe the graph itself; everything else (tokenizer, config, ...) is carried.
GRAPH_FILES = ("ort_config.json",)
MS_DOMAIN = "com.microsoft"


def optimum_classes():
    """Optimum's ONNX Runtime classes, imported on first use, with the install hint if they are missing."""
    try:
        from optimum.exporters.onnx import onnx_export_from_model
        from optimum.exporters.tasks import TasksManager
        from optimum.onnxruntime import (AutoCalibrationConfig, AutoOptimizationConfig, AutoQuantizationConfig,
                                         OptimizationConfig, ORTModelForSequenceClassification, ORTOptimizer,
                                         ORTQuantizer, QuantizationConfig)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise FastFormersError(
            f"the ONNX Runtime path needs Optimum's ONNX support ({e}); install it with "
            "`pip install fastformers-hf[onnx]` (optimum-onnx[onnxruntime]).") from e
    return dict(onnx_export_from_model=onnx_export_from_model, TasksManager=TasksManager,
                AutoCalibrationConfig=AutoCalibrationConfig, AutoOptimizationConfig=AutoOptimizationConfig,
                AutoQuantizationConfig=AutoQuantizationConfig, OptimizationConfig=OptimizationConfig,
                ORTModelForSequenceClassification=ORTModelForSequenceClassification, ORTOptimizer=ORTOptimizer,
                ORTQuantizer=ORTQuantizer, QuantizationConfig=QuantizationConfig)


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_ort_model(onnx_dir: str | os.PathLike, session: SessionConfig | None = None):
    """The ``ORTModelFor...`` class of the folder's kind (:data:`~fastformers_hf.tasks.kinds.KINDS`) for ``onnx_dir``,
    with our session settings (spinning off by default)."""
    from ..tasks.kinds import kind_of

    model_file = check_onnx_dir(onnx_dir)
    session = session or SessionConfig()
    optimum_classes()  # the install hint if Optimum is missing
    cls = kind_of(read_json(Path(onnx_dir) / "config.json") or {}).ort_class()
    return cls.from_pretrained(onnx_dir, file_name=model_file.name, session_options=session.session_options(),
                               provider=session.provider)


def inference_session(onnx_dir_or_file: str | os.PathLike, session: SessionConfig | None = None):
    """A bare ``onnxruntime.InferenceSession`` (no Optimum wrapper overhead) for checking and timing a variant."""
    import onnxruntime as ort

    path = Path(onnx_dir_or_file)
    model_file = check_onnx_dir(path) if path.is_dir() else path
    session = session or SessionConfig()
    disabled = session.disabled_optimizers
    if disabled is None:  # the folder says which ORT fusions its chosen variant runs without (onnx_config)
        disabled = (read_json(model_file.parent / SESSION_FILE) or {}).get("disabled_optimizers", [])
    return ort.InferenceSession(str(model_file), sess_options=session.session_options(), providers=[session.provider],
                                disabled_optimizers=list(disabled))


def model_size_bytes(model_dir: str | os.PathLike) -> int:
    """Bytes on disk of the weights/graph files of a PyTorch or ONNX model directory."""
    exts = (".onnx", ".onnx_data", ".safetensors", ".bin")
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file() and p.name.endswith(exts))


# ----------------------------------------------------------------------------------------------------------------
# Writing helpers


def copy_companions(src: Path, dst: Path) -> None:
    """Copy tokenizer, config and other side files of a variant directory, but not its graph."""
    from ..measurements import MEASUREMENTS_FILE

    skip = {*GRAPH_FILES, MEASUREMENTS_FILE, "onnx_variants.json", SESSION_FILE}  # session file: graph-specific
    for p in src.iterdir():
        if p.is_file() and not p.name.endswith((".onnx", ".onnx_data")) and p.name not in skip:
            shutil.copy2(p, dst / p.name)


def record_step(model_dir: Path, step: dict[str, Any]) -> None:
    """Append a recipe step to ``config.fastformers`` in ``model_dir/config.json``, keeping the recorded shape."""
    from transformers import AutoConfig

    from ..shape_record import compression_record, update_record

    config = AutoConfig.from_pretrained(model_dir)
    record = compression_record(config)
    shape = {k: record[k] for k in ("num_layers", "heads_per_layer", "ffn_width_per_layer") if k in record}
    update_record(config, step, shape=shape or None)
    config.save_pretrained(model_dir)


def graph_uses_contrib_ops(model_file: Path) -> bool:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return any(node.domain == MS_DOMAIN for node in graph.node)


def onnx_input_names(model_file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
