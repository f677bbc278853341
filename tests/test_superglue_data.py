"""COPA, OpenBookQA and CB loaders: the raw layout they give, every kind of bad input refused with the file, the line
and the fix before anything is written, and (slow) the real files' sizes and label ranges."""
import json
from pathlib import Path

import pytest

from fastformers_hf.commands.compress import parse
from fastformers_hf.errors import FastFormersError
from fastformers_hf.pipeline.compress import CompressPipeline
from fastformers_hf.tasks.data import load_task_data
from fastformers_hf.tasks.multiple_choice import lower_first
from fastformers_hf.testing import tiny_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COPA = {"premise": "The film ended.", "choice1": "The cast bowed.", "choice2": "I was bored.", "question": "effect",
        "label": 0, "idx": 7}
OBQA = {"id": "q1", "question_stem": "The sun is", "choices": {"text": ["a star", "a moon", "a planet", "a comet"],
                                                               "label": ["A", "B", "C", "D"]}, "answerKey": "A"}
CB = {"premise": "the film was good", "hypothesis": "the film was bad", "label": "contradiction"}


def _lines(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"


def _folder(tmp_path, train: str, dev: str | None = None) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    (path / "train.jsonl").write_text(train, encoding="utf-8")
    (path / "dev.jsonl").write_text(dev if dev is not None else train, encoding="utf-8")
    return path


def test_copa_turns_the_question_into_a_connective(tmp_path):
    cause = dict(COPA, question="cause", choice1="NASA called.", choice2="The plot was dull.", label=1)
    data = load_task_data(_folder(tmp_path, _lines(COPA, cause)), "copa")
    assert set(data) == {"train", "validation"}
    assert data["train"][0] == {"id": "7", "context": "The film ended.", "label": 0,
                                "choices": ["so the cast bowed.", "so I was bored."]}
    assert data["train"][1]["choices"] == ["because NASA called.", "because the plot was dull."]


def test_openbookqa_label_is_the_index_of_the_answer_key(tmp_path):
    row = dict(OBQA, answerKey="C")
    data = load_task_data(_folder(tmp_path, _lines(OBQA, row)), "openbookqa")
    assert data["validation"]["label"] == [0, 2]
    assert data["train"][1]["choices"] == ["a star", "a moon", "a planet", "a comet"]
    assert data["train"][1]["context"] == "The sun is"


def test_cb_labels_become_ids_in_the_task_order(tmp_path):
    rows = [dict(CB, label=name) for name in ("neutral", "entailment", "contradiction")]
    data = load_task_data(_folder(tmp_path, _lines(*rows)), "cb")
    assert data["train"]["label"] == [2, 0, 1]
    assert data["train"].features["label"].names == ["entailment", "contradiction", "neutral"]
    assert data["train"].info.dataset_name == "data"  # named after its folder, not "json"


def test_cb_is_scored_by_accuracy_and_macro_f1(tmp_path):
    import numpy as np
    from sklearn.metrics import f1_score

    from fastformers_hf.inference.evaluation import evaluation_for
    from fastformers_hf.tasks.names import get_task
    from fastformers_hf.testing import tiny_model, tiny_tokenizer

    rows = [dict(CB, premise=f"the film was {w}", label=name) for w in ("good", "bad", "dull")
            for name in ("neutral", "entailment", "contradiction")]
    split = load_task_data(_folder(tmp_path, _lines(*rows)), "cb")["validation"]
    ev, task = evaluation_for("sequence_classification"), get_task("cb")
    predictor = ev.load(tiny_model(num_labels=3, initializer_range=0.5), tiny_tokenizer(), batch_size=4)
    predicted = predictor.predict_logits(task.inputs(split)).argmax(-1)
    assert ev.score(predictor, split, task) == {
        "accuracy": float(np.mean(predicted == np.asarray(split["label"]))),
        "macro_f1": float(f1_score(split["label"], predicted, average="macro", zero_division=0))}


@pytest.mark.parametrize("word, expected", [("The plot", "the plot"), ("I left.", "I left."), ("I'm out", "I'm out"),
                                            ("NASA did", "NASA did"), ("A man", "a man"), ("", "")])
def test_lower_first(word, expected):
    assert lower_first(word) == expected


BAD = [  # task, train file, what the error says (after the file and line)
    ("openbookqa", _lines(OBQA, dict(OBQA, choices={"text": ["a", "b", "c"], "label": ["A", "B", "C"]})),
     r"line 2: 3 choices, but line 1 has 4; every row of a file needs the same number of choices.*complete or remove"),
    ("openbookqa", _lines(dict(OBQA, answerKey="E")),
     r"line 1: answerKey 'E' is not among the choice labels \['A', 'B', 'C', 'D'\]; set it"),
    ("openbookqa", _lines(dict(OBQA, choices={"text": ["a", "b"], "label": ["A"]})),
     r"line 1: 'choices' must be \{'text': \[...\], 'label': \[...\]\}, two lists of strings of one length"),
    ("copa", _lines(COPA, dict(COPA, question="reason")), r"line 2: question 'reason' is neither 'cause' nor 'effect'"),
    ("copa", _lines(dict(COPA, label=2)), r"line 1: label 2 is not 0 \(choice1\) or 1 \(choice2\); fix it"),
    ("copa", _lines({k: v for k, v in COPA.items() if k != "choice2"}), r"line 1: field 'choice2' is missing.*fix"),
    ("copa", _lines(COPA, "{not json"), r"line 2 is not JSON"),
    ("cb", _lines(CB, dict(CB, label="maybe")),
     r"row 2: label 'maybe' is not a cb label; use one of entailment, contradiction, neutral"),
    ("cb", _lines({"premise": "the film was good", "label": "neutral"}),
     r"no 'hypothesis' column .*pairs, and this file looks like single sentences; add the missing text column"),
]


@pytest.mark.parametrize("task, train, message", BAD, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(BAD)])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, task, train, message):
    data = _folder(tmp_path, train, dev=_lines(OBQA if task == "openbookqa" else COPA if task == "copa" else CB))
    with pytest.raises(FastFormersError, match=message) as error:
        load_task_data(data, task)
    assert str(data / "train.jsonl") in str(error.value)
    teacher = tmp_path / "teacher"
    config = tiny_config("bert")
    config.architectures = ["BertForSequenceClassification" if task == "cb" else "BertForMultipleChoice"]
    config.save_pretrained(teacher)
    out = tmp_path / "out"
    with pytest.raises(FastFormersError, match=message):
        CompressPipeline(parse(["--model_name_or_path", str(teacher), "--data", str(data), "--task", task,
                                "--output_dir", str(out)])).validate()
    assert not out.exists()


REAL = [("copa", "superglue/copa", (400, 100), {0, 1}, 2),
        ("openbookqa", "openbookqa", (4957, 500), {0, 1, 2, 3}, 4),
        ("cb", "superglue/cb", (250, 56), {0, 1, 2}, None)]


@pytest.mark.slow
@pytest.mark.parametrize("task, folder, sizes, labels, choices", REAL, ids=[r[0] for r in REAL])
def test_real_files(task, folder, sizes, labels, choices):
    if not (SHARED / folder / "dev.jsonl").exists():
        pytest.skip(f"needs ../shared/data/{folder}")
    data = load_task_data(SHARED / folder, task)
    assert (len(data["train"]), len(data["validation"])) == sizes
    for split in data.values():
        assert set(split["label"]) == labels  # every label occurs, and no other
        if choices is not None:
            assert {len(c) for c in split["choices"]} == {choices}
            assert all(c.strip() for cs in split["choices"] for c in cs) and all(x.strip() for x in split["context"])
    if task == "copa":
        assert all(c.split(" ", 1)[0] in ("because", "so") for cs in data["train"]["choices"] for c in cs)
