"""ONNX Runtime path: export -> fuse -> int8 / fp16 for every architecture, the variant choice, and bad inputs."""
import hashlib
import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fastformers_hf import (FastFormersError, SessionConfig, VariantChoiceConfig, export_onnx, load_measurements,
                            optimize_for_inference, optimize_onnx, quantize_onnx, to_fp16)
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_config, tiny_model

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

# Uneven heads kept per layer after pruning: 3, 2, 4, 1 of 4.
UNEVEN = [3, 2, 4, 1]
SENTENCES = make_sentiment_data(0, 40, seed=3)["validation"]["sentence"]


def prune_uneven(model):
    from fastformers_hf.pruning import prune

    return prune(model, heads_per_layer=UNEVEN, method="magnitude")


class _Session:
    """A bare onnxruntime session called like a model, ``model(**encoded).logits``: where Optimum is not installed
    (transformers 5.x), this is how the package's own loaders run a folder."""

    def __init__(self, path):
        from fastformers_hf.onnx.graph import inference_session

        self.session = inference_session(path)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs):
        from types import SimpleNamespace

        feeds = {k: v.numpy() for k, v in inputs.items()}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(["logits"], feeds)[0]))


def ort_model(path):
    """Optimum's ORTModelForSequenceClassification where Optimum is installed, else a bare session."""
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification
    except ImportError:
        return _Session(path)
    return ORTModelForSequenceClassification.from_pretrained(path)


def logits_of(model, tokenizer, texts=SENTENCES):
    """Logits (N, 2) at batch 1 (dynamic length), from a PyTorch or ORT model, fed only the inputs it takes."""
    out = []
    for text in texts:
        enc = tokenizer(text, return_tensors="pt")
        names = getattr(model, "input_names", None) or inspect.signature(model.forward).parameters
        with torch.no_grad():
            out.append(model(**{k: v for k, v in enc.items() if k in names}).logits.numpy())
    return np.concatenate(out)


def op_types(onnx_dir):
    return {n.op_type for n in onnx.load(str(Path(onnx_dir) / "model.onnx")).graph.node}


def digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).iterdir())}


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra", "distilbert"])
def test_export_fuse_quantize_match_pytorch(model_type, tokenizer, tmp_path, caplog):
    model = tiny_model(model_type)
    prune_uneven(model)
    ref = logits_of(model, tokenizer)

    exported = export_onnx(model, tmp_path / "fp32", tokenizer=tokenizer)
    before = digest(exported)
    with caplog.at_level("WARNING"):
        fused = optimize_onnx(exported, tmp_path / "fused", level="O2")
    assert "Input hidden size" not in caplog.text  # ORT's noise about pruned heads is dropped
    int8 = quantize_onnx(exported, tmp_path / "int8", preset="avx512_vnni")
    int8_fused = quantize_onnx(fused, tmp_path / "int8-fused")  # a fused graph: needs the shape-inference pass
    assert digest(exported) == before  # inputs are never overwritten

    # Attention fusion happened on the uneven pruned graph, and survived quantization as QAttention.
    assert "Attention" in op_types(fused)
    assert {"QAttention", "MatMulInteger"} <= op_types(int8_fused)
    assert "MatMulInteger" in op_types(int8)

    for path in (exported, fused):
        np.testing.assert_allclose(logits_of(ort_model(path), tokenizer), ref, atol=1e-4)
    for path in (int8, int8_fused):
        got = logits_of(ort_model(path), tokenizer)
        assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
        assert np.abs(got - ref).max() < 0.05
        assert {"config.json", "tokenizer.json"} <= set(digest(path))
    steps = [s["step"] for s in json.loads((int8_fused / "config.json").read_text())["fastformers"]["steps"]]
    assert steps[-3:] == ["onnx_export", "onnx_optimize", "onnx_quantize"]


def test_export_from_directory_keeps_pruned_shape(tokenizer, tmp_path):
    model = tiny_model("bert")
    prune_uneven(model)
    model.save_pretrained(tmp_path / "pt")
    tokenizer.save_pretrained(tmp_path / "pt")
    out = export_onnx(tmp_path / "pt", tmp_path / "onnx")
    record = json.loads((out / "config.json").read_text())["fastformers"]
    assert record["heads_per_layer"] == [3, 2, 4, 1]
    assert record["steps"][-1]["step"] == "onnx_export" and record["steps"][-1]["opset"] >= 11
    np.testing.assert_allclose(logits_of(ort_model(out), tokenizer), logits_of(model, tokenizer), atol=1e-4)


