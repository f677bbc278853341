"""CoNLL loading, word-to-token label alignment and the entity metric (tables of cases, tiny tokenizers)."""
import json
from pathlib import Path

import numpy as np
import pytest

from fastformers_hf.errors import FastFormersError
from fastformers_hf.tasks.conll import HUB_CONLL2003_LABELS, load_conll
from fastformers_hf.tasks.entity_metric import entity_metrics
from fastformers_hf.tasks.token_classification import align_labels, b_to_i, tokenize_and_align

CONLL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]

TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


BRUSSELS NNP B-NP B-LOC
"""
DEV = """-DOCSTART- -X- -X- O

Peter NNP B-NP B-PER
said VBD B-VP O
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- loading ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dev_name", ["dev.txt", "valid.txt"])
def test_column_folder_loads_with_labels_from_the_data(tmp_path, dev_name):
    write(tmp_path / "train.txt", TRAIN), write(tmp_path / dev_name, DEV), write(tmp_path / "test.txt", DEV)
    dsd = load_conll(tmp_path)
    assert set(dsd) == {"train", "validation", "test"}
    train = dsd["train"]
    # O first, then a B-/I- pair per type (I-LOC, I-MISC, I-ORG although only B- occurs); shared by all splits.
    assert train.features["ner_tags"].feature.names == LABELS
    assert dsd["validation"].features == train.features
    assert train["tokens"] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert train["ner_tags"][0] == [5, 0, 3, 0] and train["ner_tags"][1] == [7, 8]
    assert train["id"] == ["0", "1", "2"]


def test_task_table_routes_conll2003_to_this_loader(tmp_path):
    from fastformers_hf.tasks.data import load_task_data

    write(tmp_path / "train.txt", TRAIN), write(tmp_path / "dev.txt", DEV)
    assert load_task_data(tmp_path, "conll2003")["validation"]["tokens"] == [["Peter", "said"]]


def test_one_file_and_a_given_label_list(tmp_path):
    file = write(tmp_path / "ner.conll", TRAIN)
    hub_labels = {str(i): name for i, name in enumerate(HUB_CONLL2003_LABELS)}  # as in a config.json
    train = load_conll(file, labels=hub_labels)["train"]
    assert train.features["ner_tags"].feature.names == list(HUB_CONLL2003_LABELS)
    assert train["ner_tags"][0] == [3, 0, 7, 0]


@pytest.mark.parametrize("tags,labels,names", [
    (["B-PER", "I-PER", "O"], None, ["O", "B-PER", "I-PER"]),  # names: the label list from the data
    ([1, 2, 0], None, list(HUB_CONLL2003_LABELS)),  # ints without a list: the Hub's conll2003 labels
    ([1, 2, 0], LABELS, LABELS),  # ints index the given list
])
def test_hub_style_json_lines(tmp_path, tags, labels, names):
    rows = [{"id": "s1", "tokens": ["Ann", "Lee", "ran"], "ner_tags": tags, "pos_tags": [1, 2, 3]}]
    file = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    train = load_conll(file, labels=labels)["train"]
    assert train.column_names == ["id", "tokens", "ner_tags"]
    assert train.features["ner_tags"].feature.names == names
    assert train["id"] == ["s1"] and train["ner_tags"] == [[1, 2, 0]]


@pytest.mark.parametrize("text,labels,needles", [
    # a tag outside the given list: the tag, the file and line, the known labels and the fix
    (TRAIN.replace("B-MISC", "B-EVENT"), LABELS, ["'B-EVENT'", "train.txt, line 5", "B-LOC, I-LOC", "labels="]),
    (TRAIN.replace("B-MISC", "MISC"), None, ["'MISC'", "line 5", "not IOB2"]),
    (TRAIN.replace("call NN I-NP O", "call"), None, ["line 6", "one column"]),
    (TRAIN.replace("call NN I-NP O", "call NN O"), None, ["line 6", "3 columns", "have 4"]),
    ("The film was good.\nIt was long.\n", None, ["is neither CoNLL columns", "JSON lines", "The film was good."]),
    ('{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["b"]\n', None, ["line 2", "not a JSON object"]),
    ('{"tokens": ["a", "b"], "ner_tags": ["O"]}\n', None, ["line 1", "same length"]),
    ('{"tokens": ["a"], "ner_tags": [12]}\n', None, ["line 1", "tag id 12", "labels="]),
])
def test_bad_input_is_refused_clearly(tmp_path, text, labels, needles):
    file = write(tmp_path / "train.txt", text)
    with pytest.raises(FastFormersError) as err:
        load_conll(file, labels=labels)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


@pytest.mark.slow
@pytest.mark.skipif(not (CONLL_DIR / "dev.txt").exists(), reason="needs ../shared/data/conll2003")
def test_real_conll2003_splits():
    dsd = load_conll(CONLL_DIR)
    assert (len(dsd["train"]), len(dsd["validation"])) == (14041, 3250)
    assert dsd["train"].features["ner_tags"].feature.names == LABELS
    assert dsd["train"][0]["tokens"][:3] == ["EU", "rejects", "German"]


