"""The shared runners with several outputs, and the ONNX variant choice for token classification and question
answering (checked per output and per position on random inputs)."""
import json
import warnings

import numpy as np
import pytest
import torch

from fastformers_hf import FastFormersError, VariantChoiceConfig, export_onnx, load_ort_model, optimize_for_inference
from fastformers_hf.inference.runners import ort_runner, pytorch_runner
from fastformers_hf.onnx.examples import random_examples
from fastformers_hf.onnx.graph import inference_session
from fastformers_hf.tasks.kinds import kind_of
from fastformers_hf.testing import tiny_config

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

CONFIG = dict(candidates=["fp32", "fp32-fused", "int8"], sample_size=6, latency_repeats=1, warmup=1, max_length=24)


def build(kind: str):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    torch.manual_seed(0)
    if kind == "token_classification":
        return AutoModelForTokenClassification.from_config(tiny_config("bert", num_labels=5)).eval()
    if kind == "question_answering":
        return AutoModelForQuestionAnswering.from_config(tiny_config("bert")).eval()
    return AutoModelForSequenceClassification.from_config(tiny_config("bert")).eval()


@pytest.fixture(scope="module")
def exported(tokenizer, tmp_path_factory):
    """kind -> (PyTorch model, ONNX session of its plain fp32 export)."""
    out = {}
    for kind in ("sequence_classification", "token_classification", "question_answering"):
        model = build(kind)
        path = export_onnx(model, tmp_path_factory.mktemp(kind), tokenizer=tokenizer)
        out[kind] = model, inference_session(path)
    return out


@pytest.mark.parametrize("kind, outputs, shapes", [
    ("sequence_classification", None, [(2, 2)]),  # the defaults: .logits / the graph's first output, one array
    ("sequence_classification", ("logits",), [(2, 2)]),
    ("sequence_classification", "logits", [(2, 2)]),
    ("token_classification", ("logits",), [(2, 11, 5)]),
    ("question_answering", ("start_logits", "end_logits"), [(2, 11), (2, 11)]),
    ("question_answering", ("end_logits", "start_logits"), [(2, 11), (2, 11)]),  # in the order asked for
    ("question_answering", ("end_logits",), [(2, 11)]),
])
def test_runners_single_and_multiple_outputs_agree(exported, tokenizer, kind, outputs, shapes):
    model, session = exported[kind]
    features = {"input_ids": np.asarray(
        [tokenizer.build_inputs_with_special_tokens(list(range(10, 19)))] * 2, dtype=np.int64)}
    features["attention_mask"] = np.ones_like(features["input_ids"])
    features["token_type_ids"] = np.zeros_like(features["input_ids"])
    pt = pytorch_runner(model) if outputs is None else pytorch_runner(model, outputs)
    ort = ort_runner(session) if outputs is None else ort_runner(session, outputs)
    got_pt, got_ort = pt(features), ort(features)
    if len(shapes) == 1:
        assert isinstance(got_pt, np.ndarray) and isinstance(got_ort, np.ndarray)
        got_pt, got_ort = (got_pt,), (got_ort,)
    else:
        assert isinstance(got_pt, tuple) and isinstance(got_ort, tuple)
    assert [a.shape for a in got_pt] == [a.shape for a in got_ort] == shapes
    for a, b in zip(got_pt, got_ort):
        np.testing.assert_allclose(a, b, atol=1e-4)
    if outputs is not None and not isinstance(outputs, str):  # each named output is that output of the model
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in features.items()})
        for name, a in zip(outputs, got_pt):
            np.testing.assert_allclose(a, getattr(out, name).numpy(), atol=1e-6)


def test_runners_refuse_outputs_the_model_or_graph_lacks(exported, tokenizer):
    model, session = exported["sequence_classification"]
    features = random_examples(tokenizer, 1, 16)[0]
    with pytest.raises(FastFormersError, match="start_logits"):
        ort_runner(session, ("start_logits", "end_logits"))
    with pytest.raises(FastFormersError, match="start_logits"):
        pytorch_runner(model, ("start_logits",))(features)


@pytest.mark.parametrize("kind, per_output", [
    ("token_classification", ["logits"]),
    ("question_answering", ["start_logits", "end_logits"]),
])
def test_variant_choice_without_eval_set_checks_every_output(kind, per_output, tokenizer, tmp_path):
    model = build(kind)
    assert kind_of(model).name == kind
    config = VariantChoiceConfig(**CONFIG)
    out = optimize_for_inference(model, tmp_path / "best", tokenizer=tokenizer, config=config)
    report = json.loads((out / "onnx_variants.json").read_text())
    assert report["chosen"] in CONFIG["candidates"]
    assert report["reference"]["kind"] == kind
    assert report["data"].startswith("random tokens")
    for r in report["results"]:
        assert list(r["per_output"]) == per_output
        for o in r["per_output"].values():
            assert 0.0 <= o["agreement"] <= 1.0 and o["max_abs_diff"] >= 0 and o["compared"] > 0
        assert r["max_logit_diff"] == max(o["max_abs_diff"] for o in r["per_output"].values())
        assert r["label_agreement"] == min(o["agreement"] for o in r["per_output"].values())
        assert r["loss_points"] == pytest.approx(100 * (1 - r["label_agreement"]))
    chosen = next(r for r in report["results"] if r["name"] == report["chosen"])
    assert chosen["passed"] and chosen["loss_points"] <= config.tolerance
    fp32 = next(r for r in report["results"] if r["name"] == "fp32")
    assert fp32["max_logit_diff"] < 1e-3 and fp32["label_agreement"] == 1.0
    if kind == "token_classification":  # one agreement per real token, QA one per input
        assert fp32["per_output"]["logits"]["compared"] > CONFIG["sample_size"]
    else:
        assert fp32["per_output"]["start_logits"]["compared"] == CONFIG["sample_size"]
    assert "per_output" not in json.dumps(report["reference"])
    assert isinstance(load_ort_model(out), kind_of(model).ort_class())


@pytest.mark.parametrize("kind", ["token_classification", "question_answering"])
def test_eval_set_for_per_position_kinds_is_refused_before_any_work(kind, tokenizer, tmp_path):
    with pytest.raises(FastFormersError, match=f"an eval set for {kind} is not supported by the variant choice yet; "
                                               "pass none to check against PyTorch on random inputs"):
        optimize_for_inference(build(kind), tmp_path / "best", eval_dataset=["a text", "another"],
                               tokenizer=tokenizer, config=VariantChoiceConfig(**CONFIG))
    assert not (tmp_path / "best").exists()


def test_classification_report_keeps_its_fields(tokenizer, tmp_path):
    out = optimize_for_inference(build("sequence_classification"), tmp_path / "best", tokenizer=tokenizer,
                                 config=VariantChoiceConfig(**dict(CONFIG, candidates=["fp32"])))
    report = json.loads((out / "onnx_variants.json").read_text())
    assert "kind" not in report["reference"]
    assert all("per_output" not in r for r in report["results"])
