"""The ONNX route without Optimum (fastformers_hf/onnx/ort_tools.py): torch.onnx.export and onnxruntime's own
optimizer and quantizer give graphs that match PyTorch for every kind and model type, fuse like Optimum's, record
their route, and are what `auto` picks where Optimum is missing."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch

from fastformers_hf import FastFormersError, VariantChoiceConfig, export_onnx, optimize_for_inference
from fastformers_hf.onnx import ort_tools
from fastformers_hf.onnx.export import optimize_onnx
from fastformers_hf.onnx.graph import inference_session
from fastformers_hf.onnx.quantize import quantize_onnx
from fastformers_hf.pruning import prune
from fastformers_hf.tasks.kinds import KINDS
from fastformers_hf.testing import tiny_config, tiny_tokenizer

# (model type, kind, output compared, input shape (batch[, choices], length))
CASES = [
    ("bert", "sequence_classification", "logits", (3, 11)),
    ("roberta", "sequence_classification", "logits", (3, 11)),
    ("distilbert", "sequence_classification", "logits", (3, 11)),
    ("electra", "sequence_classification", "logits", (3, 11)),
    ("xlm-roberta", "sequence_classification", "logits", (3, 11)),
    ("bert", "question_answering", "start_logits", (2, 13)),
    ("distilbert", "token_classification", "logits", (2, 9)),
    ("roberta", "multiple_choice", "logits", (2, 3, 10)),
]


def _model(model_type: str, kind: str, pruned: bool = False):
    torch.manual_seed(0)
    model = KINDS[kind].model_class().from_config(tiny_config(model_type)).eval()
    if pruned:
        prune(model, heads_per_layer=[3, 1, 4, 2], ffn_width=[48, 16, 64, 32], method="magnitude")
    return model


def _run(folder, feeds: dict) -> np.ndarray:
    session = inference_session(folder)
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]


def _feeds(shape, seed=1) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 40, size=shape)
    mask = np.ones(shape, dtype=np.int64)
    mask[0, ..., -3:] = 0  # padding in the first row
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask, "token_type_ids": np.zeros(shape, np.int64)}


def _reference(model, feeds, output):
    names = {"input_ids", "attention_mask"} | ({"token_type_ids"} if model.config.model_type in ("bert", "electra") else set())
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items() if k in names})
    return out[output].numpy()


def _ops(folder) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node)


@pytest.mark.parametrize("model_type,kind,output,shape", CASES)
def test_onnxruntime_route_matches_pytorch_and_fuses(tmp_path, model_type, kind, output, shape):
    model, tok = _model(model_type, kind), tiny_tokenizer()
    plain = export_onnx(model, tmp_path / "fp32", tokenizer=tok, route="onnxruntime")
    fused = optimize_onnx(plain, tmp_path / "fused", route="onnxruntime")
    int8 = quantize_onnx(fused, tmp_path / "int8", route="onnxruntime")
    feeds = _feeds(shape)
    ref = _reference(model, feeds, output)
    assert np.abs(_run(plain, feeds) - ref).max() < 1e-4
    assert np.abs(_run(fused, feeds) - ref).max() < 1e-4
    # int8 of tiny random weights, whose logits are 0.01 to 0.2 in size: the error is judged against their size (at
    # most 0.35 of the largest was seen, across heads and transformers 4.57 / 5.x on AVX2), not by an absolute bound.
    assert np.abs(_run(int8, feeds) - ref).max() < 0.5 * np.abs(ref).max()
    assert _ops(fused)["Attention"] == 4 and _ops(int8)["QAttention"] == 4  # one per layer, as on Optimum's route
    steps = json.loads((int8 / "config.json").read_text())["fastformers"]["steps"]
    assert [s["route"] for s in steps] == ["onnxruntime"] * 3
    expected_inputs = {"input_ids", "attention_mask"} | ({"token_type_ids"} if model_type in ("bert", "electra") else set())
    assert {i.name for i in inference_session(plain).get_inputs()} == expected_inputs
    assert [o.name for o in inference_session(plain).get_outputs()] == list(KINDS[kind].outputs)


def test_uneven_pruned_model_fuses_on_the_onnxruntime_route(tmp_path):
    model = _model("bert", "sequence_classification", pruned=True)
    fused = optimize_onnx(export_onnx(model, tmp_path / "fp32", tokenizer=tiny_tokenizer(), route="onnxruntime"),
                          tmp_path / "fused", route="onnxruntime")
    feeds = _feeds((3, 12))
    assert np.abs(_run(fused, feeds) - _reference(model, feeds, "logits")).max() < 1e-4
    assert _ops(fused)["Attention"] == 4


def test_static_int8_on_the_onnxruntime_route(tmp_path):
    model, tok = _model("bert", "sequence_classification"), tiny_tokenizer()
    plain = export_onnx(model, tmp_path / "fp32", tokenizer=tok, route="onnxruntime")
    texts = ["a good film", "a bad film", "not good at all", "very good indeed"] * 5
    out = quantize_onnx(plain, tmp_path / "static", static=True, calibration_dataset=texts, route="onnxruntime")
    assert _ops(out)["QuantizeLinear"] > 0  # QDQ format
    feeds = _feeds((3, 11))
    assert np.abs(_run(out, feeds) - _reference(model, feeds, "logits")).max() < 0.1


def test_both_routes_build_the_same_graphs(tmp_path):
    pytest.importorskip("optimum.onnxruntime")
    model, tok = _model("bert", "question_answering", pruned=True), tiny_tokenizer()
    graphs = {}
    for route in ("optimum", "onnxruntime"):
        plain = export_onnx(model, tmp_path / route / "fp32", tokenizer=tok, route=route)
        int8 = quantize_onnx(optimize_onnx(plain, tmp_path / route / "fused", route=route), tmp_path / route / "int8",
                             route=route)
        graphs[route] = _ops(int8)
    assert graphs["optimum"] == graphs["onnxruntime"]


def test_auto_takes_onnxruntime_without_optimum(monkeypatch):
    monkeypatch.setattr(ort_tools, "optimum_available", lambda: False)
    assert ort_tools.onnx_route("auto") == "onnxruntime"
    with pytest.raises(FastFormersError, match=r"fastformers-hf\[onnx\]"):
        ort_tools.onnx_route("optimum")
    with pytest.raises(FastFormersError, match="unknown ONNX route"):
        ort_tools.onnx_route("tensorrt")


@pytest.mark.parametrize("level,changes,message", [
    ("O7", None, "unknown optimisation level"),
    ("O2", {"disable_everything": True}, "no field"),
])
def test_bad_optimisation_settings_are_named(level, changes, message):
    with pytest.raises(FastFormersError, match=message):
        ort_tools.optimization_fields(level, changes)


def test_variant_choice_reports_the_route(tmp_path):
    model = _model("bert", "sequence_classification")
    config = VariantChoiceConfig(candidates=["fp32", "int8"], sample_size=8, latency_repeats=1, warmup=1,
                                 route="onnxruntime")
    out = optimize_for_inference(model, tmp_path / "onnx", tokenizer=tiny_tokenizer(), config=config, tolerance=100)
    report = json.loads((out / "onnx_variants.json").read_text())
    assert report["route"] == "onnxruntime"
    assert "onnxruntime's own optimizer and quantizer" in (out / "onnx_variants.md").read_text()
