"""SQuAD data: loading both formats (and refusing bad input), window features for training and evaluation, and
the official v1.1 exact match / F1."""
import json
import logging
from pathlib import Path

import pytest

from fastformers_hf.errors import FastFormersError
from fastformers_hf.tasks.question_answering import (answer_positions, encode_windows, eval_features,
                                                     train_features)
from fastformers_hf.tasks.squad import load_squad
from fastformers_hf.tasks.squad_metric import exact_match_score, f1_score, normalize_answer, squad_metrics

SQUAD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad"
CONTEXT = "the film was good . the plot was dull but the music was great ."


def squad_json(questions, context=CONTEXT, title="Films"):
    """SQuAD v1.1 JSON of one paragraph; ``questions``: (id, question, [(text, answer_start), ...])."""
    qas = [{"id": i, "question": q, "answers": [{"text": t, "answer_start": s} for t, s in answers]}
           for i, q, answers in questions]
    return {"version": "1.1", "data": [{"title": title, "paragraphs": [{"context": context, "qas": qas}]}]}


GOOD = [("q1", "what was dull ?", [("the plot", 20), ("plot", 24)]), ("q2", "what was great ?", [("the music", 42)])]


def write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def squad_dir(tmp_path):
    write(tmp_path / "train.json", squad_json(GOOD))
    write(tmp_path / "dev.json", squad_json(GOOD[:1]))
    return tmp_path


# -- loading -----------------------------------------------------------------------------------------------------

def test_squad_json_folder_flattens_to_the_hub_columns(squad_dir):
    dsd = load_squad(squad_dir)
    assert set(dsd) == {"train", "validation"} and len(dsd["train"]) == 2 and len(dsd["validation"]) == 1
    assert dsd["train"].column_names == ["id", "title", "context", "question", "answers"]
    assert dsd["train"][0] == {"id": "q1", "title": "Films", "context": CONTEXT, "question": "what was dull ?",
                               "answers": {"text": ["the plot", "plot"], "answer_start": [20, 24]}}
    assert dsd["train"].info.dataset_name == squad_dir.name


