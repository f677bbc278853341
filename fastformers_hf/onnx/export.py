"""The ONNX Runtime path: export and graph fusion (fp32, fp16). Quantization is in :mod:`fastformers_hf.onnx.quantize`.

Each step takes a ``route``: ``"optimum"`` (Optimum's exporter and ``ORTOptimizer``), ``"onnxruntime"``
(``torch.onnx.export`` and onnxruntime's optimizer, :mod:`fastformers_hf.onnx.ort_tools`, for where optimum-onnx
cannot be installed, e.g. transformers 5.x) or ``"auto"`` (Optimum when installed). Both routes write the same
folder layout and record which one ran in ``config.fastformers``.

Every function reads one directory and writes a new one (atomically, never over its input) that loads with
``ORTModelForSequenceClassification.from_pretrained(path)``, with the tokenizer and config beside the graph.
Which combination is fastest on a given machine is decided by measurement in :mod:`fastformers_hf.onnx.variants`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from pathlib import Path

from ..errors import FastFormersError
from ..utils.io import atomic_output_dir, check_output_dir
from ..utils.model_folder import check_model_folder, check_onnx_dir, load_pytorch_model, load_tokenizer
from .config import OPTIMIZATION_LEVELS
from ..tasks.kinds import kind_of
from .graph import ONNX_FILE, copy_companions, optimum_classes, record_step
from .ort_tools import onnx_route


# ----------------------------------------------------------------------------------------------------------------
# Checks on inputs (all raise FastFormersError before anything is written)




def _check_export_supported(model_type: str | None, export_task: str, route: str) -> None:
    from ..architectures import ARCHITECTURES

    if route == "onnxruntime":  # our exporter (ort_tools.torch_export) knows the architectures of our table
        if model_type not in ARCHITECTURES:
            raise FastFormersError(f"not supported for ONNX export: {model_type}; supported here: "
                                   f"{', '.join(sorted(ARCHITECTURES))}.")
        return
    tasks_manager = optimum_classes()["TasksManager"]
    try:
        tasks = tasks_manager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except (KeyError, ValueError):
        tasks = {}
    if export_task not in tasks:
        raise FastFormersError(
            f"not supported for ONNX export: {model_type} (Optimum has no {export_task} export for it); "
            f"supported here: {', '.join(sorted(ARCHITECTURES))}.")


# ----------------------------------------------------------------------------------------------------------------
# Export


def export_onnx(model_or_dir, save_dir: str | os.PathLike, tokenizer=None, opset: int | None = None,
                overwrite: bool = False, route: str = "auto") -> Path:
    """Export a PyTorch model of any kind in :data:`~fastformers_hf.tasks.kinds.KINDS` (a model or a directory) to
    ``save_dir/model.onnx`` with Optimum (the kind's export task) or, on the ``onnxruntime`` route, with
    ``torch.onnx.export`` and the same input/output names and axes.

    The graph has dynamic batch and sequence axes; tokenizer and config are saved beside it. Head-pruned models
    (uneven heads per layer) export as they are. Returns ``save_dir``.
    """
    import torch

    route = onnx_route(route)
    source_dir = None
    if isinstance(model_or_dir, (str, os.PathLike)):
        source_dir = Path(model_or_dir)
        check_output_dir(save_dir, "export_onnx", [source_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
        check_model_folder(source_dir, need_weights=True)
        from ..utils.io import read_json

        folder_config = read_json(source_dir / "config.json") or {}
        _check_export_supported(folder_config.get("model_type"), kind_of(folder_config).export_task, route)
        model = load_pytorch_model(source_dir)
        tokenizer = tokenizer or load_tokenizer(source_dir)
    else:
        model = model_or_dir
        if not hasattr(model, "config"):
            raise FastFormersError(
                f"export_onnx needs a transformers model or a model directory, got {type(model).__name__}.")
        source_dir = getattr(model.config, "_name_or_path", None) or None  # the folder it was loaded from, if any
        check_output_dir(save_dir, "export_onnx", [source_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
        _check_export_supported(model.config.model_type, kind_of(model).export_task, route)
        tokenizer = tokenizer or load_tokenizer(source_dir)
    if tokenizer is None:
        raise FastFormersError(
            "no tokenizer found beside the model; pass tokenizer=... so the ONNX directory can be used on its own.")

    # Export an fp32 CPU copy so the caller's model keeps its device, dtype and train/eval mode.
    param = next(model.parameters())
    if param.dtype != torch.float32 or param.device.type != "cpu":
        import copy

        model = copy.deepcopy(model).float().cpu()
    if not getattr(model.config, "architectures", None):
        # A model built with from_config has no `architectures` until save_pretrained; the exported config.json must
        # name the head, or the folder's kind (tasks.kinds.kind_of) cannot be read back.
        model.config.architectures = [type(model).__name__]
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
                    # transformers 5.x's mask builder tests `kv_length + kv_offset - mask.shape[-1] > 0`, which the
                    # tracer records as a constant; for an encoder the mask always has the sequence's length, so the
                    # test is 0 > 0 for every input (each variant is also checked against PyTorch on other lengths).
                    warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean",
                                            category=torch.jit.TracerWarning, module="transformers.masking_utils")
                    if route == "optimum":
                        optimum_classes()["onnx_export_from_model"](model, tmp, opset=opset,
                                                                    task=kind_of(model).export_task,
                                                                    do_validation=False)
                    else:
                        from .ort_tools import torch_export

                        torch_export(model, tmp / ONNX_FILE, opset)
                        model.config.save_pretrained(tmp)
            except (RuntimeError, ValueError, KeyError, torch.onnx.errors.OnnxExporterError) as e:
                raise FastFormersError(f"ONNX export of {model.config.model_type} failed: {e}") from e
            tokenizer.save_pretrained(tmp)
            import onnx

            graph = onnx.load(str(tmp / ONNX_FILE), load_external_data=False)
            real_opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), opset)
            record_step(tmp, {"step": "onnx_export", "opset": real_opset, "format": "onnx", "route": route})
    finally:
        model.train(was_training)
    return Path(save_dir)


# ----------------------------------------------------------------------------------------------------------------
# Graph optimisation


def _optimization_config(level, for_gpu: bool, changes: dict | None = None):
    opt = optimum_classes()
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
                  overwrite: bool = False, changes: dict | None = None, route: str = "auto") -> Path:
    """Fuse the graph with Optimum's ``ORTOptimizer`` (Attention, SkipLayerNorm, BiasGelu, ...).

    ``level`` is a preset (O1 general only, O2 + transformer fusions, O3 + fast GELU, O4 + fp16 for GPU) or an
    ``optimum.onnxruntime.OptimizationConfig`` (or a dict of its fields); ``changes`` sets some of its fields on
    top (e.g. ``{"disable_skip_layer_norm_fusion": True}``). Head-pruned graphs fuse correctly: ORT reads the head
    counts from the graph (its "Input hidden size ... is not same as weight matrix" log, noise for them, is
    dropped). On the ``onnxruntime`` route ``level`` is a preset or a dict of the same fields, and
    ``onnxruntime.transformers.optimizer`` runs with them. Returns ``save_dir``.
    """
    route = onnx_route(route)
    if route == "optimum":
        config = _optimization_config(level, for_gpu, changes)
    else:
        from .ort_tools import optimization_fields

        config = optimization_fields(level, changes, for_gpu)
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
    """Fuse with Optimum's ORTOptimizer (``config`` an OptimizationConfig) or, given a dict of its fields, with
    onnxruntime's optimizer (:func:`~fastformers_hf.onnx.ort_tools.ort_optimize`)."""
    check_output_dir(save_dir, kind, [onnx_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
    model_file = check_onnx_dir(onnx_dir)
    if isinstance(config, dict):
        return _optimize_with_onnxruntime(onnx_dir, save_dir, model_file, config, label, overwrite, kind)
    opt = optimum_classes()
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
        copy_companions(Path(onnx_dir), tmp)
        optimizer = opt["ORTOptimizer"].from_pretrained(onnx_dir, file_names=[model_file.name])
        optimizer.optimize(config, tmp, file_suffix=None)
        record_step(tmp, {"step": "onnx_optimize", "level": label, "route": "optimum",
                           "optimization_level": config.optimization_level, "fp16": config.fp16})
    return Path(save_dir)


def _optimize_with_onnxruntime(onnx_dir, save_dir, model_file: Path, fields: dict, label: str, overwrite: bool,
                               kind: str) -> Path:
    from transformers import AutoConfig

    from ..architectures import ARCHITECTURES
    from .ort_tools import ort_optimize

    config = AutoConfig.from_pretrained(onnx_dir)
    spec = ARCHITECTURES.get(config.model_type)
    if spec is None:
        raise FastFormersError(
            f"ONNX Runtime has no graph fusion for {config.model_type}; use the plain or quantized export instead.")
    with atomic_output_dir(save_dir, kind, [onnx_dir], overwrite, overwrite_flag="overwrite=True") as tmp, \
            _quiet_pruned_attention_warning(), _quiet_quantized_input_notes(model_file):
        copy_companions(Path(onnx_dir), tmp)
        # Optimum passes the config's head count and width; onnxruntime reads the real ones (pruned layers) from the
        # graph and uses those.
        ort_optimize(model_file, tmp / model_file.name, spec.ort_optimizer_type, getattr(config, spec.num_heads_attr),
                     getattr(config, spec.hidden_size_attr), fields)
        record_step(tmp, {"step": "onnx_optimize", "level": label, "route": "onnxruntime",
                           "optimization_level": fields["optimization_level"], "fp16": fields["fp16"]})
    return Path(save_dir)


def to_fp16(onnx_dir: str | os.PathLike, save_dir: str | os.PathLike, overwrite: bool = False,
            route: str = "auto") -> Path:
    """Fuse and convert the graph to float16 for GPU inference (Optimum's O4 without the GELU approximation).

    Inputs and outputs stay int64/float32 (``keep_io_types``), so the calling code does not change. Run it
    with the CUDA execution provider; CPU only runs it slowly, for checking.
    """
    # optimization_level 0: only the transformers fusions (written in Python); any ORT level here would need a CUDA
    # session to run its GPU passes and logs "There is no gpu" on a CPU machine. The session applies them at load.
    fields = dict(optimization_level=0, optimize_for_gpu=True, fp16=True, enable_transformers_specific_optimizations=True)
    if onnx_route(route) == "optimum":
        config = optimum_classes()["OptimizationConfig"](**fields)
    else:
        from .ort_tools import optimization_fields

        config = optimization_fields(fields)
    return _optimize(onnx_dir, save_dir, config, "fp16", overwrite, "to_fp16")
