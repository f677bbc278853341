import numpy as np
import pytest
import torch

from fastformers_hf import FastFormersError
from fastformers_hf.inference.classifier import InferenceConfig, TextClassifier
from fastformers_hf.inference.tokenization import transformers_token_ids
from fastformers_hf.testing import tiny_model

TEXTS = ["the film was good .", "the plot was not dull but the acting was weak .", "", "the cast"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("clf")
    tiny_model("bert").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def reference_logits(path, tokenizer, texts):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return np.concatenate([model(**tokenizer([t], return_tensors="pt")).logits.numpy() for t in texts])


@pytest.mark.parametrize("batch_size,sort", [(1, False), (3, True), (3, False), (8, True)])
def test_batches_padded_per_batch_give_the_same_answers_in_order(saved, tokenizer, batch_size, sort):
    clf = TextClassifier.from_pretrained(saved, config=InferenceConfig(batch_size=batch_size, sort_by_length=sort))
    assert clf.backend == "pytorch"
    np.testing.assert_allclose(clf.predict_logits(TEXTS), reference_logits(saved, tokenizer, TEXTS), atol=1e-5)
    preds = clf.predict(TEXTS)
    assert [p["label"] for p in preds] == [clf.id2label[int(i)] for i in reference_logits(saved, tokenizer, TEXTS).argmax(-1)]
    assert all(0.5 <= p["score"] <= 1 for p in preds)


def test_onnx_directory_runs_on_onnx_runtime(saved, tmp_path, tokenizer):
    from fastformers_hf import export_onnx

    onnx_dir = export_onnx(saved, tmp_path / "onnx")
    clf = TextClassifier.from_pretrained(onnx_dir)
    assert clf.backend == "onnxruntime"
    np.testing.assert_allclose(clf.predict_logits(TEXTS), reference_logits(saved, tokenizer, TEXTS), atol=1e-4)


def test_sentence_pairs(saved):
    clf = TextClassifier.from_pretrained(saved)
    assert len(clf.predict([("the film", "was good"), ("the cast", "")])) == 2


@pytest.mark.parametrize("batch_size,sort", [(4, False), (4, True), (1, False)])
def test_single_texts_and_pairs_in_one_call_answer_as_alone(saved, batch_size, sort):
    mixed = ["the film was good .", ("the film", "was good"), "the cast", ("the plot was", "not dull")]
    clf = TextClassifier.from_pretrained(saved, config=InferenceConfig(batch_size=batch_size, sort_by_length=sort))
    alone = np.concatenate([TextClassifier.from_pretrained(saved).predict_logits([x]) for x in mixed])
    np.testing.assert_allclose(clf.predict_logits(mixed), alone, atol=1e-5)  # no pair's extra [SEP] on a single text


@pytest.mark.parametrize("model_type,positions,tokenizer_limit,expected", [
    ("bert", 64, int(1e30), 64),  # tokenizer without a limit: the position embeddings decide
    ("bert", 512, 128, 128),  # the tokenizer's own limit is lower
    ("roberta", 66, int(1e30), 64),  # RoBERTa reserves padding_idx + 1 positions
])
def test_token_limit_follows_the_model(tmp_path, tokenizer, model_type, positions, tokenizer_limit, expected):
    tiny_model(model_type, max_position_embeddings=positions).save_pretrained(tmp_path)
    tokenizer.model_max_length = tokenizer_limit
    try:
        tokenizer.save_pretrained(tmp_path)
    finally:
        tokenizer.model_max_length = int(1e30)
    clf = TextClassifier.from_pretrained(tmp_path)
    assert clf.max_length == expected
    assert clf.predict_logits([" ".join(["good"] * 300)]).shape == (1, 2)  # truncated to fit, no index error


class _Counting:
    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls

    def __call__(self, inputs):
        self.calls.append(1)
        return self.inner(inputs)


def test_inputs_are_tokenised_once(saved, monkeypatch):
    clf = TextClassifier.from_pretrained(saved, config=InferenceConfig(batch_size=2))
    calls = []
    real = clf.tokenizer.__class__.__call__
    monkeypatch.setattr(clf.tokenizer.__class__, "__call__", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    clf.fast_encoder = _Counting(clf.fast_encoder, calls)
    clf.predict_logits(TEXTS)
    assert len(calls) == 1


PAIRS = [("the film was good .", "the plot was not dull but the acting was weak ."), ("the cast", ""),
         ("", "the film"), (" ".join(["good"] * 40), "the end"), ("the end", " ".join(["dull"] * 40))]


@pytest.mark.parametrize("side,max_length,inputs", [
    ("right", 512, TEXTS + PAIRS),  # singles and pairs mixed in one call
    ("right", 12, TEXTS + PAIRS + [" ".join(["good"] * 40)]),  # truncation, longest first on pairs
    ("left", 12, TEXTS + PAIRS + [" ".join(["good"] * 40)]),
    ("right", 3, ["the film was good .", ("the film", "was good")]),  # room for the special tokens only
])
def test_rust_fast_path_gives_the_transformers_ids(tokenizer, side, max_length, inputs):
    tokenizer.truncation_side = side
    try:
        clf = TextClassifier(lambda f: None, tokenizer, {0: "a", 1: "b"}, InferenceConfig(max_length=max_length))
        assert clf.fast_encoder is not None
        fast = clf.token_ids(inputs)
        clf.fast_encoder = None  # the transformers call
        assert fast == clf.token_ids(inputs)
        assert fast == transformers_token_ids(tokenizer, inputs, max_length)
    finally:
        tokenizer.truncation_side = "right"


@pytest.mark.parametrize("max_length", [512, 12])
def test_token_ids_and_truncation_follow_the_transformers_call(tokenizer, max_length):
    inputs = TEXTS + PAIRS + [" ".join(["good"] * 40)]
    clf = TextClassifier(lambda f: None, tokenizer, {0: "a", 1: "b"}, InferenceConfig(max_length=max_length))
    ids = clf.token_ids(inputs)

    def alone(x, **kw):  # one input in a batch of its own (a batch of one: ("a", "") is a pair with an empty text)
        enc = tokenizer([x], **kw) if isinstance(x, str) else tokenizer([x[0]], [x[1]], **kw)
        return {k: v[0] for k, v in enc.items()}

    assert ids == [alone(x, truncation=True, max_length=max_length) for x in inputs]
    full = [len(alone(x)["input_ids"]) for x in inputs]
    assert clf.truncated(inputs, ids) == [i for i, n in enumerate(full) if n > max_length]


def test_predict_is_the_softmax_of_the_logits(saved):
    clf = TextClassifier.from_pretrained(saved)
    logits = clf.predict_logits(TEXTS)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), probs, rtol=1e-5)
    assert clf.predict(TEXTS) == [{"label": clf.id2label[int(i)], "label_id": int(i), "score": float(p[i])}
                                  for i, p in zip(probs.argmax(-1), clf.predict_proba(TEXTS))]


