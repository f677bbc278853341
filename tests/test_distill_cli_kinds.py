"""``fastformers-hf distill`` for question answering (squad) and NER (conll2003), end to end on tiny generated data
in the real formats: the student keeps the teacher's head and is scored with its kind's metric."""
import ast
import json
from pathlib import Path

import pytest

from fastformers_hf.commands.distill import main
from fastformers_hf.errors import FastFormersError
from fastformers_hf.testing import tiny_config, tiny_tokenizer

# Texts use the tiny tokenizer's vocabulary only (fastformers_hf.tasks.synthetic.VOCABULARY); "?" is [UNK].
CONTEXTS = ["the film was good . the plot was dull but the music was great .",
            "the cast was charming and the ending was moving . the script was weak .",
            "the acting was brilliant but the movie was rather predictable ."]
QUESTIONS = [(0, "the plot was ?", "dull"), (0, "the music was ?", "great"), (1, "the cast was ?", "charming"),
             (1, "the script was ?", "weak"), (2, "the acting was ?", "brilliant"), (2, "the movie was ?",
                                                                                      "rather predictable")]
NER_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]  # the order load_conll derives from PER/LOC data
SENTENCES = [[("the", "O"), ("cast", "B-PER"), ("was", "O"), ("good", "O"), (".", "O")],
             [("the", "O"), ("film", "B-LOC"), ("music", "I-LOC"), ("is", "O"), ("great", "O")],
             [("cast", "B-PER"), ("acting", "I-PER"), ("was", "O"), ("dull", "O"), (".", "O")],
             [("the", "O"), ("movie", "B-LOC"), ("was", "O"), ("really", "O"), ("funny", "O")]]


def _squad_json(question_ids) -> dict:
    paragraphs = []
    for c, context in enumerate(CONTEXTS):
        qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
               for i, (ci, q, a) in enumerate(QUESTIONS) if ci == c and i in question_ids]
        if qas:
            paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "Films", "paragraphs": paragraphs}]}


def _save_teacher(model, path: Path) -> Path:
    model.save_pretrained(path)
    tiny_tokenizer(save_dir=path / "vocab").save_pretrained(path)
    return path


def _conll(sentences) -> str:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in sentences:
        lines += [f"{word} NN I-NP {tag}" for word, tag in sentence] + [""]
    return "\n".join(lines)


def _ner_teacher(tmp_path, labels) -> Path:
    import torch
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    config = tiny_config("bert", num_labels=len(labels))
    config.id2label, config.label2id = dict(enumerate(labels)), {n: i for i, n in enumerate(labels)}
    return _save_teacher(AutoModelForTokenClassification.from_config(config), tmp_path / "teacher")


def _conll_dir(tmp_path) -> Path:
    data = tmp_path / "conll"
    data.mkdir()
    (data / "train.txt").write_text(_conll(SENTENCES * 2), encoding="utf-8")
    (data / "dev.txt").write_text(_conll(SENTENCES[:2]), encoding="utf-8")
    return data


def _run(teacher, data, task, out, *extra) -> int:
    return main(["--teacher_model_name_or_path", str(teacher), "--data", str(data), "--task", task,
                 "--student_layers", "1", "--output_dir", str(out), "--max_steps", "2", "--report_to", "none",
                 "--save_strategy", "no", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
                 *extra])


def _printed_metrics(out: str) -> dict:
    return ast.literal_eval(next(line for line in out.splitlines()[::-1] if line.startswith("{'eval_")))


def test_squad_distills_a_question_answering_student_scored_by_exact_match_and_f1(tmp_path, capsys):
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    torch.manual_seed(0)
    teacher = _save_teacher(AutoModelForQuestionAnswering.from_config(tiny_config("bert")), tmp_path / "teacher")
    data = tmp_path / "squad"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(_squad_json(range(len(QUESTIONS)))), encoding="utf-8")
    (data / "dev.json").write_text(json.dumps(_squad_json([0, 2, 5])), encoding="utf-8")
    # Short windows over a stride, so a context is split and decoding merges windows.
    assert _run(teacher, data, "squad", tmp_path / "student", "--max_length", "16", "--doc_stride", "4") == 0
    assert AutoConfig.from_pretrained(tmp_path / "student").architectures == ["BertForQuestionAnswering"]
    metrics = _printed_metrics(capsys.readouterr().out)
    assert {"eval_exact_match", "eval_f1"} <= set(metrics)
    assert all(0 <= metrics[k] <= 100 for k in ("eval_exact_match", "eval_f1"))


