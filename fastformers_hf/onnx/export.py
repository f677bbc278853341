"""The ONNX Runtime path through Optimum: export, graph fusion, int8 quantization and fp16 conversion.

Every function reads one directory and writes a new one (atomically, never over its input) that loads with
``ORTModelForSequenceClassification.from_pretrained(path)``, with the tokenizer and config beside the graph.
Which combination is fastest on a given machine is decided by measurement in :mod:`fastformers_hf.onnx.variants`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..errors import FastFormersError
from ..utils.io import atomic_output_dir, check_output_dir, read_json, work_dir_beside
from ..utils.model_folder import (check_model_folder, check_onnx_dir, load_pytorch_model,  # noqa: F401 (re-exported)
                                 load_tokenizer)
from .config import CALIBRATION_METHODS, OPTIMIZATION_LEVELS, QUANTIZATION_PRESETS, SESSION_FILE, SessionConfig

ONNX_FILE = "model.onnx"
# Files of a variant directory that describe the graph itself; everything else (tokenizer, config, ...) is carried.
_GRAPH_FILES = ("ort_config.json",)
_MS_DOMAIN = "com.microsoft"


def _optimum():
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
# Checks on inputs (all raise FastFormersError before anything is written)




def _check_export_supported(model_type: str | None) -> None:
    tasks_manager = _optimum()["TasksManager"]
    try:
        tasks = tasks_manager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except (KeyError, ValueError):
        tasks = {}
    if "text-classification" not in tasks:
        from ..architectures import ARCHITECTURES

        raise FastFormersError(
            f"not supported for ONNX export: {model_type} (Optimum has no text-classification export for it); "
            f"supported here: {', '.join(sorted(ARCHITECTURES))}.")


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_ort_model(onnx_dir: str | os.PathLike, session: SessionConfig | None = None):
    """``ORTModelForSequenceClassification`` for ``onnx_dir`` with our session settings (spinning off by default)."""
    model_file = check_onnx_dir(onnx_dir)
    session = session or SessionConfig()
    cls = _optimum()["ORTModelForSequenceClassification"]
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


def _copy_companions(src: Path, dst: Path) -> None:
    """Copy tokenizer, config and other side files of a variant directory, but not its graph."""
    from ..measurements import MEASUREMENTS_FILE

    skip = {*_GRAPH_FILES, MEASUREMENTS_FILE, "onnx_variants.json", SESSION_FILE}  # session file: graph-specific
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


def _graph_uses_contrib_ops(model_file: Path) -> bool:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    return any(node.domain == _MS_DOMAIN for node in graph.node)


def _onnx_input_names(model_file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


# ----------------------------------------------------------------------------------------------------------------
# Export


def export_onnx(model_or_dir, save_dir: str | os.PathLike, tokenizer=None, opset: int | None = None,
                overwrite: bool = False) -> Path:
    """Export a PyTorch sequence classifier (a model or a directory) to ``save_dir/model.onnx`` with Optimum.

    The graph has dynamic batch and sequence axes; tokenizer and config are saved beside it. Head-pruned models
    (uneven heads per layer) export as they are. Returns ``save_dir``.
    """
    import torch

    source_dir = None
    if isinstance(model_or_dir, (str, os.PathLike)):
        source_dir = Path(model_or_dir)
        check_output_dir(save_dir, "export_onnx", [source_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
        check_model_folder(source_dir, need_weights=True)
        from ..utils.io import read_json

        _check_export_supported((read_json(source_dir / "config.json") or {}).get("model_type"))
        model = load_pytorch_model(source_dir)
        tokenizer = tokenizer or load_tokenizer(source_dir)
    else:
        model = model_or_dir
        if not hasattr(model, "config"):
            raise FastFormersError(
                f"export_onnx needs a transformers model or a model directory, got {type(model).__name__}.")
        source_dir = getattr(model.config, "_name_or_path", None) or None  # the folder it was loaded from, if any
        check_output_dir(save_dir, "export_onnx", [source_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
        _check_export_supported(model.config.model_type)
        tokenizer = tokenizer or load_tokenizer(source_dir)
    if tokenizer is None:
        raise FastFormersError(
            "no tokenizer found beside the model; pass tokenizer=... so the ONNX directory can be used on its own.")

    # Export an fp32 CPU copy so the caller's model keeps its device, dtype and train/eval mode.
    param = next(model.parameters())
    if param.dtype != torch.float32 or param.device.type != "cpu":
        import copy

        model = copy.deepcopy(model).float().cpu()
    was_training = model.training
    model.eval()
    try:
        with atomic_output_dir(save_dir, "export_onnx", [source_dir], overwrite, overwrite_flag="overwrite=True") as tmp:
            try:
                with warnings.catch_warnings():
                    # The tracer flags transformers' `torch.tensor(1.0, dtype=dtype)` in the attention mask as a
                    # constant in the graph; it is one (1.0), so the warning is noise to every user of the export.
                    warnings.filterwarnings("ignore", message="torch.tensor results are registered as constants",
                                            category=torch.jit.TracerWarning)
                    _optimum()["onnx_export_from_model"](model, tmp, opset=opset, task="text-classification",
                                                         do_validation=False)
            except (RuntimeError, ValueError, KeyError) as e:
                raise FastFormersError(f"ONNX export of {model.config.model_type} failed: {e}") from e
            tokenizer.save_pretrained(tmp)
            import onnx

            graph = onnx.load(str(tmp / ONNX_FILE), load_external_data=False)
            real_opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), opset)
            record_step(tmp, {"step": "onnx_export", "opset": real_opset, "format": "onnx"})
    finally:
        model.train(was_training)
    return Path(save_dir)


# ----------------------------------------------------------------------------------------------------------------
# Graph optimisation


def _optimization_config(level, for_gpu: bool, changes: dict | None = None):
    opt = _optimum()
    if isinstance(level, opt["OptimizationConfig"]):
        config = level
    elif isinstance(level, dict):
        config = opt["OptimizationConfig"](**level)
    elif level not in OPTIMIZATION_LEVELS:
        raise FastFormersError(
            f"unknown optimisation level {level!r}; "
            f"use one of {', '.join(OPTIMIZATION_LEVELS)} or an OptimizationConfig.")
    else:
        config = opt["AutoOptimizationConfig"].with_optimization_level(level, for_gpu=for_gpu)
    unknown = [k for k in (changes or {}) if not hasattr(config, k)]
    if unknown:
        raise FastFormersError(f"OptimizationConfig has no field(s) {unknown}; see optimum.onnxruntime.OptimizationConfig.")
    return dataclasses.replace(config, **(changes or {}))


def optimize_onnx(onnx_dir: str | os.PathLike, save_dir: str | os.PathLike, level="O2", for_gpu: bool = False,
                  overwrite: bool = False, changes: dict | None = None) -> Path:
    """Fuse the graph with Optimum's ``ORTOptimizer`` (Attention, SkipLayerNorm, BiasGelu, ...).

    ``level`` is a preset (O1 general only, O2 + transformer fusions, O3 + fast GELU, O4 + fp16 for GPU) or an
    ``optimum.onnxruntime.OptimizationConfig`` (or a dict of its fields); ``changes`` sets some of its fields on
    top (e.g. ``{"disable_skip_layer_norm_fusion": True}``). Head-pruned graphs fuse correctly: ORT reads the head
    counts from the graph (its "Input hidden size ... is not same as weight matrix" log, noise for them, is
    dropped). Returns ``save_dir``.
    """
    config = _optimization_config(level, for_gpu, changes)
    label = level if isinstance(level, str) else "custom"
    return _optimize(onnx_dir, save_dir, config, label + ("+" + ",".join(sorted(changes)) if changes else ""), overwrite,
                     "optimize_onnx")


class _DropPrunedHiddenSizeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Input hidden size")


@contextlib.contextmanager
def _quiet_pruned_attention_warning():
    """ORT's attention fusion logs "Input hidden size (...) is not same as weight matrix dimension of q,k,v" once per
    layer of a head-pruned graph. It reads the head counts from the graph and fuses correctly (the tests compare the
    fused graph's logits with PyTorch), so for pruned models the line is noise; it is dropped while we optimise."""
    log, drop = logging.getLogger("fusion_attention"), _DropPrunedHiddenSizeWarning()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


@contextlib.contextmanager
def _quiet_quantized_input_notes(model_file: Path):
    """Fusing a graph that is already int8 (the int8-then-fused recipes) makes ORT's optimizer log three expected
    notes: the graph's producer is "onnx.quantize", not "pytorch" (we pass the model type ourselves), and shape
    inference cannot type the quantized ops, so the useless-Cast and SkipLayerNorm passes skip what needs shapes. The
    result is still a correct graph (it is checked against PyTorch and timed like every candidate, and kept only if it
    is faster), so for such inputs these lines are noise; they are dropped while it is optimised. For fp32 inputs
    nothing is filtered: there the same lines would mean something."""
    import onnx

    from ..utils.quiet import dropped_log_records, starts_with

    if onnx.load(str(model_file), load_external_data=False).producer_name != "onnx.quantize":
        yield
        return
    with dropped_log_records("onnxruntime.transformers.optimizer", starts_with("Model producer not matched")), \
            dropped_log_records("onnx_model", starts_with("shape inference failed")), \
            dropped_log_records("fusion_skiplayernorm", starts_with("symbolic shape inference disabled or failed")):
        yield


def _optimize(onnx_dir, save_dir, config, label: str, overwrite: bool, kind: str) -> Path:
    opt = _optimum()
    check_output_dir(save_dir, kind, [onnx_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
    model_file = check_onnx_dir(onnx_dir)
    from optimum.onnxruntime.utils import ORTConfigManager
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(onnx_dir).model_type
    try:
        ORTConfigManager.check_optimization_supported_model(model_type, config)
    except (NotImplementedError, KeyError) as e:
        raise FastFormersError(
            f"ONNX Runtime has no graph fusion for {model_type}; use the plain or quantized export instead.") from e
    with atomic_output_dir(save_dir, kind, [onnx_dir], overwrite, overwrite_flag="overwrite=True") as tmp, \
            _quiet_pruned_attention_warning(), _quiet_quantized_input_notes(model_file):
        _copy_companions(Path(onnx_dir), tmp)
        optimizer = opt["ORTOptimizer"].from_pretrained(onnx_dir, file_names=[model_file.name])
        optimizer.optimize(config, tmp, file_suffix=None)
        record_step(tmp, {"step": "onnx_optimize", "level": label,
                           "optimization_level": config.optimization_level, "fp16": config.fp16})
    return Path(save_dir)


def to_fp16(onnx_dir: str | os.PathLike, save_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fuse and convert the graph to float16 for GPU inference (Optimum's O4 without the GELU approximation).

    Inputs and outputs stay int64/float32 (``keep_io_types``), so the calling code does not change. Run it
    with the CUDA execution provider; CPU only runs it slowly, for checking.
    """
    config = _optimum()["OptimizationConfig"](
        # 0: only the transformers fusions (written in Python); any ORT level here would need a CUDA session to
        # run its GPU passes and logs "There is no gpu" on a CPU machine. The session applies them at load time.
        optimization_level=0,
        optimize_for_gpu=True, fp16=True, enable_transformers_specific_optimizations=True)
    return _optimize(onnx_dir, save_dir, config, "fp16", overwrite, "to_fp16")


# ----------------------------------------------------------------------------------------------------------------
# Quantization


def _quantization_config(preset, static: bool, per_channel: bool | None):
    opt = _optimum()
    if isinstance(preset, opt["QuantizationConfig"]):
        return preset
    if preset not in QUANTIZATION_PRESETS:
        raise FastFormersError(
            f"unknown quantization preset {preset!r}; "
            f"use one of {', '.join(QUANTIZATION_PRESETS)} or a QuantizationConfig.")
    kwargs = {} if per_channel is None else {"per_channel": per_channel}
    return getattr(opt["AutoQuantizationConfig"], preset)(is_static=static, **kwargs)


def _calibration_inputs(dataset, model_file: Path, tokenizer, text_fields, max_length: int, num_samples: int):
    """A datasets.Dataset holding only the graph's input columns (tokenised here if it holds raw text)."""
    from datasets import Dataset

    if isinstance(dataset, list):
        dataset = Dataset.from_dict({"text": dataset})
    if not isinstance(dataset, Dataset):
        raise FastFormersError(
            f"calibration_dataset must be a datasets.Dataset or a list of texts, got {type(dataset).__name__}.")
    dataset = dataset.select(range(min(num_samples, len(dataset))))
    names = _onnx_input_names(model_file)
    if "input_ids" not in dataset.column_names:
        from .variants import guess_text_fields

        fields = tuple(text_fields or guess_text_fields(dataset))
        dataset = dataset.map(lambda b: tokenizer(*[b[f] for f in fields], truncation=True, max_length=max_length),
                              batched=True)
    if "token_type_ids" in names and "token_type_ids" not in dataset.column_names:
        dataset = dataset.map(lambda ex: {"token_type_ids": [0] * len(ex["input_ids"])})
    missing = [n for n in names if n not in dataset.column_names]
    if missing:
        raise FastFormersError(
            f"the calibration dataset lacks the model inputs {missing}; tokenise it with the model's tokenizer.")
    return dataset.remove_columns([c for c in dataset.column_names if c not in names])


def quantize_onnx(onnx_dir: str | os.PathLike, save_dir: str | os.PathLike, preset="avx512_vnni",
                  per_channel: bool | None = None, static: bool = False, calibration_dataset=None,
                  calibration_method: str = "minmax", num_calibration_samples: int = 100,
                  text_fields: tuple[str, ...] | None = None, max_length: int = 128, overwrite: bool = False) -> Path:
    """Quantize the graph to int8 with Optimum's ``ORTQuantizer``.

    Dynamic quantization (the default) needs no data: weights are int8 and activations are quantized per call.
    ``preset`` is an Optimum ``AutoQuantizationConfig`` preset (avx512_vnni, avx512, avx2, arm64) or a
    ``QuantizationConfig``; ``per_channel`` overrides the preset's choice. ``static=True`` calibrates activation
    ranges on ``calibration_dataset`` (a Dataset of raw text or of tokenised inputs, or a list of texts) with
    ``calibration_method`` (minmax, entropy, percentiles). Works on plain and on fused graphs. Returns ``save_dir``.
    """
    import onnx

    opt = _optimum()
    check_output_dir(save_dir, "quantize_onnx", [onnx_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
    model_file = check_onnx_dir(onnx_dir)
    config = _quantization_config(preset, static, per_channel)
    if static and calibration_dataset is None:
        raise FastFormersError("static quantization needs a calibration_dataset (a few hundred typical inputs); "
                               "pass one or use static=False for dynamic quantization.")
    if static and calibration_method not in CALIBRATION_METHODS:
        raise FastFormersError(
            f"unknown calibration_method {calibration_method!r}; use one of {', '.join(CALIBRATION_METHODS)}.")

    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(onnx_dir)
    with work_dir_beside(save_dir) as work, \
            atomic_output_dir(save_dir, "quantize_onnx", [onnx_dir], overwrite, overwrite_flag="overwrite=True") as tmp:
        source = model_file
        if _graph_uses_contrib_ops(model_file):
            # A fused graph has com.microsoft ops (Attention, SkipLayerNormalization) that ONNX shape inference
            # cannot type, so ORTQuantizer stops with "Unable to find data type for weight_name". ORT's symbolic
            # shape inference knows those ops; typing the graph first lets Optimum's quantizer run unchanged.
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            typed = SymbolicShapeInference.infer_shapes(onnx.load(str(model_file)), auto_merge=True)
            source = Path(work) / model_file.name
            onnx.save(typed, str(source))
        quantizer = opt["ORTQuantizer"](source, config=model_config)
        ranges = None
        if static:
            tokenizer = load_tokenizer(onnx_dir)
            calib = _calibration_inputs(calibration_dataset, source, tokenizer, text_fields, max_length,
                                        num_calibration_samples)
            calib_config = getattr(opt["AutoCalibrationConfig"], calibration_method)(calib)
            ranges = quantizer.fit(calib, calib_config, onnx_augmented_model_name=Path(work) / "augmented.onnx",
                                   operators_to_quantize=config.operators_to_quantize)
        _copy_companions(Path(onnx_dir), tmp)
        quantizer.quantize(config, tmp, file_suffix=None, calibration_tensors_range=ranges)
        record_step(tmp, {"step": "onnx_quantize", "preset": preset if isinstance(preset, str) else "custom",
                           "static": static, "per_channel": config.per_channel,
                           "calibration_method": calibration_method if static else None})
    return Path(save_dir)