def test_json_lines_give_the_same_rows_and_load_task_data_routes_squad_here(squad_dir, tmp_path):
    from fastformers_hf import load_task_data

    rows = load_squad(squad_dir)["train"]
    lines = tmp_path / "lines"
    lines.mkdir()
    write(lines / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert list(load_squad(lines)["train"]) == list(rows)
    assert list(load_task_data(squad_dir, "squad")["validation"]) == list(load_squad(squad_dir)["validation"])
    assert set(load_squad(squad_dir / "dev.json")) == {"validation"}  # a single file: its stem names the split


BAD = [("q1", "what was dull ?", [("the plot", 20), ("the plot", 3)]),  # one good answer and one off its start
       ("q2", "what was great ?", [("the music", 5)]),  # no good answer left
       ("q3", "what was fun ?", []),  # no answer at all
       ("q4", "what was good ?", [("good", 13)])]


def test_bad_answers_are_counted_skipped_and_reported(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fastformers_hf.tasks.squad"):
        ds = load_squad(write(tmp_path / "train.json", squad_json(BAD)))["train"]
    assert ds["id"] == ["q1", "q4"] and ds[0]["answers"] == {"text": ["the plot"], "answer_start": [20]}
    assert "skipped 2 of 4 questions (1 without answers, 1 whose every answer is off its answer_start) and " \
           "2 answers whose answer_start does not match" in caplog.text


@pytest.mark.parametrize("questions, needle", [
    ([BAD[0]], "question 'q1': answer 'the plot' is not at answer_start 3 of its context (found ' film wa')"),
    ([BAD[2]], "question 'q3' has no answers"),
])
def test_bad_answers_are_refused_on_request(tmp_path, questions, needle):
    path = write(tmp_path / "dev.json", squad_json(questions))
    with pytest.raises(FastFormersError) as err:
        load_squad(path, on_bad_answers="error")
    assert needle in str(err.value) and str(path) in str(err.value) and "on_bad_answers='skip'" in str(err.value)


@pytest.mark.parametrize("content, needle", [
    ('{"version": "1.1", "rows": []}', "is JSON but not SQuAD data"),
    ('[1, 2]', "is JSON but not SQuAD data (a list)"),
    ('{"data": [{"title": "x", "paragraphs": [{"qas": [{"id": "1"}]}]}]}', "is not valid SQuAD v1.1 JSON: missing"),
    ('{"data": []}', "holds no questions"),
    ('id,question,context\n1,a,b\n', "line 1 is not a SQuAD record"),
    ('{"id": "1", "question": "q", "context": "c"}\n', "line 1 is not a SQuAD record (missing 'answers')"),
])
def test_a_file_in_neither_format_is_refused_clearly(tmp_path, content, needle):
    with pytest.raises(FastFormersError, match="expected SQuAD v1.1 JSON") as err:
        load_squad(write(tmp_path / "train.json", content))
    assert needle in str(err.value)


def test_duplicate_ids_and_unknown_policies_are_refused(tmp_path):
    with pytest.raises(FastFormersError, match="'q1' appears twice"):
        load_squad(write(tmp_path / "train.json", squad_json([GOOD[0], GOOD[0]])))
    with pytest.raises(FastFormersError, match="on_bad_answers must be one of"):
        load_squad(tmp_path, on_bad_answers="drop")


@pytest.mark.skipif(not (SQUAD_DIR / "dev.json").exists(), reason="needs ../shared/data/squad")
def test_the_shared_squad_data_loads_whole():
    dsd = load_squad(SQUAD_DIR, on_bad_answers="error")
    assert (len(dsd["train"]), len(dsd["validation"])) == (5946, 2015)


# -- features ----------------------------------------------------------------------------------------------------

LONG = " ".join(f"the plot was dull . the music was {w} ." for w in ("great", "good", "fresh", "flat", "weak", "funny"))


@pytest.fixture(params=["right", "left"])
def windows_tokenizer(request, tokenizer):
    """The tiny tokenizer padding on the right (question first) or on the left (context first)."""
    from copy import deepcopy

    tok = deepcopy(tokenizer)
    tok.padding_side = request.param
    return tok


def answer_rows():
    starts = [LONG.index(w) for w in ("great", "flat", "funny")]
    return {"id": ["a", "b", "c"], "question": ["what was great ?"] * 3, "context": [LONG] * 3,
            "answers": [{"text": [LONG[s:].split()[0]], "answer_start": [s]} for s in starts]}


def test_long_contexts_are_strided_never_cut_and_labels_point_at_the_answer(windows_tokenizer):
    from datasets import Dataset

    tok, rows = windows_tokenizer, answer_rows()
    feats = train_features(Dataset.from_dict(rows), tok, max_length=24, doc_stride=6)
    enc = encode_windows(tok, rows["question"], rows["context"], max_length=24, doc_stride=6)
    ctx = 1 if tok.padding_side == "right" else 0
    assert len(feats) == len(enc["input_ids"]) > 3 * 4 and max(len(x) for x in feats["input_ids"]) == 24
    mapping, holding = enc["overflow_to_sample_mapping"], {0: 0, 1: 0, 2: 0}
    for w, (start, end) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        example, seq = mapping[w], enc.sequence_ids(w)
        covered = [enc["offset_mapping"][w][t] for t, s in enumerate(seq) if s == ctx]
        answer = rows["answers"][example]
        a, b = answer["answer_start"][0], answer["answer_start"][0] + len(answer["text"][0])
        if covered[0][0] <= a and b <= covered[-1][1]:
            holding[example] += 1
            assert seq[start] == seq[end] == ctx
            assert LONG[enc["offset_mapping"][w][start][0]:enc["offset_mapping"][w][end][1]] == answer["text"][0]
        else:
            cls = enc["input_ids"][w].index(tok.cls_token_id)
            assert start == end == cls
    assert all(n >= 1 for n in holding.values())
    # Every context token lies in some window: the union of the windows' context spans is the whole context.
    spans = {tuple(o) for w in range(len(mapping)) if mapping[w] == 0
             for o, s in zip(enc["offset_mapping"][w], enc.sequence_ids(w)) if s == ctx}
    full = tok(LONG, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    assert spans == {tuple(o) for o in full}


def test_an_answer_at_the_last_context_token_of_a_window_is_labelled_there():
    offsets = [None, (0, 3), (4, 8), (9, 12), None, None]  # [CLS] the plot was [SEP] [PAD]
    assert answer_positions(offsets, 9, 12) == (3, 3)
    assert answer_positions(offsets, 4, 12) == (2, 3)
    assert answer_positions(offsets, 5, 7) == (2, 2)  # inside a token: that token
    assert answer_positions(offsets, 9, 20) == (0, 0)  # runs past the window: CLS


def test_eval_features_keep_the_example_and_only_context_offsets(tokenizer):
    from datasets import Dataset

    feats = eval_features(Dataset.from_dict(answer_rows()), tokenizer, max_length=24, doc_stride=6)
    assert set(feats.column_names) >= {"input_ids", "example_id", "offset_mapping", "word_ids", "cls_index"}
    assert set(feats["example_id"]) == {"a", "b", "c"}
    for row in feats:
        question_end = row["input_ids"].index(tokenizer.sep_token_id)
        assert all(o is None for o in row["offset_mapping"][:question_end + 1])  # [CLS] question [SEP]
        assert row["offset_mapping"][-1] is None and row["cls_index"] == 0  # the last [SEP]
        assert all((o is None) == (w is None) for o, w in zip(row["offset_mapping"], row["word_ids"]))


def test_a_question_that_leaves_no_room_to_stride_is_refused_by_id(tokenizer):
    question = "what was the plot and the music and the acting ?"  # 11 tokens: 24 - 3 - 11 = 10 left for context
    with pytest.raises(FastFormersError, match=r"question 'q7' takes 11 tokens.*its context 10 .*doc_stride=10"):
        encode_windows(tokenizer, ["ok ?", question], [LONG, LONG], max_length=24, doc_stride=10, names=["q6", "q7"])
    assert len(encode_windows(tokenizer, [question], [LONG], max_length=24, doc_stride=9)["input_ids"]) > 1
    assert len(encode_windows(tokenizer, [question], ["the plot ."], max_length=24, doc_stride=10)["input_ids"]) == 1
    with pytest.raises(FastFormersError, match="doc_stride .24. must be at least 0 and below max_length"):
        encode_windows(tokenizer, ["q"], ["c"], max_length=24, doc_stride=24)


# -- metric ------------------------------------------------------------------------------------------------------

METRIC_CASES = [  # prediction, gold answers, exact match, F1 (hand-computed)
    ("the plot", ["The Plot"], 1.0, 1.0),  # case
    ("plot", ["the plot"], 1.0, 1.0),  # articles are dropped
    ("Plot.", ["plot"], 1.0, 1.0),  # punctuation
    ("  the   dull plot ", ["dull plot"], 1.0, 1.0),  # whitespace
    ("an apple", ["a apple"], 1.0, 1.0),
    ("theatre", ["atre"], 0.0, 0.0),  # articles only as whole words
    ("U.S.", ["us"], 1.0, 1.0),  # punctuation goes before articles and whitespace
    ("the-end", ["end"], 0.0, 0.0),  # "theend": no article left to drop
    ("dull plot music", ["dull plot"], 0.0, 0.8),  # precision 2/3, recall 1
    ("dull", ["dull plot", "very dull"], 0.0, 2 / 3),  # the best gold answer counts
    ("plot plot", ["plot"], 0.0, 2 / 3),  # token counts: precision 1/2, recall 1
    ("the", ["a"], 1.0, 0.0),  # both empty after normalisation: EM 1, F1 0 (v1.1; v2.0 gives F1 1)
    ("music – great", ["music great"], 0.0, 0.8),  # a non-ASCII dash is not punctuation: 3 tokens vs 2
    ("Café", ["cafe"], 0.0, 0.0),  # no accent folding
]


@pytest.mark.parametrize("prediction, golds, em, f1", METRIC_CASES)
def test_exact_match_and_f1_follow_the_official_script(prediction, golds, em, f1):
    assert max(exact_match_score(prediction, g) for g in golds) == em
    assert max(f1_score(prediction, g) for g in golds) == pytest.approx(f1)


@pytest.mark.parametrize("prediction", [case[0] for case in METRIC_CASES])
def test_normalisation_is_the_one_transformers_4_ships(prediction):
    squad_metrics = pytest.importorskip("transformers.data.metrics.squad_metrics")  # removed in transformers 5

    assert normalize_answer(prediction) == squad_metrics.normalize_answer(prediction)


def test_squad_metrics_average_over_references_and_missing_predictions_score_zero(caplog):
    refs = [{"id": str(i), "answers": {"text": golds, "answer_start": [0] * len(golds)}}
            for i, (_, golds, _, _) in enumerate(METRIC_CASES)]
    preds = {str(i): p for i, (p, _, _, _) in enumerate(METRIC_CASES)}
    em = 100 * sum(c[2] for c in METRIC_CASES) / len(METRIC_CASES)
    f1 = 100 * sum(c[3] for c in METRIC_CASES) / len(METRIC_CASES)
    assert squad_metrics(preds, refs) == pytest.approx({"exact_match": em, "f1": f1})
    as_list = [{"id": k, "prediction_text": v} for k, v in preds.items()]
    assert squad_metrics(as_list, refs) == squad_metrics([{"id": k, "answer": v} for k, v in preds.items()], refs)
    del preds["0"]
    with caplog.at_level(logging.WARNING, logger="fastformers_hf.tasks.squad_metric"):
        assert squad_metrics(preds, refs)["exact_match"] == pytest.approx(em - 100 / len(refs))
    assert "1 of 14 questions have no prediction" in caplog.text
    with pytest.raises(FastFormersError, match="prediction 0 is not"):
        squad_metrics(["the plot"], refs)