def test_squad_defaults_to_windows_within_the_teachers_position_limit(tmp_path):
    from fastformers_hf.commands.distill import DistillDataArguments, _lengths

    config = tiny_config("bert")  # max_position_embeddings=128 < the QA default of 384
    assert _lengths(DistillDataArguments(), "question_answering", config) == (128, 64)
    assert _lengths(DistillDataArguments(max_length=64, doc_stride=8), "question_answering", config) == (64, 8)
    assert _lengths(DistillDataArguments(), "sequence_classification", config) == (128, 64)


def test_conll2003_distills_a_token_classification_student_scored_by_entity_f1(tmp_path, capsys):
    from transformers import AutoConfig

    teacher = _ner_teacher(tmp_path, NER_LABELS)
    assert _run(teacher, _conll_dir(tmp_path), "conll2003", tmp_path / "student") == 0
    config = AutoConfig.from_pretrained(tmp_path / "student")
    assert config.architectures == ["BertForTokenClassification"]
    assert [config.id2label[i] for i in range(len(NER_LABELS))] == NER_LABELS
    metrics = _printed_metrics(capsys.readouterr().out)
    assert {"eval_precision", "eval_recall", "eval_f1", "eval_accuracy"} <= set(metrics)


def test_conll2003_tags_the_teacher_lacks_are_refused_clearly(tmp_path):
    teacher = _ner_teacher(tmp_path, ["O", "B-ORG", "I-ORG", "B-MISC", "I-MISC"])
    with pytest.raises(FastFormersError, match=r"do not match the model's labels.*B-LOC, I-LOC, B-PER, I-PER are not"):
        _run(teacher, _conll_dir(tmp_path), "conll2003", tmp_path / "student")
    assert not (tmp_path / "student" / "model.safetensors").exists()


def test_a_teacher_of_another_kind_is_refused(tmp_path):
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    teacher = _save_teacher(AutoModelForQuestionAnswering.from_config(tiny_config("bert")), tmp_path / "teacher")
    with pytest.raises(FastFormersError, match="question_answering model but task 'conll2003'"):
        _run(teacher, _conll_dir(tmp_path), "conll2003", tmp_path / "student")


def test_tokenize_task_reindexes_data_tags_to_the_teachers_label_order(tmp_path):
    from fastformers_hf.tasks.conll import HUB_CONLL2003_LABELS, load_conll
    from fastformers_hf.tasks.data import tokenize_task

    raw = load_conll(_conll_dir(tmp_path))  # labels from the data: O, B-LOC, I-LOC, B-PER, I-PER
    tokenizer = tiny_tokenizer(save_dir=tmp_path / "tok")
    hub = dict(enumerate(HUB_CONLL2003_LABELS))
    features = tokenize_task(raw, tokenizer, "conll2003", max_length=32, label_names=hub)
    # "the cast was good ." -> [CLS] the cast was good . [SEP]; cast is B-PER: 1 in the Hub order (3 in the data's).
    assert features["train"][0]["labels"] == [-100, 0, 1, 0, 0, 0, -100]
    same = tokenize_task(raw, tokenizer, "conll2003", max_length=32, label_names=NER_LABELS)
    assert same["train"][0]["labels"] == [-100, 0, 3, 0, 0, 0, -100]


def test_squad_refuses_evaluation_during_training(tmp_path):
    import torch
    from transformers import AutoModelForQuestionAnswering

    torch.manual_seed(0)
    teacher = _save_teacher(AutoModelForQuestionAnswering.from_config(tiny_config("bert")), tmp_path / "teacher")
    data = tmp_path / "squad"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(_squad_json(range(len(QUESTIONS)))), encoding="utf-8")
    with pytest.raises(FastFormersError, match="scored once, after training"):
        _run(teacher, data, "squad", tmp_path / "student", "--eval_strategy", "steps", "--eval_steps", "1")
