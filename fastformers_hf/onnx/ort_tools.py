"""The ONNX route without Optimum: ``torch.onnx.export`` and onnxruntime's own tools
(``onnxruntime.transformers.optimizer``, ``onnxruntime.quantization``), which are what Optimum calls underneath.

``optimum-onnx`` pins ``transformers<4.58``, so under transformers 5.x it cannot be installed. :func:`onnx_route`
picks this route automatically there; :mod:`~fastformers_hf.onnx.export` and :mod:`~fastformers_hf.onnx.quantize`
call the functions below instead of Optimum's, with the settings Optimum's presets would have used (copied here as
data, named as in Optimum), so the graphs and the variant choice are the same on both routes. Only what Optimum does
on top of onnxruntime is written here: the export wrapper (input/output names and dynamic axes of Optimum's
``OnnxConfig``), the preset tables and the calibration reader.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import FastFormersError

ROUTES = ("auto", "optimum", "onnxruntime")
ROUTE_TEXT = {"optimum": "Optimum (exporter, ORTOptimizer, ORTQuantizer)",
              "onnxruntime": "torch.onnx.export and onnxruntime's own optimizer and quantizer (no Optimum)"}

# Optimum's OptimizationConfig defaults (optimum/onnxruntime/configuration.py) for the fields that reach
# onnxruntime's FusionOptions, and its AutoOptimizationConfig levels on top.
OPTIMIZATION_DEFAULTS: dict[str, Any] = {
    "optimization_level": 1, "enable_transformers_specific_optimizations": True, "optimize_for_gpu": False,
    "fp16": False, "disable_gelu_fusion": False, "disable_attention_fusion": False, "disable_bias_gelu_fusion": False,
    "disable_layer_norm_fusion": False, "disable_rotary_embeddings": False, "disable_skip_layer_norm_fusion": False,
    "disable_bias_skip_layer_norm_fusion": False, "disable_skip_group_norm_fusion": False,
    "disable_bias_splitgelu_fusion": False, "disable_bias_add_fusion": False, "disable_group_norm_fusion": True,
    "disable_embed_layer_norm_fusion": True, "enable_gemm_fast_gelu_fusion": False, "use_mask_index": False,
    "disable_packed_kv": True, "no_attention_mask": False, "use_raw_attention_mask": False,
    "disable_shape_inference": False, "use_multi_head_attention": False, "enable_gelu_approximation": False,
    "use_group_norm_channels_first": False, "disable_packed_qkv": False, "disable_nhwc_conv": False,
}
OPTIMIZATION_LEVEL_FIELDS: dict[str, dict[str, Any]] = {
    "O1": {"optimization_level": 1, "enable_transformers_specific_optimizations": False},
    "O2": {"optimization_level": 2, "enable_transformers_specific_optimizations": True},
    "O3": {"optimization_level": 2, "enable_transformers_specific_optimizations": True,
           "enable_gelu_approximation": True},
    "O4": {"optimization_level": 2, "enable_transformers_specific_optimizations": True,
           "enable_gelu_approximation": True, "fp16": True},
}

# Optimum's AutoQuantizationConfig presets (dynamic and static share them): weight type and reduce_range; every
# preset quantizes activations to uint8, asymmetric, and weights symmetric, per channel unless told otherwise.
QUANTIZATION_PRESET_FIELDS: dict[str, dict[str, Any]] = {
    "arm64": {"weights_dtype": "QInt8", "reduce_range": False},
    "avx2": {"weights_dtype": "QUInt8", "reduce_range": False},
    "avx512": {"weights_dtype": "QInt8", "reduce_range": False},
    "avx512_vnni": {"weights_dtype": "QInt8", "reduce_range": False},
}
QUANTIZATION_COMMON = {"activations_dtype": "QUInt8", "activations_symmetric": False, "weights_symmetric": True,
                       "per_channel": True}
DEFAULT_OPSET = 18  # Optimum's default OnnxConfig opset (optimum/exporters/onnx/base.py)


def optimum_available() -> bool:
    """Whether Optimum's ONNX Runtime support can be imported here."""
    return importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None