@pytest.mark.parametrize("inputs,match", [([1, "x"], "input 0 is a int"), ([None], "input 0 is a NoneType"),
                                          ([("a",)], "input 0 is a tuple")])
def test_non_text_inputs_are_refused(saved, inputs, match):
    with pytest.raises(FastFormersError, match=match):
        TextClassifier.from_pretrained(saved).predict(inputs)


def test_long_inputs_truncate_or_refuse_by_setting(saved, caplog):
    long_text = " ".join(["good"] * 300)
    clf = TextClassifier.from_pretrained(saved, config=InferenceConfig(max_length=16))
    with caplog.at_level("WARNING"):
        assert len(clf.predict([long_text, "good"])) == 2
    assert "truncated" in caplog.text
    strict = TextClassifier.from_pretrained(saved, config=InferenceConfig(max_length=16, long_inputs="error"))
    with pytest.raises(FastFormersError, match="exceed 16 tokens"):
        strict.predict([long_text])


@pytest.mark.parametrize("kwargs,match", [(dict(batch_size=0), "batch_size"), (dict(long_inputs="drop"), "long_inputs"),
                                          (dict(threads=0), "threads")])
def test_bad_settings(kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        InferenceConfig(**kwargs)


def test_directory_without_model(tmp_path):
    with pytest.raises(FastFormersError, match="holds no model"):
        TextClassifier.from_pretrained(tmp_path)
