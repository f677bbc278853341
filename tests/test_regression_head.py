"""The regression head (one output, MSE distillation): on generated STS-B-like pairs a tiny teacher is fine-tuned,
distilled into a one-layer student, and scored by Pearson / Spearman in the Trainer and in the served evaluation."""
import math
import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

from fastformers_hf import DistillationConfig, DistillationTrainer, make_student, tokenize
from fastformers_hf.inference.evaluation import evaluation_for
from fastformers_hf.tasks.kinds import kind_of
from fastformers_hf.tasks.metrics import regression_compute_metrics, regression_metrics
from fastformers_hf.tasks.names import TaskSpec
from fastformers_hf.tasks.synthetic import FILLERS, NEGATIVE, POSITIVE, SUBJECTS
from fastformers_hf.testing import tiny_config, tiny_tokenizer

STSB = TaskSpec(("sentence1", "sentence2"), (), metric="pearson", kind="regression")
FIELDS = STSB.text_fields


def sts_pairs(n: int, seed: int) -> Dataset:
    """Sentence pairs scored 0-5 by their word overlap (Jaccard x 5), like STS-B's similarity scores."""
    rng = random.Random(seed)
    rows = {"sentence1": [], "sentence2": [], "label": []}
    for _ in range(n):
        first = [rng.choice(SUBJECTS), "was", rng.choice(FILLERS) + rng.choice(POSITIVE + NEGATIVE)]
        second = [w if rng.random() < 0.5 else rng.choice(SUBJECTS + POSITIVE + NEGATIVE) for w in first]
        a, b = set(" ".join(first).split()), set(" ".join(second).split())
        rows["sentence1"].append(" ".join(first))
        rows["sentence2"].append(" ".join(second))
        rows["label"].append(5 * len(a & b) / len(a | b))
    return Dataset.from_dict(rows)


def scores(model, features, tokenizer) -> np.ndarray:
    batch = DataCollatorWithPadding(tokenizer)([{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
                                                for r in features])
    with torch.no_grad():
        return model.eval()(**batch).logits[:, 0].numpy()  # (N,)


def test_regression_metrics():
    assert regression_metrics([1, 2, 3, 4], [10, 20, 40, 80])["spearman"] == pytest.approx(1.0)
    assert regression_metrics([1, 2, 3], [3, 2, 1])["pearson"] == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in regression_metrics([1, 2, 3], [5, 5, 5]).values())  # a constant prediction


def test_distilled_regression_student_follows_its_teacher(tmp_path):
    tok = tiny_tokenizer()
    raw_dev = sts_pairs(64, seed=1)
    train, dev = tokenize(sts_pairs(256, seed=0), tok, FIELDS), tokenize(raw_dev, tok, FIELDS)
    torch.manual_seed(0)
    config = tiny_config("bert", num_layers=2, num_labels=1, initializer_range=0.3)
    teacher = AutoModelForSequenceClassification.from_config(config)
    assert kind_of(teacher).name == "regression"
    args = TrainingArguments(output_dir=str(tmp_path / "t"), max_steps=120, per_device_train_batch_size=16,
                             learning_rate=3e-3, report_to=[], save_strategy="no", dataloader_pin_memory=False,
                             seed=0, logging_steps=1000)
    Trainer(model=teacher, args=args, train_dataset=train, processing_class=tok).train()  # MSE on the gold scores
    taught = scores(teacher, dev, tok)
    assert regression_metrics(dev["labels"], taught)["pearson"] > 0.4  # the teacher learned the scores

    student = make_student(teacher, num_layers=1)
    before = regression_metrics(taught, scores(student, dev, tok))["pearson"]
    args = DistillationConfig(output_dir=str(tmp_path / "s"), max_steps=160, per_device_train_batch_size=16,
                              learning_rate=3e-3, report_to=[], save_strategy="no", dataloader_pin_memory=False,
                              seed=0, logging_steps=1000, distillation_weight=1.0)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=train,
                                  eval_dataset=dev, processing_class=tok, compute_metrics=regression_compute_metrics)
    trainer.train()
    predicted = scores(student, dev, tok)
    after = regression_metrics(taught, predicted)["pearson"]
    assert after > 0.7 and after > before + 0.25, (before, after)

    metrics = trainer.evaluate()  # Pearson / Spearman of the student against the gold scores
    expected = regression_metrics(dev["labels"], predicted)
    assert metrics["eval_pearson"] == pytest.approx(expected["pearson"], abs=1e-4)
    assert metrics["eval_spearman"] == pytest.approx(expected["spearman"], abs=1e-4)
    served = evaluation_for("regression")  # the served path: a TextClassifier over raw pairs
    got = served.score(served.load(student, tok, batch_size=8), raw_dev, STSB)
    assert got == pytest.approx(expected, abs=1e-4)
    assert served.points(got) == pytest.approx(100 * expected["pearson"])


def test_the_distill_command_scores_a_regression_head_by_correlation():
    from transformers import EvalPrediction

    from fastformers_hf.commands.distill import _metric

    scores = np.array([[0.1], [0.9], [0.4], [2.0]])  # (N, 1): one output unit
    metrics = _metric("regression", ())(EvalPrediction(predictions=scores, label_ids=np.array([0.0, 1.0, 0.5, 3.0])))
    assert set(metrics) == {"pearson", "spearman"} and metrics["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("with_eval", [False, True])
def test_onnx_variants_of_a_regression_head_are_judged_by_pearson(tmp_path, with_eval):
    """Not by an argmax over one output (always 0): against the gold scores of an eval split, or, on random inputs,
    by the correlation of each variant's scores with PyTorch's."""
    import json

    from fastformers_hf import VariantChoiceConfig, optimize_for_inference

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        tiny_config("bert", num_layers=2, num_labels=1, initializer_range=0.5)).eval()
    config = VariantChoiceConfig(candidates=["fp32", "int8"], sample_size=16, latency_repeats=1, warmup=1,
                                 max_length=24, tolerance=100.0, text_fields=list(FIELDS))
    split = sts_pairs(24, seed=2)
    out = optimize_for_inference(model, tmp_path / "best", tokenizer=tiny_tokenizer(), config=config,
                                 eval_dataset=split if with_eval else None)
    report = json.loads((out / "onnx_variants.json").read_text())
    fp32, int8 = (next(r for r in report["results"] if r["name"] == n) for n in ("fp32", "int8"))
    if with_eval:
        with torch.no_grad():
            enc = tiny_tokenizer()(list(split["sentence1"]), list(split["sentence2"]), padding=True,
                                   return_tensors="pt")
            expected = 100 * regression_metrics(split["label"], model(**enc).logits[:, 0].numpy())["pearson"]
        assert report["reference"]["metrics"]["pearson"] == pytest.approx(expected, abs=1e-3)
        assert fp32["loss_points"] == pytest.approx(0.0, abs=1e-3)
    else:
        assert fp32["metrics"]["pearson"] == pytest.approx(100.0, abs=1e-3)  # its scores are PyTorch's
    for r in (fp32, int8):
        reference = report["reference"]["metrics"]["pearson"] if with_eval else 100.0
        assert r["loss_points"] == pytest.approx(reference - r["metrics"]["pearson"])
    assert int8["metrics"]["pearson"] < 100.0 - 1e-6  # int8 moves the scores
    assert report["reference"]["metric"] == "pearson" and "pearson points" in (out / "onnx_variants.md").read_text()
