"""The shared runners with several outputs, and the ONNX variant choice for token classification and question
answering (checked per output and per position on random inputs; judged by SQuAD / entity F1 on a raw eval split)."""
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fastformers_hf import FastFormersError, VariantChoiceConfig, export_onnx, load_ort_model, optimize_for_inference
from fastformers_hf.inference.runners import ort_runner, pytorch_runner
from fastformers_hf.inference.tokenization import with_special_tokens
from fastformers_hf.measurements import load_measurements
from fastformers_hf.onnx.examples import random_examples
from fastformers_hf.onnx.graph import inference_session
from fastformers_hf.onnx.ort_tools import optimum_available
from fastformers_hf.tasks.kinds import kind_of
from fastformers_hf.testing import tiny_config

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

CONFIG = dict(candidates=["fp32", "fp32-fused", "int8"], sample_size=6, latency_repeats=1, warmup=1, max_length=24)
NER_LABELS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")  # what load_conll derives from the tags of CONLL_DEV


def build(kind: str):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    torch.manual_seed(0)
    if kind == "token_classification":
        config = tiny_config("bert", num_labels=5)
        config.id2label, config.label2id = dict(enumerate(NER_LABELS)), {n: i for i, n in enumerate(NER_LABELS)}
        return AutoModelForTokenClassification.from_config(config).eval()
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
        [with_special_tokens(tokenizer, list(range(10, 19)))] * 2, dtype=np.int64)}
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
    if optimum_available():  # Optimum's ORTModel class of the kind loads the folder
        assert isinstance(load_ort_model(out), kind_of(model).ort_class())


# -- judged by the task's metric on a raw eval split ----------------------------------------------------------------

SQUAD_CONTEXTS = ["the film was good . the plot was dull but the music was great .",
                  "the cast was charming and the script was clever ."]
SQUAD_DEV = [("q1", 0, "what was dull ?", "the plot"), ("q2", 0, "what was great ?", "the music"),
             ("q3", 1, "what was clever ?", "the script"), ("q4", 1, "what was charming ?", "the cast")]
CONLL_DEV = [[("the", "O"), ("film", "B-LOC"), ("was", "O"), ("great", "B-PER"), ("music", "I-PER")],
             [("the", "O"), ("cast", "B-PER"), ("was", "O"), ("charming", "O")],
             [("plot", "B-LOC"), ("script", "I-LOC"), ("is", "O"), ("dull", "O")],
             [("the", "O"), ("movie", "B-LOC"), ("was", "O"), ("fresh", "B-LOC")]]


def raw_split(kind: str, folder):
    """The validation split of tiny SQuAD v1.1 JSON / CoNLL column files written to ``folder``."""
    from fastformers_hf.tasks.data import load_task_data

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "question_answering":
        paragraphs = [{"context": c, "qas": [{"id": i, "question": q, "answers": [{"text": a, "answer_start":
                                                                                  c.index(a)}]}
                                             for i, k, q, a in SQUAD_DEV if k == n]}
                      for n, c in enumerate(SQUAD_CONTEXTS)]
        (folder / "dev.json").write_text(json.dumps({"version": "1.1", "data": [
            {"title": "films", "paragraphs": paragraphs}]}), encoding="utf-8")
        return load_task_data(folder, "squad")["validation"]
    (folder / "dev.txt").write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in CONLL_DEV) + "\n",
                                    encoding="utf-8")
    return load_task_data(folder, "conll2003")["validation"]


def scored_model(kind: str):
    model = build(kind)
    if kind == "token_classification":  # every token B-LOC: some entities right, so the F1 is not 0 everywhere
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor([0.0, 8.0, 0.0, 0.0, 0.0]))
    return model


