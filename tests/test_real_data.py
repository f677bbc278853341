"""Real-data checks on SST-2 from ../shared (slow: run with `pytest -m slow`; .ci/run runs them when time allows)."""
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SST2, TEACHER = SHARED / "data" / "sst2", SHARED / "models" / "sst2-minilm-teacher"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SST2 / "dev.tsv").exists() or not TEACHER.exists(),
                                 reason="needs ../shared/data/sst2 and ../shared/models/sst2-minilm-teacher")]


@pytest.fixture(scope="module")
def sst2():
    from fastformers_hf import load_task_data

    return load_task_data(SST2, max_train_samples=6400, seed=0)


def accuracy(model_or_dir, dev, tokenizer=None):
    from fastformers_hf import InferenceConfig, TextClassifier

    clf = TextClassifier.from_pretrained(model_or_dir, tokenizer, InferenceConfig(batch_size=64, max_length=64))
    return float(np.mean(clf.predict_logits(list(dev["sentence"])).argmax(-1) == np.asarray(dev["label"])))


def test_reference_teacher_reaches_its_published_accuracy(sst2):
    assert accuracy(TEACHER, sst2["validation"]) == pytest.approx(0.8922, abs=0.005)


def test_distilled_3_layer_student_learns_sst2(tmp_path, sst2):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from fastformers_hf import DistillationConfig, DistillationTrainer, cache_teacher_logits, make_student, tokenize
    from fastformers_hf.compat import warmup

    teacher = AutoModelForSequenceClassification.from_pretrained(TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(TEACHER)
    data = tokenize(sst2, tokenizer, max_length=64)
    train = cache_teacher_logits(teacher, data["train"], tokenizer, batch_size=128)
    student = make_student(teacher, num_layers=3)
    before = accuracy(student, sst2["validation"], tokenizer)
    args = DistillationConfig(output_dir=str(tmp_path / "s"), max_steps=200, per_device_train_batch_size=32,
                              learning_rate=1e-4, **warmup(0.06), report_to=[], save_strategy="no",
                              dataloader_pin_memory=False, logging_steps=50)
    DistillationTrainer(model=student, args=args, train_dataset=train, processing_class=tokenizer).train()
    after = accuracy(student, sst2["validation"], tokenizer)
    assert after > 0.80 and after > before + 0.05


def test_int8_onnx_variant_of_the_teacher_stays_accurate(tmp_path, sst2):
    from fastformers_hf import optimize_for_inference

    out = optimize_for_inference(TEACHER, tmp_path / "onnx", eval_dataset=sst2["validation"], tolerance=1.0)
    assert list(out.glob("*.onnx"))
    assert accuracy(out, sst2["validation"]) >= 0.8922 - 0.01