def test_per_layer_ffn_widths_from_prune(tokenizer, tmp_path):
    pruning = pytest.importorskip("fastformers_hf.pruning")
    model = tiny_model("bert")
    pruning.prune(model, heads_per_layer=[3, 2, 4, 1], ffn_width=[64, 32, 48, 16], method="magnitude")
    model.save_pretrained(tmp_path / "pt")
    tokenizer.save_pretrained(tmp_path / "pt")
    fused = optimize_onnx(export_onnx(tmp_path / "pt", tmp_path / "onnx"), tmp_path / "fused")
    assert "Attention" in op_types(fused)
    np.testing.assert_allclose(logits_of(ort_model(fused), tokenizer), logits_of(model, tokenizer), atol=1e-4)


def test_fp16_graph_converts_and_loads_on_cpu(tokenizer, tmp_path):
    model = tiny_model("bert")
    out = to_fp16(export_onnx(model, tmp_path / "fp32", tokenizer=tokenizer), tmp_path / "fp16")
    graph = onnx.load(str(out / "model.onnx")).graph
    types = [i.data_type for i in graph.initializer]
    assert types.count(onnx.TensorProto.FLOAT16) > len(types) // 2
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64  # io types kept
    assert json.loads((out / "config.json").read_text())["fastformers"]["steps"][-1]["level"] == "fp16"
    np.testing.assert_allclose(logits_of(ort_model(out), tokenizer), logits_of(model, tokenizer), atol=1e-2)


def test_static_quantization_with_calibration_data(tokenizer, tmp_path):
    model = tiny_model("bert")
    exported = export_onnx(model, tmp_path / "fp32", tokenizer=tokenizer)
    calib = make_sentiment_data(0, 32, seed=5)["validation"]
    out = quantize_onnx(exported, tmp_path / "static", static=True, calibration_dataset=calib,
                        num_calibration_samples=32)
    assert "QuantizeLinear" in op_types(out)
    assert json.loads((out / "config.json").read_text())["fastformers"]["steps"][-1]["static"] is True
    got, ref = logits_of(ort_model(out), tokenizer), logits_of(model, tokenizer)
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.8
    assert not list(Path.cwd().glob("augmented*.onnx"))  # calibration scratch files stay in a temp dir


def test_optimize_for_inference_picks_fastest_within_tolerance(tokenizer, tmp_path):
    model = tiny_model("bert")
    prune_uneven(model)
    model.save_pretrained(tmp_path / "pt")
    tokenizer.save_pretrained(tmp_path / "pt")
    before = digest(tmp_path / "pt")
    data = make_sentiment_data(0, 60, seed=2)["validation"]
    config = VariantChoiceConfig(sample_size=20, latency_repeats=2, warmup=1, data_name="sentiment-dev")
    long_inputs = [" ".join(SENTENCES[i:i + 4]) for i in range(0, 40, 4)]  # timed on other (longer) traffic
    out = optimize_for_inference(tmp_path / "pt", tmp_path / "best", eval_dataset=data, tolerance=5.0, config=config,
                                 latency_dataset=long_inputs)

    assert digest(tmp_path / "pt") == before
    report = json.loads((out / "onnx_variants.json").read_text())
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == set(config.candidates)
    kept = [r for r in results.values() if r["passed"]]
    fastest, chosen = min(r["latency"]["mean_ms"] for r in kept), results[report["chosen"]]
    near = [r for r in kept if r["latency"]["mean_ms"] <= fastest * (1 + config.speed_margin)]
    assert chosen in near and chosen["loss_points"] == min(r["loss_points"] for r in near)
    assert all(r["accuracy_drop_points"] <= 5.0 for r in kept)
    assert results["fp32"]["max_logit_diff"] < 1e-4 and results["int8"]["max_logit_diff"] > 0
    assert report["reference"]["latency"]["mean_ms"] > 0 and "other_load_cores" in report["other_cpu_load"]
    assert report["reference"]["timed_on"] == "10 inputs of latency_dataset (10 examples, no labels)"
    assert report["data"] == "sentiment-dev (60 examples)"
    measured = {(m["metric"], m["variant"]) for m in load_measurements(out)}
    assert {("latency_ms", f"onnx-{report['chosen']}"), ("latency_ms", "onnx"), ("accuracy", "pytorch")} <= measured
    assert report["chosen"] in (out / "onnx_variants.md").read_text()
    np.testing.assert_allclose(logits_of(ort_model(out), tokenizer), logits_of(model, tokenizer), atol=0.05)