@pytest.mark.parametrize("kind, task", [("question_answering", "squad"), ("token_classification", "conll2003")])
def test_eval_split_judges_variants_by_the_task_f1(kind, task, tokenizer, tmp_path):
    split = raw_split(kind, tmp_path / "data")
    config = VariantChoiceConfig(**CONFIG, max_eval_samples=3, tolerance=1.0)
    out = optimize_for_inference(scored_model(kind), tmp_path / "best", eval_dataset=split, tokenizer=tokenizer,
                                 config=config)
    report = json.loads((out / "onnx_variants.json").read_text())
    ref = report["reference"]
    assert ref["metric"] == "f1" and ref["kind"] == kind and ref["compared_on"].startswith("random tokens")
    assert report["data"] == f"data (3 examples, {task} f1)"  # capped by max_eval_samples
    assert ref["timed_on"].endswith(ref["compared_on"])  # timed as without a split
    if kind == "token_classification":
        assert 0 < ref["metrics"]["f1"] < 100 and set(ref["metrics"]) == {"precision", "recall", "f1"}
    else:
        assert set(ref["metrics"]) == {"exact_match", "f1"}
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == set(CONFIG["candidates"])
    for r in results.values():
        assert r["metric_drop_points"] == pytest.approx(ref["metrics"]["f1"] - r["metrics"]["f1"])
        assert r["loss_points"] == r["metric_drop_points"]
        assert r["per_output"] and 0 <= r["label_agreement"] <= 1  # still compared on the random inputs
        assert r["passed"] == (r["loss_points"] <= config.tolerance + 1e-9 and not r["reasons"])
    assert results["fp32"]["metrics"] == pytest.approx(ref["metrics"])  # same graph as PyTorch: same answers
    chosen = results[report["chosen"]]
    assert chosen["passed"] and chosen["loss_points"] <= config.tolerance
    table = (out / "onnx_variants.md").read_text()
    assert "| f1 | loss (f1 points) |" in table and "within 1.0 f1 points" in table
    measured = {(m["metric"], m["variant"]) for m in load_measurements(out)}
    assert {("f1", "pytorch"), ("f1", "onnx"), ("f1", "onnx-int8")} <= measured


@pytest.fixture
def worse_int8(monkeypatch):
    """Scores every session built from the ``int8`` folder 5 F1 points below what it really gets."""
    from fastformers_hf.onnx import variants
    from fastformers_hf.onnx.task_metric import TaskScorer

    sessions, real_session, real_score = {}, variants.inference_session, TaskScorer.score

    def session(path, *args, **kwargs):
        out = real_session(path, *args, **kwargs)
        sessions[id(out)] = Path(path).name
        return out

    def score(self, source):
        metrics = real_score(self, source)
        return {**metrics, "f1": metrics["f1"] - 5.0} if sessions.get(id(source)) == "int8" else metrics

    monkeypatch.setattr(variants, "inference_session", session)
    monkeypatch.setattr(TaskScorer, "score", score)


@pytest.mark.parametrize("kind", ["question_answering", "token_classification"])
def test_a_variant_losing_more_f1_than_the_tolerance_is_not_chosen(kind, tokenizer, tmp_path, worse_int8):
    split = raw_split(kind, tmp_path / "data")
    config = VariantChoiceConfig(**dict(CONFIG, candidates=["fp32", "int8"]), tolerance=4.0)
    out = optimize_for_inference(scored_model(kind), tmp_path / "best", eval_dataset=split, tokenizer=tokenizer,
                                 config=config)
    report = json.loads((out / "onnx_variants.json").read_text())
    int8 = next(r for r in report["results"] if r["name"] == "int8")
    assert int8["loss_points"] > config.tolerance and not int8["passed"]
    assert any("f1 points (eval f1)" in reason for reason in int8["reasons"])
    assert report["chosen"] == "fp32"
    with pytest.raises(FastFormersError, match="no ONNX variant is within the tolerance of 4.0 f1 points"):
        optimize_for_inference(scored_model(kind), tmp_path / "none", eval_dataset=split, tokenizer=tokenizer,
                               config=dataclasses.replace(config, candidates=["int8"]))


@pytest.mark.parametrize("kind, eval_dataset, needle", [
    ("question_answering", ["a text", "another"], "an eval set for question_answering is a raw squad split"),
    ("token_classification", "sst2-like", "has no column 'tokens', 'ner_tags'"),
    ("token_classification", "conll", r"the eval set's tags \['B-LOC', 'B-PER', 'I-LOC', 'I-PER', 'O'\] are not among"),
])
def test_bad_eval_splits_are_refused_before_any_work(kind, eval_dataset, needle, tokenizer, tmp_path):
    from datasets import Dataset

    model = build(kind)
    if eval_dataset == "sst2-like":
        eval_dataset = Dataset.from_dict({"sentence": ["the film was good"], "label": [1]})
    elif eval_dataset == "conll":  # the model's labels are LABEL_0..4: entity F1 would be 0 for every variant
        eval_dataset = raw_split(kind, tmp_path / "data")
        model.config.id2label = {i: f"LABEL_{i}" for i in range(5)}
    with pytest.raises(FastFormersError, match=needle):
        optimize_for_inference(model, tmp_path / "best", eval_dataset=eval_dataset, tokenizer=tokenizer,
                               config=VariantChoiceConfig(**CONFIG))
    assert not (tmp_path / "best").exists()


def test_classification_report_keeps_its_fields(tokenizer, tmp_path):
    out = optimize_for_inference(build("sequence_classification"), tmp_path / "best", tokenizer=tokenizer,
                                 config=VariantChoiceConfig(**dict(CONFIG, candidates=["fp32"])))
    report = json.loads((out / "onnx_variants.json").read_text())
    assert "kind" not in report["reference"]
    assert all("per_output" not in r for r in report["results"])
