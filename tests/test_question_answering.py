"""The question-answering predictor: the same answers, offsets and scores as transformers' pipeline (long contexts
strided over several windows included), decoding of dataset windows, strict inputs, and the ONNX Runtime path."""
import numpy as np
import pytest
import torch

from fastformers_hf.compat import is_transformers_5
from fastformers_hf.errors import FastFormersError
from fastformers_hf.inference.question_answering import (QuestionAnswerer, QuestionAnsweringConfig, postprocess,
                                                         window_spans)
from fastformers_hf.tasks.synthetic import VOCABULARY

LONG = " ".join(f"the plot {verb} dull , the music was {adj} ." for verb, adj in
                (("was", "great"), ("plays", "good"), ("is", "fresh"), ("was", "playing"), ("was", "weak"),
                 ("plays", "funny")))
INPUTS = [
    {"question": "what was good ?", "context": "the film was really good but the acting was weak ."},
    {"question": "who plays ?", "context": LONG},  # longer than one window at every setting below
    {"question": "  what was  dull ?", "context": "The Plot was DULL, zorbly messy; the cast charming."},
]
# (window tokens, overlap, longest answer): the pipeline's max_seq_len, doc_stride, max_answer_len
SETTINGS = [(64, 16, 15), (32, 8, 15), (24, 4, 5)]


@pytest.fixture(scope="module")
def qa_tokenizer(tmp_path_factory):
    """The tiny WordPiece tokenizer with subword pieces ("plays" = play ##s), so answers get widened to words."""
    from fastformers_hf.testing import tiny_tokenizer

    return tiny_tokenizer(VOCABULARY + ["play", "##s", "##ing", "what", "who", "?", ","],
                          save_dir=tmp_path_factory.mktemp("qa-tok"))


@pytest.fixture(scope="module")
def qa_model(qa_tokenizer):
    """A seeded tiny BertForQuestionAnswering; its span head is scaled so that scores are far from uniform."""
    from transformers import BertForQuestionAnswering

    from fastformers_hf.testing import tiny_config

    torch.manual_seed(0)
    model = BertForQuestionAnswering(tiny_config("bert", vocab_size=len(qa_tokenizer.get_vocab()))).eval()
    with torch.no_grad():
        model.qa_outputs.weight.mul_(30)
    return model


def answerer(model, tok, max_length, doc_stride, max_answer_length, **kwargs):
    config = QuestionAnsweringConfig(max_length=max_length, doc_stride=doc_stride, n_best=12,
                                     max_answer_length=max_answer_length, **kwargs)
    return QuestionAnswerer.from_pretrained(model, tok, config)


def assert_same_answers(ours, theirs, tol=1e-4):
    assert [(a["answer"], a["start"], a["end"]) for a in ours] == [(a["answer"], a["start"], a["end"]) for a in theirs]
    assert np.allclose([a["score"] for a in ours], [a["score"] for a in theirs], atol=tol, rtol=0)


@pytest.mark.parametrize("max_length, doc_stride, max_answer_length", SETTINGS)
@pytest.mark.skipif(is_transformers_5(), reason="transformers 5 removed the question-answering pipeline this "
                                                   "test compares with")
def test_answers_equal_the_transformers_pipeline(qa_model, qa_tokenizer, max_length, doc_stride, max_answer_length):
    from transformers import pipeline

    pipe = pipeline("question-answering", model=qa_model, tokenizer=qa_tokenizer)
    theirs = pipe(INPUTS, max_seq_len=max_length, doc_stride=doc_stride, max_answer_len=max_answer_length)
    windows = qa_tokenizer(INPUTS[1]["question"], LONG, truncation="only_second", max_length=max_length,
                           stride=doc_stride, return_overflowing_tokens=True)["input_ids"]
    assert len(windows) > 1
    for batch_size in (1, 4):  # one window per pass, and batches padded to their longest window
        qa = answerer(qa_model, qa_tokenizer, max_length, doc_stride, max_answer_length, batch_size=batch_size)
        assert_same_answers(qa.predict(INPUTS), theirs)
    assert theirs[1]["score"] > 0.05  # a peaked, meaningful score, not a near-uniform one


def test_spans_widen_to_whole_words():
    # [CLS] q [SEP] play ##s dull [SEP]: "plays" is one word of two tokens
    fields = dict(offset_mapping=[None, None, None, (0, 4), (4, 5), (6, 10), None], word_ids=[None, 0, None, 0, 0, 1, None],
                  cls_index=0)
    start = np.array([0, 0, 0, 0, 9, 0, 0.0])  # the start is ##s, inside "plays"
    end = np.array([0, 0, 0, 0, 9, 0, 0.0])
    assert window_spans(start, end, fields, n_best=1)[0][:2] == (0, 5)
    assert window_spans(start, end, fields, n_best=1, align_to_words=False)[0][:2] == (4, 5)
    assert len(window_spans(start, end, fields, n_best=20)) == 6  # every context span: 3 tokens, 6 spans


