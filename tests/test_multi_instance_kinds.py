"""The multi-instance pool serves question-answering and token-classification folders (PyTorch and ONNX): its
``predict`` gives what the in-process predictor gives, in order; class logits are refused with a clear error."""
import numpy as np
import pytest
import torch

from fastformers_hf import FastFormersError, MultiInstanceClassifier, RuntimeConfig
from fastformers_hf.inference.question_answering import QuestionAnswerer
from fastformers_hf.inference.token_classification import EntityTagger
from fastformers_hf.serving.cores import physical_cores
from fastformers_hf.tasks.synthetic import VOCABULARY
from fastformers_hf.testing import tiny_config, tiny_tokenizer

INSTANCES = min(2, len(physical_cores()))
CONTEXTS = ["the film was really good but the acting was weak .", "the plot was dull , the music was great ."]
QUESTIONS = [("what was good ?", CONTEXTS[0]), {"question": "what was dull ?", "context": CONTEXTS[1]},
             ("who was weak ?", CONTEXTS[0]), ("what was great ?", CONTEXTS[1]), ("good ?", CONTEXTS[1])]
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["the film was good", "John Smith lives in Paris", "", "the music was great , the plot dull", "paris"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import AutoModelForTokenClassification, BertForQuestionAnswering

    root = tmp_path_factory.mktemp("kinds")
    tok = tiny_tokenizer(VOCABULARY + ["what", "who", "?", ",", "john", "smith", "lives", "in", "paris"],
                         save_dir=root / "tok")
    torch.manual_seed(0)
    qa = BertForQuestionAnswering(tiny_config("bert", num_layers=2, vocab_size=len(tok.get_vocab()))).eval()
    with torch.no_grad():
        qa.qa_outputs.weight.mul_(30)  # scores far from uniform
    config = tiny_config("bert", num_layers=2, num_labels=len(LABELS), vocab_size=len(tok.get_vocab()))
    config.id2label, config.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    ner = AutoModelForTokenClassification.from_config(config).eval()
    with torch.no_grad():
        ner.classifier.weight.mul_(4)
    for name, model in (("qa", qa), ("ner", ner)):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def assert_same(ours, reference):
    """Equal but for the scores' float rounding (batches padded differently); entity lists entity by entity."""
    assert len(ours) == len(reference)
    pairs = list(zip(ours, reference))
    if isinstance(reference[0], list):  # token classification: a list of entities per text
        assert [len(o) for o in ours] == [len(r) for r in reference]
        pairs = [pair for o, r in pairs for pair in zip(o, r)]
    assert [{k: v for k, v in a.items() if k != "score"} for a, _ in pairs] == \
           [{k: v for k, v in b.items() if k != "score"} for _, b in pairs]
    np.testing.assert_allclose([a["score"] for a, _ in pairs], [b["score"] for _, b in pairs], atol=1e-5)


def test_question_answering_pool_answers_like_the_in_process_answerer(folders):
    reference = QuestionAnswerer.from_pretrained(folders / "qa").predict(QUESTIONS)
    with MultiInstanceClassifier(folders / "qa", RuntimeConfig(num_instances=INSTANCES)) as pool:
        assert pool.kind == "question_answering"
        assert_same(pool.predict(QUESTIONS), reference)
        assert_same(pool.predict(QUESTIONS, batch_size=4), reference)
        with pytest.raises(FastFormersError, match="question answering model: input 0 is a str, not questions"):
            pool.predict(["the film was good", "bad"])  # classification-style bare strings
        for refused in (pool.predict_logits, pool.predict_proba):
            with pytest.raises(FastFormersError, match="question answering model.*use predict"):
                refused(QUESTIONS)
        assert len(pool.predict(QUESTIONS[:1])) == 1  # still serving


@pytest.fixture(scope="module")
def ner_pool(folders):
    with MultiInstanceClassifier(folders / "ner", RuntimeConfig(num_instances=INSTANCES)) as pool:
        yield pool


def test_token_classification_pool_tags_like_the_in_process_tagger(folders, ner_pool):
    reference = EntityTagger.from_pretrained(folders / "ner").predict(TEXTS)
    assert sum(map(len, reference)) >= 3  # there are entities to compare
    assert ner_pool.kind == "token_classification" and ner_pool.backend == "pytorch"
    assert_same(ner_pool.predict(TEXTS), reference)
    assert_same(ner_pool.predict(TEXTS, batch_size=2), reference)
    with pytest.raises(FastFormersError, match="use predict"):
        ner_pool.predict_logits(TEXTS)


def test_a_killed_worker_is_replaced_and_its_requests_answered(folders, ner_pool):
    import os
    import signal

    reference = EntityTagger.from_pretrained(folders / "ner").predict(TEXTS * 4)
    victim, killed = ner_pool.pids[0], []

    def kill_once(done, total):
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(done)

    assert_same(ner_pool.predict(TEXTS * 4, progress=kill_once), reference)
    assert ner_pool.crashes and ner_pool.crashes[-1]["pid"] == victim


def test_onnx_folders_are_served_too(folders, tmp_path):
    pytest.importorskip("optimum.onnxruntime")
    from fastformers_hf import export_onnx

    for name, predictor, inputs in (("qa", QuestionAnswerer, QUESTIONS), ("ner", EntityTagger, TEXTS)):
        onnx_dir = export_onnx(folders / name, tmp_path / name)
        reference = predictor.from_pretrained(onnx_dir).predict(inputs)
        with MultiInstanceClassifier(onnx_dir, RuntimeConfig(num_instances=1)) as pool:
            assert pool.backend == "onnxruntime"
            assert_same(pool.predict(inputs), reference)
