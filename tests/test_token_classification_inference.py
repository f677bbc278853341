"""``EntityTagger``: the entities of transformers' token-classification pipeline, batched, over PyTorch and ONNX
Runtime (a tiny seeded BERT from a config; nothing downloads)."""
import numpy as np
import pytest
import torch

from fastformers_hf.errors import FastFormersError
from fastformers_hf.inference.classifier import InferenceConfig
from fastformers_hf.inference.token_classification import EntityTagger

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
WORDS = ["john", "smith", "new", "york", "paris", "lives", "in", "works", "at", "acme", "corp", "the", "film", "was",
         "good", "##son", "##ville", "##s", ",", ".", "-"]
# Sub-words (smith ##son), unknown words (Xyzzy -> [UNK], whose word is the text's own characters), punctuation,
# an empty text, and lengths that differ, so batches are padded.
TEXTS = ["John Smithson lives in Parisville, New York.", "the film was good", "Acme Corp works at Xyzzy - Paris", "",
         "new york new york acme corp smiths in paris"]


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    from transformers import AutoModelForTokenClassification

    from fastformers_hf.testing import tiny_config, tiny_tokenizer

    tokenizer = tiny_tokenizer(WORDS, save_dir=tmp_path_factory.mktemp("ner-tok"))
    config = tiny_config(num_labels=len(LABELS), num_layers=2, vocab_size=len(tokenizer.get_vocab()))
    config.id2label, config.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).eval()
    with torch.no_grad():  # sharper logits and a lean to I- tags, so entities appear and span several tokens
        model.classifier.weight.mul_(4)
        model.classifier.bias.copy_(torch.tensor([0.3, 0, 0.3, 0, 0.3, 0, 0.3, 0, 0.3]))
    return model, tokenizer


def assert_same_entities(ours, reference, atol=1e-4):
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        assert [{k: e[k] for k in ("entity_group", "word", "start", "end")} for e in mine] == \
               [{k: e[k] for k in ("entity_group", "word", "start", "end")} for e in theirs]
        np.testing.assert_allclose([e["score"] for e in mine], [float(e["score"]) for e in theirs], atol=atol)


def test_entities_equal_the_transformers_pipeline(ner):
    from transformers import pipeline

    model, tokenizer = ner
    reference = [pipeline("token-classification", model=model, tokenizer=tokenizer,
                          aggregation_strategy="simple")(t) for t in TEXTS]
    entities = [e for r in reference for e in r]
    # The comparison means something: many entities, some of several tokens, one holding the [UNK]'s text.
    assert len(entities) >= 10 and any(" " in e["word"] for e in entities)
    assert any("Xyzzy" in e["word"] for e in entities)
    for batch_size in (1, 4):  # one text a pass, and padded batches sorted by length
        tagger = EntityTagger.from_pretrained(model, tokenizer, InferenceConfig(batch_size=batch_size))
        assert_same_entities(tagger.predict(TEXTS), reference)
    assert_same_entities(tagger.predict(TEXTS[0]), reference[:1])  # one string: one list of entities


@pytest.mark.parametrize("bad,needle", [
    (["ok", 3], "input 1 is a int"),
    ([("a", "b")], "input 0 is a tuple"),
    ({"text": "a"}, "the input is a dict"),
    (None, "the input is a NoneType"),
    (b"text", "the input is a bytes"),
])
def test_only_strings_are_accepted(ner, bad, needle):
    model, tokenizer = ner
    with pytest.raises(FastFormersError, match=needle):
        EntityTagger.from_pretrained(model, tokenizer).predict(bad)


def test_long_texts_are_cut_or_refused(ner, caplog):
    model, tokenizer = ner
    long_text = " ".join(["paris"] * 40)
    with caplog.at_level("WARNING"):
        EntityTagger.from_pretrained(model, tokenizer, InferenceConfig(max_length=16)).predict([long_text])
    assert "1 text(s) longer than 16 tokens were cut" in caplog.text
    with pytest.raises(FastFormersError, match="index 1"):
        EntityTagger.from_pretrained(model, tokenizer, InferenceConfig(max_length=16, long_inputs="error")).predict(
            ["paris", long_text])


def test_folder_round_trip_and_wrong_head(ner, tmp_path):
    from fastformers_hf.testing import tiny_model

    model, tokenizer = ner
    model.save_pretrained(tmp_path / "ner"), tokenizer.save_pretrained(tmp_path / "ner")
    tagger = EntityTagger.from_pretrained(tmp_path / "ner")
    assert tagger.backend == "pytorch"
    assert_same_entities(tagger.predict(TEXTS), EntityTagger.from_pretrained(model, tokenizer).predict(TEXTS), 1e-6)
    tiny_model().save_pretrained(tmp_path / "sst"), tokenizer.save_pretrained(tmp_path / "sst")
    with pytest.raises(FastFormersError, match="sequence classification model, not a token classifier"):
        EntityTagger.from_pretrained(tmp_path / "sst")


# The tracer flags a constant `torch.tensor(1.0)` in the attention mask; it is one (see onnx/export.py).
@pytest.mark.filterwarnings("ignore:torch.tensor results are registered as constants")
def test_onnx_export_of_the_head_gives_the_same_entities(ner, tmp_path):
    import onnxruntime

    from fastformers_hf import export_onnx
    from fastformers_hf.onnx.ort_tools import optimum_available

    model, tokenizer = ner
    out = export_onnx(model, tmp_path / "onnx", tokenizer=tokenizer)  # Optimum's exporter, or torch's without it
    expected = EntityTagger.from_pretrained(model, tokenizer, InferenceConfig(batch_size=4)).predict(TEXTS)

    tagger = EntityTagger.from_pretrained(out, config=InferenceConfig(batch_size=4))  # the folder: *.onnx -> ORT
    assert tagger.backend == "onnxruntime"
    assert_same_entities(tagger.predict(TEXTS), expected)
    if optimum_available():  # Optimum's ORTModel, as users of Optimum hold it
        from optimum.onnxruntime import ORTModelForTokenClassification

        ort_model = ORTModelForTokenClassification.from_pretrained(out)
        assert_same_entities(EntityTagger.from_pretrained(ort_model, tokenizer).predict(TEXTS), expected)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))  # a bare session: labels passed
    assert_same_entities(EntityTagger.from_pretrained(session, tokenizer, id2label=dict(enumerate(LABELS)))
                         .predict(TEXTS), expected)