def test_postprocess_over_dataset_windows_equals_the_predictor(qa_model, qa_tokenizer):
    from datasets import Dataset

    from fastformers_hf.tasks.question_answering import eval_features
    from fastformers_hf.tasks.squad_metric import squad_metrics

    examples = Dataset.from_dict({"id": ["a", "b", "c"], "question": [x["question"] for x in INPUTS],
                                  "context": [x["context"] for x in INPUTS]})
    feats = eval_features(examples, qa_tokenizer, max_length=32, doc_stride=8)
    model_inputs = qa_tokenizer.pad({"input_ids": feats["input_ids"], "token_type_ids": feats["token_type_ids"],
                                     "attention_mask": feats["attention_mask"]}, return_tensors="pt")
    with torch.no_grad():
        out = qa_model(**model_inputs)
    answers = postprocess(examples, feats, out.start_logits.numpy(), out.end_logits.numpy(), n_best=12,
                          max_answer_length=15)
    assert [a["id"] for a in answers] == ["a", "b", "c"]
    assert_same_answers(answers, answerer(qa_model, qa_tokenizer, 32, 8, 15).predict(INPUTS), tol=1e-5)
    refs = [{"id": a["id"], "answers": {"text": [a["answer"]], "answer_start": [a["start"]]}} for a in answers]
    # EM only: an answer such as "the" normalises to nothing, and v1.1 gives it F1 0 even against itself.
    assert squad_metrics(answers, refs)["exact_match"] == 100.0
    with pytest.raises(FastFormersError, match="windows but"):
        postprocess(examples, feats, out.start_logits.numpy()[:2], out.end_logits.numpy(), n_best=12)


BAD_INPUTS = [
    ("what?", "the input is a str"),
    (None, "the input is a NoneType"),
    ({"question": "q"}, "the input is a dict with keys ['question']"),
    ({"question": "q", "context": 3}, "the input is a dict with keys ['context', 'question']"),
    ([{"question": "q", "context": "c"}, ("q", "c"), ("q", "c", "x")], "input 2 is a tuple of 3 item(s)"),
    ([{"question": "q", "context": "c"}, {"text": "c"}], "input 1 is a dict with keys ['text']"),
    ([("q", b"c")], "input 0 is a tuple of 2 item(s) (str, bytes)"),
    ([["q", "c"], "q c"], "input 1 is a str"),
    ([{"question": "q", "context": "  "}], "input 0 has an empty context"),
    ({("q", "c")}, "the input is a set"),
]


@pytest.mark.parametrize("inputs, needle", BAD_INPUTS)
def test_inputs_that_are_not_questions_with_contexts_are_refused(qa_model, qa_tokenizer, inputs, needle):
    qa = answerer(qa_model, qa_tokenizer, 32, 8, 15)
    with pytest.raises(FastFormersError) as err:
        qa.predict(inputs)
    assert needle in str(err.value)


def test_accepted_forms_and_refused_models(qa_model, qa_tokenizer, classifier_model):
    qa = answerer(qa_model, qa_tokenizer, 32, 8, 15)
    one = qa.predict(INPUTS[0])
    assert qa.predict((INPUTS[0]["question"], INPUTS[0]["context"])) == one
    assert qa.predict([{**INPUTS[0], "id": "x", "answers": {}}]) == one  # a SQuAD row: extra keys are fine
    assert qa.predict([]) == []
    with pytest.raises(FastFormersError, match="is a sequence_classification model, not question answering"):
        QuestionAnswerer.from_pretrained(classifier_model, qa_tokenizer)
    with pytest.raises(FastFormersError, match="over the model's limit of 128 tokens"):
        answerer(qa_model, qa_tokenizer, 256, 8, 15)
    with pytest.raises(FastFormersError, match="doc_stride .32. must be at least 0 and below max_length .32."):
        answerer(qa_model, qa_tokenizer, 32, 32, 15)


@pytest.fixture
def classifier_model():
    from fastformers_hf.testing import tiny_model

    return tiny_model("bert", num_layers=1)


@pytest.mark.filterwarnings("ignore:torch.tensor results are registered as constants")  # the tracer's noise
def test_onnx_export_and_folders_give_the_same_answers(qa_model, qa_tokenizer, tmp_path):
    pytest.importorskip("optimum.onnxruntime")
    from optimum.exporters.onnx import onnx_export_from_model
    from optimum.onnxruntime import ORTModelForQuestionAnswering

    onnx_dir, torch_dir = tmp_path / "onnx", tmp_path / "torch"
    onnx_export_from_model(qa_model, onnx_dir, task="question-answering")
    qa_tokenizer.save_pretrained(onnx_dir)
    qa_model.save_pretrained(torch_dir)
    qa_tokenizer.save_pretrained(torch_dir)
    config = QuestionAnsweringConfig(max_length=24, doc_stride=4, n_best=12, max_answer_length=15, batch_size=4)
    expected = QuestionAnswerer.from_pretrained(qa_model, qa_tokenizer, config).predict(INPUTS)

    ort_model = ORTModelForQuestionAnswering.from_pretrained(onnx_dir)
    over_session = QuestionAnswerer.from_pretrained(ort_model, qa_tokenizer, config)
    assert over_session.backend == "onnxruntime"
    assert_same_answers(over_session.predict(INPUTS), expected, tol=1e-5)
    for folder, backend in ((onnx_dir, "onnxruntime"), (torch_dir, "pytorch")):
        qa = QuestionAnswerer.from_pretrained(folder, config=config)
        assert qa.backend == backend
        assert_same_answers(qa.predict(INPUTS), expected, tol=1e-5)
