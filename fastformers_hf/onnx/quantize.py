"""int8 quantization of an ONNX graph (dynamic, or static with calibration data), on plain and on fused graphs: with
Optimum's ``ORTQuantizer``, or on the ``onnxruntime`` route with ``onnxruntime.quantization`` and the same preset
settings (:mod:`fastformers_hf.onnx.ort_tools`)."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import FastFormersError
from ..utils.io import atomic_output_dir, check_output_dir, work_dir_beside
from ..utils.model_folder import check_onnx_dir, load_tokenizer
from .config import CALIBRATION_METHODS, QUANTIZATION_PRESETS
from .graph import copy_companions, graph_uses_contrib_ops, onnx_input_names, optimum_classes, record_step
from .ort_tools import onnx_route


def _quantization_config(preset, static: bool, per_channel: bool | None):
    opt = optimum_classes()
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
    names = onnx_input_names(model_file)
    if "input_ids" not in dataset.column_names:
        from ..tasks.data import guess_text_fields

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
                  text_fields: tuple[str, ...] | None = None, max_length: int = 128, overwrite: bool = False,
                  route: str = "auto") -> Path:
    """Quantize the graph to int8 with Optimum's ``ORTQuantizer`` (or ``onnxruntime.quantization``).

    Dynamic quantization (the default) needs no data: weights are int8 and activations are quantized per call.
    ``preset`` is an Optimum ``AutoQuantizationConfig`` preset (avx512_vnni, avx512, avx2, arm64) or a
    ``QuantizationConfig``; ``per_channel`` overrides the preset's choice. ``static=True`` calibrates activation
    ranges on ``calibration_dataset`` (a Dataset of raw text or of tokenised inputs, or a list of texts) with
    ``calibration_method`` (minmax, entropy, percentiles). Works on plain and on fused graphs. ``route``: see
    :func:`~fastformers_hf.onnx.ort_tools.onnx_route` (on the onnxruntime route ``preset`` is a preset name).
    Returns ``save_dir``.
    """
    import onnx

    route = onnx_route(route)
    check_output_dir(save_dir, "quantize_onnx", [onnx_dir], overwrite, what="save_dir", overwrite_flag="overwrite=True")
    model_file = check_onnx_dir(onnx_dir)
    if route == "optimum":
        opt = optimum_classes()
        config = _quantization_config(preset, static, per_channel)
        channel_wise = config.per_channel
    else:
        from .ort_tools import quantization_fields

        fields = quantization_fields(preset, per_channel)
        channel_wise = fields["per_channel"]
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
        if graph_uses_contrib_ops(model_file):
            # A fused graph has com.microsoft ops (Attention, SkipLayerNormalization) that ONNX shape inference
            # cannot type, so ORTQuantizer stops with "Unable to find data type for weight_name". ORT's symbolic
            # shape inference knows those ops; typing the graph first lets Optimum's quantizer run unchanged.
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            typed = SymbolicShapeInference.infer_shapes(onnx.load(str(model_file)), auto_merge=True)
            source = Path(work) / model_file.name
            onnx.save(typed, str(source))
        if route == "onnxruntime":
            from .ort_tools import ort_quantize_dynamic, ort_quantize_static

            copy_companions(Path(onnx_dir), tmp)
            if static:
                calib = _calibration_inputs(calibration_dataset, source, load_tokenizer(onnx_dir), text_fields,
                                            max_length, num_calibration_samples)
                ort_quantize_static(source, tmp / model_file.name, fields, calib, onnx_input_names(source),
                                    calibration_method)
            else:
                ort_quantize_dynamic(onnx.load(str(source)), tmp / model_file.name, fields)
            model_config.save_pretrained(tmp)
            record_step(tmp, {"step": "onnx_quantize", "preset": preset, "static": static, "route": route,
                               "per_channel": channel_wise, "calibration_method": calibration_method if static else None})
            return Path(save_dir)
        quantizer = opt["ORTQuantizer"](source, config=model_config)
        ranges = None
        if static:
            tokenizer = load_tokenizer(onnx_dir)
            calib = _calibration_inputs(calibration_dataset, source, tokenizer, text_fields, max_length,
                                        num_calibration_samples)
            calib_config = getattr(opt["AutoCalibrationConfig"], calibration_method)(calib)
            ranges = quantizer.fit(calib, calib_config, onnx_augmented_model_name=Path(work) / "augmented.onnx",
                                   operators_to_quantize=config.operators_to_quantize)
        copy_companions(Path(onnx_dir), tmp)
        quantizer.quantize(config, tmp, file_suffix=None, calibration_tensors_range=ranges)
        record_step(tmp, {"step": "onnx_quantize", "preset": preset if isinstance(preset, str) else "custom",
                           "static": static, "route": route, "per_channel": channel_wise,
                           "calibration_method": calibration_method if static else None})
    return Path(save_dir)