def _weight_scales(onnx_dir):
    """Sizes of the scales of the graph's int8 weights (1 = one scale per matrix)."""
    sizes = {i.name: int(np.prod(i.dims)) for i in onnx.load(str(Path(onnx_dir) / "model.onnx")).graph.initializer}
    return {n: sizes[n[:-len("_quantized")] + "_scale"] for n in sizes
            if n.endswith("_quantized") and n[:-len("_quantized")] + "_scale" in sizes}


@pytest.mark.parametrize("variant,has,lacks,per_tensor", [
    ("int8-attention", {"QAttention", "LayerNormalization"}, {"SkipLayerNormalization", "FastGelu"}, False),
    ("int8-attention-fast-gelu", {"QAttention", "FastGelu"}, {"SkipLayerNormalization", "Gelu"}, False),
    ("int8-attention-fast-gelu-per-tensor", {"QAttention", "FastGelu"}, {"SkipLayerNormalization"}, True),
])
def test_variant_recipes_build_the_graphs_they_name(tokenizer, tmp_path, variant, has, lacks, per_tensor):
    from fastformers_hf.onnx.config import SESSION_DISABLED_OPTIMIZERS
    from fastformers_hf.onnx.variants import build_candidates

    export = export_onnx(tiny_model("bert"), tmp_path / "fp32", tokenizer=tokenizer)
    built = build_candidates(export, tmp_path / "work", VariantChoiceConfig(candidates=[variant]))[variant]
    ops = op_types(built)
    assert has <= ops and not lacks & ops, ops
    scales = _weight_scales(built)
    assert scales and (set(scales.values()) == {1}) == per_tensor, scales
    assert SESSION_DISABLED_OPTIMIZERS[variant] == ("SkipLayerNormFusion",)  # else ORT fuses Add + LN at load


@pytest.mark.parametrize("timings,margin,expected", [
    ({"a": (1.00, 0.5), "b": (1.02, 0.0), "c": (1.50, -1.0)}, 0.03, "b"),  # b is as fast within noise and loses less
    ({"a": (1.00, 0.5), "b": (1.02, 0.0)}, 0.0, "a"),  # no margin: strictly the fastest
    ({"a": (1.00, 0.5), "b": (1.10, 0.0)}, 0.03, "a"),  # b is really slower
    ({"a": (1.01, 0.0), "b": (1.00, 0.0)}, 0.03, "b"),  # equal loss: the faster
])
def test_near_ties_in_speed_go_to_the_more_accurate_variant(timings, margin, expected):
    from fastformers_hf.onnx.variants import VariantResult, pick_variant

    kept = [VariantResult(n, [], True, loss_points=loss, latency={"mean_ms": ms}) for n, (ms, loss) in timings.items()]
    assert pick_variant(kept, margin) == expected


def test_variant_outside_tolerance_is_refused_with_numbers(tokenizer, tmp_path):
    model = tiny_model("bert")
    config = VariantChoiceConfig(candidates=["int8", "int8-fused"], max_logit_diff=0.0, sample_size=8,
                                 latency_repeats=1, warmup=0)
    with pytest.raises(FastFormersError, match=r"(?s)no ONNX variant is within.*int8-fused \| no: max logit diff"):
        optimize_for_inference(model, tmp_path / "best", tokenizer=tokenizer, config=config)
    assert not (tmp_path / "best").exists() and not list(tmp_path.glob(".best*"))


