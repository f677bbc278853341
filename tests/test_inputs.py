"""Strict inputs at every public prediction entry point: strings, (text, text) pairs and transformers' pipeline
dicts are accepted; a dict is never iterated (that classified its keys); anything else is refused with the index
and type of the first bad item."""
from __future__ import annotations

import numpy as np
import pytest

from fastformers_hf import CascadeClassifier, FastFormersError, MultiInstanceClassifier, RuntimeConfig
from fastformers_hf.inference.classifier import TextClassifier
from fastformers_hf.inference.inputs import validate_inputs
from fastformers_hf.testing import tiny_model

SENTENCE, OTHER = "an awful , boring film", "the acting was good"


@pytest.mark.parametrize("given, expected", [
    (SENTENCE, [SENTENCE]),
    ((SENTENCE, OTHER), [(SENTENCE, OTHER)]),                       # a tuple is one pair
    ([SENTENCE, OTHER], [SENTENCE, OTHER]),                         # a list of two texts is two inputs
    ([[SENTENCE, OTHER]], [(SENTENCE, OTHER)]),
    ({"text": SENTENCE}, [SENTENCE]),                               # transformers' pipeline form
    ({"text": SENTENCE, "text_pair": OTHER}, [(SENTENCE, OTHER)]),
    ([{"text": SENTENCE}, OTHER], [SENTENCE, OTHER]),
    ((x for x in [SENTENCE]), [SENTENCE]),                          # any iterable but a set
    ([], []),
])
def test_accepted_forms(given, expected):
    assert validate_inputs(given) == expected


BAD = [
    (5, "the input is a int"),
    (None, "the input is a NoneType"),
    (b"bytes", "the input is a bytes"),
    ({SENTENCE, OTHER}, "the input is a set"),
    ({"sentence": SENTENCE}, r"pipeline form .* keys \['sentence'\]"),
    ({"text": SENTENCE, "label": 1}, r"keys \['label', 'text'\]"),
    ({"text": 3}, "pipeline form"),
    ((SENTENCE, OTHER, "third"), "a tuple of 3 item"),
    ([3, SENTENCE], "input 0 is a int"),
    ([SENTENCE, None], "input 1 is a NoneType"),
    ([SENTENCE, 2.5], "input 1 is a float"),
    ([[SENTENCE, [OTHER]]], r"input 0 is a list of 2 item\(s\) \(str, list\)"),
    ([(SENTENCE, OTHER, "third")], "input 0 is a tuple of 3"),
    ([{"text": SENTENCE, "extra": 1}], "input 0 is a dict"),
    ([[SENTENCE]], "input 0 is a list of 1"),
]


@pytest.mark.parametrize("given, match", BAD)
def test_refused_forms_name_the_item_and_its_type(given, match):
    with pytest.raises(FastFormersError, match=match):
        validate_inputs(given)


# -- every entry point -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("inputs-model")
    tiny_model("bert", seed=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def entry_points(saved):
    clf = TextClassifier.from_pretrained(saved)
    cascade = CascadeClassifier(saved, saved, threshold=0.99)
    with MultiInstanceClassifier(saved, RuntimeConfig(num_instances=1, threads_per_instance=1)) as server:
        yield {"TextClassifier.predict": clf.predict, "TextClassifier.predict_proba": clf.predict_proba,
               "TextClassifier.predict_logits": clf.predict_logits, "CascadeClassifier.predict": cascade.predict,
               "MultiInstanceClassifier.predict": server.predict,
               "MultiInstanceClassifier.predict_proba": server.predict_proba}


ENTRY_POINTS = ["TextClassifier.predict", "TextClassifier.predict_proba", "TextClassifier.predict_logits",
                "CascadeClassifier.predict", "MultiInstanceClassifier.predict", "MultiInstanceClassifier.predict_proba"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("given, match", BAD)
def test_every_entry_point_refuses_bad_input(entry_points, entry, given, match):
    with pytest.raises(FastFormersError, match=match):
        entry_points[entry](given)


def _answers(out):
    if isinstance(out, np.ndarray):
        return np.round(out, 5).tolist()
    return [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in out]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_pipeline_dict_is_read_as_its_text_not_its_keys(entry_points, entry):
    predict = entry_points[entry]
    assert _answers(predict({"text": SENTENCE})) == _answers(predict([SENTENCE]))
    assert _answers(predict({"text": SENTENCE})) != _answers(predict(["text"]))  # what iterating the dict read
    assert _answers(predict({"text": SENTENCE, "text_pair": OTHER})) == _answers(predict([(SENTENCE, OTHER)]))