# -- alignment ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_all_tokens,expected", [
    (False, [-100, 7, -100, 8, 0, -100, -100]),
    (True, [-100, 7, 8, 8, 0, 0, -100]),  # B-PER's continuation gets I-PER; I- and O keep theirs
])
def test_align_labels(label_all_tokens, expected):
    # [CLS] smith ##son lee lives ##s [SEP]: words 0 (B-PER), 1 (I-PER), 2 (O)
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert align_labels(word_ids, [7, 8, 0], label_all_tokens, b_to_i(LABELS)) == expected


def test_b_to_i_keeps_b_without_its_i():
    assert b_to_i(["O", "B-PER", "I-PER", "B-X"]) == [0, 2, 2, 3]


@pytest.fixture(scope="module")
def ner_tokenizer(tmp_path_factory):
    from fastformers_hf.testing import tiny_tokenizer

    return tiny_tokenizer(["smith", "##son", "lee", "lives", "in", "paris", "##ville"],
                          save_dir=tmp_path_factory.mktemp("ner-tok"))


def test_tokenize_and_align_counts_truncation(tmp_path, ner_tokenizer, caplog):
    write(tmp_path / "train.txt", "Smithson B-PER\nLee I-PER\nlives O\nin O\nParisville B-LOC\n\nLee B-PER\n")
    dsd = load_conll(tmp_path / "train.txt")
    names = dsd["train"].features["ner_tags"].feature.names  # O B-LOC I-LOC B-PER I-PER
    out = tokenize_and_align(dsd, ner_tokenizer, max_length=32, label_all_tokens=True)
    row = out["train"][0]
    assert ner_tokenizer.convert_ids_to_tokens(row["input_ids"]) == [
        "[CLS]", "smith", "##son", "lee", "lives", "in", "paris", "##ville", "[SEP]"]
    assert [names[i] if i >= 0 else None for i in row["labels"]] == [
        None, "B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", None]
    assert set(out["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}

    # 6 tokens: [CLS] smith ##son lee lives [SEP] -- "in" and "paris##ville" are cut, 2 labelled words lost.
    with caplog.at_level("WARNING"):
        cut, report = tokenize_and_align(dsd["train"], ner_tokenizer, max_length=6, return_report=True)
    assert (report.sentences, report.truncated, report.words_lost) == (2, 1, 2)
    assert cut[0]["labels"] == [-100, 3, -100, 4, 0, -100]
    assert "1 of 2 sentences" in caplog.text
    with pytest.raises(FastFormersError, match="raise max_length"):
        tokenize_and_align(dsd["train"], ner_tokenizer, max_length=6, long_inputs="error")


# -- metric -------------------------------------------------------------------------------------------------------

# (gold tags, predicted tags, (precision, recall, f1) in seqeval's default mode, the same in strict IOB2 mode)
METRIC_CASES = {
    "perfect": ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]], (1, 1, 1), (1, 1, 1)),
    "wrong type": ([["B-PER", "I-PER", "O"]], [["B-ORG", "I-ORG", "O"]], (0, 0, 0), (0, 0, 0)),
    "short boundary": ([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]], (0, 0, 0), (0, 0, 0)),
    "one of two": ([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]], (1, .5, 2 / 3), (1, .5, 2 / 3)),
    # an entity opened by I-: conlleval's rules count it; strict IOB2 does not
    "I- opens prediction": ([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]], (1, 1, 1), (0, 0, 0)),
    "I- opens gold": ([["O", "I-PER"]], [["O", "B-PER"]], (1, 1, 1), (0, 0, 0)),
    "B- B- splits": ([["B-PER", "I-PER"]], [["B-PER", "B-PER"]], (0, 0, 0), (0, 0, 0)),
    "I- of another type": ([["B-LOC", "I-LOC"]], [["B-LOC", "I-PER"]], (0, 0, 0), (0, 0, 0)),
    "micro over sentences": ([["B-PER", "O"], ["B-LOC", "I-LOC"]], [["B-PER", "O"], ["B-LOC", "O"]],
                             (.5, .5, .5), (.5, .5, .5)),
}


@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_entity_metric_known_cases(case):
    gold, pred, default, strict = METRIC_CASES[case]
    ids = {name: i for i, name in enumerate(LABELS)}
    # -100 around every sentence (special tokens) and after each tag (a continuation sub-token, predicted
    # B-MISC there on purpose): all must be dropped before comparing.
    labels = [[-100] + [x for t in s for x in (ids[t], -100)] for s in gold]
    preds = [[3] + [x for t in s for x in (ids[t], 3)] for s in pred]
    accuracy = np.mean([g == p for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)])
    for mode, expected in ((None, default), ("strict", strict)):
        got = entity_metrics(preds, labels, LABELS, mode=mode)
        assert [got["precision"], got["recall"], got["f1"]] == pytest.approx(list(expected)), mode
        assert got["accuracy"] == pytest.approx(accuracy)


def test_entity_metric_from_logits_with_per_type_f1():
    labels = np.array([[-100, 7, 8, 0, 1, -100]])  # (N, T)
    logits = np.eye(len(LABELS))[[[0, 7, 8, 0, 0, 0]]]  # (N, T, C): LOC missed
    got = entity_metrics(logits, labels, LABELS, per_type=True)
    assert got["precision"] == 1 and got["recall"] == .5 and got["f1_PER"] == 1 and got["f1_LOC"] == 0
    with pytest.raises(FastFormersError, match="outside"):
        entity_metrics([[0, 42]], [[0, 1]], LABELS)