def onnx_route(route: str = "auto") -> str:
    """``"optimum"`` or ``"onnxruntime"``: ``auto`` takes Optimum where it is installed, onnxruntime's tools
    otherwise (transformers 5.x, which optimum-onnx does not support)."""
    if route not in ROUTES:
        raise FastFormersError(f"unknown ONNX route {route!r}; use one of {', '.join(ROUTES)}.")
    if route == "auto":
        return "optimum" if optimum_available() else "onnxruntime"
    if route == "optimum" and not optimum_available():
        raise FastFormersError("the optimum route needs Optimum's ONNX support; install it with "
                               "`pip install fastformers-hf[onnx]` (transformers 4.57), or use route='onnxruntime'.")
    return route


# ----------------------------------------------------------------------------------------------------------------
# Export


def torch_export(model, out_file: Path, opset: int | None = None) -> list[str]:
    """Export ``model`` (fp32, CPU, eval mode) to ``out_file`` with ``torch.onnx.export`` (the TorchScript
    exporter, as Optimum uses it), with the inputs, outputs and dynamic axes Optimum's exporter gives the model's
    task kind. Returns the graph's input names."""
    import torch

    from ..architectures import get_spec
    from ..tasks.kinds import kind_of

    kind, spec = kind_of(model), get_spec(model)
    input_names = ["input_ids", "attention_mask"] + ["token_type_ids"] * spec.onnx_token_type_ids
    outputs = list(kind.outputs)

    class _Outputs(torch.nn.Module):
        """The model with positional inputs and a tuple of the kind's outputs, as the exporter needs."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            result = self.inner(**dict(zip(input_names, tensors)), return_dict=True)
            return tuple(result[name] for name in outputs)

    shape = (2, 2, 16) if len(kind.onnx_input_axes) == 3 else (2, 16)  # (batch[, choices], length)
    dummy = tuple(torch.ones(shape, dtype=torch.long) if n == "attention_mask" else
                  torch.zeros(shape, dtype=torch.long) if n == "token_type_ids" else
                  torch.randint(5, 20, shape, dtype=torch.long) for n in input_names)
    axes = {n: dict(enumerate(kind.onnx_input_axes)) for n in input_names}
    axes.update({n: dict(enumerate(kind.onnx_output_axes)) for n in outputs})
    with torch.no_grad(), _eager_attention(model):
        torch.onnx.export(_Outputs(model), dummy, str(out_file), input_names=input_names, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset or DEFAULT_OPSET, do_constant_folding=True,
                          dynamo=False)
    return input_names


@contextlib.contextmanager
def _eager_attention(model):
    """Trace with the eager attention where the model can switch to it (transformers 5.x): onnxruntime's attention
    fusion matches the eager MatMul-Softmax-MatMul pattern, and 5.x's SDPA graph does not fuse (measured: no
    Attention node on a 5.24 BERT, four with eager). transformers 4.57's BERT cannot switch and traces to a
    pattern that fuses already."""
    previous = getattr(model.config, "_attn_implementation", None)
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError, ImportError):
        yield
        return
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


# ----------------------------------------------------------------------------------------------------------------
# Graph fusion


def optimization_fields(level, changes: dict | None = None, for_gpu: bool = False) -> dict[str, Any]:
    """Optimum's ``OptimizationConfig`` fields for a preset (O1-O4) or a dict of fields, with ``changes`` on top."""
    if isinstance(level, dict):
        base = dict(level)
    elif level in OPTIMIZATION_LEVEL_FIELDS:
        base = dict(OPTIMIZATION_LEVEL_FIELDS[level], optimize_for_gpu=for_gpu)
    else:
        raise FastFormersError(f"unknown optimisation level {level!r}; use one of "
                               f"{', '.join(OPTIMIZATION_LEVEL_FIELDS)} or a dict of OptimizationConfig fields.")
    fields = {**base, **(changes or {})}
    unknown = sorted(k for k in fields if k not in OPTIMIZATION_DEFAULTS)
    if unknown:
        raise FastFormersError(f"OptimizationConfig has no field(s) {unknown}; known: "
                               f"{', '.join(OPTIMIZATION_DEFAULTS)}.")
    return {**OPTIMIZATION_DEFAULTS, **fields}


