"""Multiple choice end to end below ``compress``: (choices, length) features padded per batch, the choice-logit
distillation loss, and ``ChoicePredictor`` on PyTorch and on the ONNX export (same choices and probabilities),
in the served evaluation and in the multi-instance pool."""
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertForMultipleChoice, DataCollatorForMultipleChoice

from fastformers_hf import FastFormersError, MultiInstanceClassifier, RuntimeConfig, export_onnx
from fastformers_hf.distillation.losses import loss_for, soft_cross_entropy
from fastformers_hf.inference.classifier import InferenceConfig
from fastformers_hf.inference.evaluation import evaluation_for
from fastformers_hf.inference.multiple_choice import ChoicePredictor
from fastformers_hf.tasks.multiple_choice import tokenize_choices
from fastformers_hf.tasks.names import get_task
from fastformers_hf.tasks.synthetic import VOCABULARY
from fastformers_hf.testing import tiny_config, tiny_model, tiny_tokenizer

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

INPUTS = [{"context": "the film was good", "choices": ["the plot was great", "the music was dull"]},
          ("the acting was weak", ["the cast was bad", "the script was really charming and funny", "the end"]),
          {"context": "the movie", "choices": ["was boring", "was quite clever but the ending was flat"]},
          ("the music", ["is fresh", "is awful", "is tedious"])]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A saved tiny ``BertForMultipleChoice`` with its tokenizer, and its ONNX export in ``onnx/``."""
    root = tmp_path_factory.mktemp("choice")
    tok = tiny_tokenizer(VOCABULARY, save_dir=root / "tok")
    torch.manual_seed(0)
    model = BertForMultipleChoice(tiny_config("bert", num_layers=2, initializer_range=0.5)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(4)  # choices far from equally likely
    model.save_pretrained(root / "pt")
    tok.save_pretrained(root / "pt")
    export_onnx(root / "pt", root / "onnx")
    return root


def test_choices_become_rows_padded_per_batch():
    tok = tiny_tokenizer(VOCABULARY)
    raw = Dataset.from_dict({"context": ["the film", "the plot was really very dull"],
                             "choices": [["was good", "was bad"], ["and the music was great", "but funny"]],
                             "label": [0, 1]})
    features = tokenize_choices(raw, tok, max_length=64)
    assert features.column_names == ["labels", "input_ids", "token_type_ids", "attention_mask"]
    first = features[0]["input_ids"]
    assert len(first) == 2 and first[0] == tok("the film", "was good")["input_ids"]  # (context, choice) pairs
    lengths = [len(ids) for row in features["input_ids"] for ids in row]
    batch = DataCollatorForMultipleChoice(tok)([features[i] for i in range(2)])
    assert tuple(batch["input_ids"].shape) == (2, 2, max(lengths)) and max(lengths) < 64  # the batch's longest
    assert batch["labels"].tolist() == [0, 1]
    same = tokenize_choices(raw, tok, max_length=64, pad_each_example=True)
    assert len({len(ids) for ids in same[1]["input_ids"]}) == 1  # one (choices, T) array per example


def test_choice_distillation_counts_every_choice():
    """The soft loss is over the choices of every example: no choice or example is masked out."""
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)  # (B, choices)
    loss = loss_for("multiple_choice").soft_loss({"logits": student}, {"logits": teacher}, {}, 2.0)
    torch.testing.assert_close(loss, soft_cross_entropy(student, teacher, 2.0))
    moved = student.clone()
    moved[-1, -1] += 3.0  # the last choice of the last example
    assert loss_for("multiple_choice").soft_loss({"logits": moved}, {"logits": teacher}, {}, 2.0) != loss


def test_pytorch_and_onnx_choose_alike(folder):
    model = BertForMultipleChoice.from_pretrained(folder / "pt").eval()
    tok = tiny_tokenizer(VOCABULARY, save_dir=folder / "tok2")
    pt = ChoicePredictor.from_pretrained(folder / "pt", config=InferenceConfig(batch_size=3))
    onnx = ChoicePredictor.from_pretrained(folder / "onnx")
    assert (pt.backend, onnx.backend) == ("pytorch", "onnxruntime")
    ours, theirs = pt.predict(INPUTS), onnx.predict(INPUTS)
    assert [p["choice"] for p in ours] == [p["choice"] for p in theirs]
    for a, b in zip(ours, theirs):
        assert len(a["probabilities"]) == len(b["probabilities"])
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)
    # The model itself, one input at a time: (context, choice) pairs as one (1, choices, T) batch.
    for item, got in zip(INPUTS, ours):
        context, choices = (item["context"], item["choices"]) if isinstance(item, dict) else item
        enc = tok([context] * len(choices), choices, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v[None] for k, v in enc.items()}).logits[0]  # (choices,)
        np.testing.assert_allclose(got["probabilities"], logits.softmax(-1).numpy(), atol=1e-5)
    assert max(max(p["probabilities"]) for p in ours) > 0.6  # far from uniform: a real comparison


def test_the_pool_serves_choices_like_the_predictor(folder):
    reference = ChoicePredictor.from_pretrained(folder / "onnx").predict(INPUTS)
    with MultiInstanceClassifier(folder / "onnx", RuntimeConfig(num_instances=1)) as pool:
        assert pool.kind == "multiple_choice"
        served = pool.predict(INPUTS, batch_size=2)
    assert [p["choice"] for p in served] == [p["choice"] for p in reference]
    np.testing.assert_allclose([x for p in served for x in p["probabilities"]],
                               [x for p in reference for x in p["probabilities"]], atol=1e-5)


def test_served_evaluation_scores_accuracy(folder):
    ev = evaluation_for("multiple_choice")
    predictor = ev.load(folder / "pt", batch_size=2)
    predicted = [p["choice"] for p in predictor.predict(INPUTS[:1] + INPUTS[2:3])]
    split = Dataset.from_dict({"context": [INPUTS[0]["context"], INPUTS[2]["context"]],
                               "choices": [INPUTS[0]["choices"], INPUTS[2]["choices"]],
                               "label": [predicted[0], 1 - predicted[1]]})  # one right, one wrong
    assert ev.score(predictor, split, get_task("copa")) == {"accuracy": 0.5}
    assert ev.points({"accuracy": 0.5}) == 50.0
    assert ev.requests(split, get_task("copa"))[1] == {"context": INPUTS[2]["context"], "choices": INPUTS[2]["choices"]}


@pytest.mark.parametrize("bad, match", [
    ("the film", "not a context with choices"),
    ({"context": "the film"}, "not a context with choices"),
    ({"context": "the film", "choices": "good"}, "not a context with choices"),
    ([("the film", ["good"]), ("the plot", [1, 2])], "input 1"),
    ({"context": "the film", "choices": []}, "no choices"),
])
def test_bad_inputs_are_refused(folder, bad, match):
    with pytest.raises(FastFormersError, match=match):
        ChoicePredictor.from_pretrained(folder / "pt").predict(bad)


def test_a_folder_of_another_head_is_refused(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    tiny_tokenizer(save_dir=tmp_path)
    with pytest.raises(FastFormersError, match="not multiple choice"):
        ChoicePredictor.from_pretrained(tmp_path)


@pytest.mark.parametrize("with_eval", [False, True])
def test_variant_choice_outside_compress(folder, tmp_path, with_eval):
    """optimize_for_inference on a multiple-choice folder: random (1, choices, T) inputs without an eval set; a raw
    split (context, choices, label) is tokenised to one (choices, T) array per example and scored by accuracy."""
    import json

    from fastformers_hf import VariantChoiceConfig, optimize_for_inference

    split = Dataset.from_dict({"context": [x["context"] if isinstance(x, dict) else x[0] for x in INPUTS],
                               "choices": [list(x["choices"] if isinstance(x, dict) else x[1]) for x in INPUTS],
                               "label": [0, 1, 1, 0]})
    config = VariantChoiceConfig(candidates=["fp32", "int8"], sample_size=4, latency_repeats=1, warmup=1,
                                 max_length=24, tolerance=100.0)
    out = optimize_for_inference(folder / "pt", tmp_path / "best", config=config,
                                 eval_dataset=split if with_eval else None)
    report = json.loads((out / "onnx_variants.json").read_text())
    assert report["chosen"] in ("fp32", "int8")
    assert report["data"].startswith("eval_dataset (4 examples)" if with_eval else "random tokens")
    fp32 = next(r for r in report["results"] if r["name"] == "fp32")
    assert fp32["label_agreement"] == 1.0 and fp32["max_logit_diff"] < 1e-3
    reference = ChoicePredictor.from_pretrained(folder / "pt").predict(INPUTS)
    assert [p["choice"] for p in ChoicePredictor.from_pretrained(out).predict(INPUTS)] == \
           [p["choice"] for p in reference] or report["chosen"] == "int8"


def test_variant_choice_refuses_a_choice_split_without_its_columns(folder, tmp_path):
    from fastformers_hf import optimize_for_inference

    with pytest.raises(FastFormersError, match="needs the columns context, choices and label"):
        optimize_for_inference(folder / "pt", tmp_path / "best",
                               eval_dataset=Dataset.from_dict({"sentence": ["the film"], "label": [0]}))
    assert not (tmp_path / "best").exists()