def test_session_variant_is_saved_with_the_graph_and_applied_at_load(tokenizer, tmp_path, monkeypatch):
    import onnxruntime as ort

    from fastformers_hf.onnx.graph import inference_session

    model = tiny_model("bert")
    config = VariantChoiceConfig(candidates=["int8-unfused-ln"], tolerance=100.0, sample_size=4, latency_repeats=1,
                                 warmup=0)
    out = optimize_for_inference(model, tmp_path / "best", tokenizer=tokenizer, config=config)
    assert json.loads((out / "ort_session.json").read_text())["disabled_optimizers"] == ["SkipLayerNormFusion"]

    def fused_ops(disabled):  # the graph ORT really runs, written out after its load-time fusions
        opts = SessionConfig().session_options()
        opts.optimized_model_filepath = str(tmp_path / "seen.onnx")
        ort.InferenceSession(str(out / "model.onnx"), opts, disabled_optimizers=disabled)
        return {n.op_type for n in onnx.load(str(tmp_path / "seen.onnx")).graph.node}

    assert "SkipLayerNormalization" in fused_ops([])  # the name we switch off is one ORT knows and applies
    assert "SkipLayerNormalization" not in fused_ops(["SkipLayerNormFusion"])
    seen = []
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **kw: seen.append(kw["disabled_optimizers"]) or real(*a, **kw))
    inference_session(out)  # the folder's own setting
    inference_session(out, SessionConfig(disabled_optimizers=[]))  # an explicit setting wins
    assert seen == [["SkipLayerNormFusion"], []]
    # A new graph made from this folder does not inherit a session setting chosen for the old one.
    assert not (quantize_onnx(out, tmp_path / "again") / "ort_session.json").exists()


def test_session_defaults_hold_up_under_load():
    opts = SessionConfig().session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert SessionConfig(allow_spinning=True).session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "1"


@pytest.fixture
def exported(tokenizer, tmp_path):
    return export_onnx(tiny_model("bert", num_layers=1), tmp_path / "fp32", tokenizer=tokenizer)


def _no_model_dir(tmp_path, exported):
    (tmp_path / "empty").mkdir()
    return lambda: export_onnx(tmp_path / "empty", tmp_path / "out")


def _no_weights(tmp_path, exported):
    tiny_config("bert").save_pretrained(tmp_path / "cfg")
    return lambda: export_onnx(tmp_path / "cfg", tmp_path / "out")


def _unsupported_arch(tmp_path, exported):
    from transformers import AutoModelForSequenceClassification

    fnet = AutoModelForSequenceClassification.from_config(tiny_config("fnet", num_heads=4))
    return lambda: export_onnx(fnet, tmp_path / "out", tokenizer=object())


def _corrupt_onnx_optimize(tmp_path, exported):
    (exported / "model.onnx").write_bytes(b"not a protobuf at all")
    return lambda: optimize_onnx(exported, tmp_path / "out")


def _corrupt_onnx_quantize(tmp_path, exported):
    (exported / "model.onnx").write_bytes(b"\x08\x07garbage")
    return lambda: quantize_onnx(exported, tmp_path / "out")


def _no_onnx(tmp_path, exported):
    (exported / "model.onnx").unlink()
    return lambda: quantize_onnx(exported, tmp_path / "out")


def _overwrite_input(tmp_path, exported):
    return lambda: quantize_onnx(exported, exported)


def _unknown_preset(tmp_path, exported):
    return lambda: quantize_onnx(exported, tmp_path / "out", preset="avx9000")


def _unknown_level(tmp_path, exported):
    return lambda: optimize_onnx(exported, tmp_path / "out", level="O7")


def _static_without_data(tmp_path, exported):
    return lambda: quantize_onnx(exported, tmp_path / "out", static=True)


def _negative_tolerance(tmp_path, exported):
    return lambda: optimize_for_inference(tiny_model("bert"), tmp_path / "out", tolerance=-1)


def _unknown_candidate(tmp_path, exported):
    return lambda: VariantChoiceConfig(candidates=["int4"])


@pytest.mark.parametrize("case, message", [
    (_no_model_dir, "holds no model"),
    (_no_weights, "no weights"),
    (_unsupported_arch, "not supported for ONNX export: fnet"),
    (_corrupt_onnx_optimize, "not a valid ONNX model"),
    (_corrupt_onnx_quantize, "not a valid ONNX model"),
    (_no_onnx, "holds no .onnx model"),
    (_overwrite_input, "inputs are never overwritten"),
    (_unknown_preset, "unknown quantization preset 'avx9000'"),
    (_unknown_level, "unknown optimisation level 'O7'"),
    (_static_without_data, "needs a calibration_dataset"),
    (_negative_tolerance, "tolerance must be >= 0"),
    (_unknown_candidate, "unknown candidate variant"),
])
def test_bad_input_is_refused_and_nothing_is_written(case, message, tmp_path, exported):
    call = case(tmp_path, exported)
    with pytest.raises(FastFormersError, match=message):
        call()
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