def ort_optimize(model_file: Path, out_file: Path, model_type: str, num_heads: int, hidden_size: int,
                 fields: dict[str, Any]) -> None:
    """Fuse ``model_file`` into ``out_file`` with ``onnxruntime.transformers.optimizer.optimize_model``, called
    the way Optimum's ``ORTOptimizer.optimize`` calls it (FusionOptions from the fields, fp16 keeping io types)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    args = argparse.Namespace(model_type=model_type,
                              **{k.removesuffix("_fusion"): v for k, v in fields.items()})
    optimizer = optimize_model(str(model_file), model_type, num_heads, hidden_size,
                               opt_level=fields["optimization_level"], optimization_options=FusionOptions.parse(args),
                               use_gpu=fields["optimize_for_gpu"],
                               only_onnxruntime=not fields["enable_transformers_specific_optimizations"])
    if fields["fp16"]:
        optimizer.convert_float_to_float16(use_symbolic_shape_infer=not fields["disable_shape_inference"],
                                           keep_io_types=True)
    optimizer.save_model_to_file(str(out_file))


# ----------------------------------------------------------------------------------------------------------------
# Quantization


def quantization_fields(preset: str, per_channel: bool | None = None) -> dict[str, Any]:
    """The settings of an Optimum quantization preset, ``per_channel`` overriding its default."""
    if preset not in QUANTIZATION_PRESET_FIELDS:
        raise FastFormersError(f"unknown quantization preset {preset!r}; use one of "
                               f"{', '.join(QUANTIZATION_PRESET_FIELDS)}.")
    fields = {**QUANTIZATION_COMMON, **QUANTIZATION_PRESET_FIELDS[preset]}
    if per_channel is not None:
        fields["per_channel"] = per_channel
    return fields


def _extra_options(fields: dict[str, Any]) -> dict[str, Any]:
    # What Optimum's ORTQuantizer passes; MatMulConstBOnly=False because Optimum leaves it unset on its
    # ONNXQuantizer (quantize_dynamic alone would only quantize MatMuls with a constant weight).
    return {"WeightSymmetric": fields["weights_symmetric"], "ActivationSymmetric": fields["activations_symmetric"],
            "EnableSubgraph": False, "MatMulConstBOnly": False,
            "ForceSymmetric": fields["activations_symmetric"] and fields["weights_symmetric"]}


def ort_quantize_dynamic(model, out_file: Path, fields: dict[str, Any]) -> None:
    """Dynamic int8 (weights int8, activations per call) of an ``onnx.ModelProto`` with
    ``onnxruntime.quantization.quantize_dynamic``, with an Optimum preset's settings."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from ..utils.quiet import dropped_log_records, starts_with

    # quantize_dynamic asks for onnxruntime's pre-processing; Optimum's quantizer (the other route) does not run it
    # either, and the graphs are checked against PyTorch afterwards.
    with dropped_log_records("root", starts_with("Please consider")):
        quantize_dynamic(model, str(out_file), op_types_to_quantize=list(IntegerOpsRegistry),
                         per_channel=fields["per_channel"], reduce_range=fields["reduce_range"],
                         weight_type=getattr(QuantType, fields["weights_dtype"]), extra_options=_extra_options(fields))


class _CalibrationReader:
    """Feeds a Dataset of tokenised rows to ``quantize_static`` one input at a time, shape (1, length) each."""

    def __init__(self, dataset, names: list[str]):
        self.rows = iter(dataset)
        self.names = names

    def get_next(self):
        import numpy as np

        row = next(self.rows, None)
        return None if row is None else {n: np.asarray([row[n]], dtype=np.int64) for n in self.names}


def ort_quantize_static(model_file: Path, out_file: Path, fields: dict[str, Any], calibration, names: list[str],
                        method: str) -> None:
    """Static int8 (QDQ, activation ranges calibrated on ``calibration``) with
    ``onnxruntime.quantization.quantize_static``, with an Optimum preset's settings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry

    from ..utils.quiet import dropped_log_records, starts_with

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentiles": CalibrationMethod.Percentile}
    with dropped_log_records("root", starts_with("Please consider")):  # pre-processing: see ort_quantize_dynamic
        quantize_static(str(model_file), str(out_file), _CalibrationReader(calibration, names),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QDQRegistry),
                        per_channel=fields["per_channel"], reduce_range=fields["reduce_range"],
                        activation_type=getattr(QuantType, fields["activations_dtype"]),
                        weight_type=getattr(QuantType, fields["weights_dtype"]), calibrate_method=methods[method],
                        extra_options=_extra_options(fields))
