"""``fastformers-hf compress`` for question answering (squad), NER (conll2003) and multiple choice (copa) on tiny
models and tiny data in the real formats: every stage runs offline, each stage is scored with the kind's metric,
the final table and the card name it, and a teacher of the wrong head is refused before any training."""
import json

import pytest

from fastformers_hf.errors import FastFormersError
from fastformers_hf.pipeline.compress import CompressPipeline, format_summary
from fastformers_hf.commands.compress import parse
from fastformers_hf.testing import tiny_config, tiny_tokenizer
from test_distill_cli_kinds import NER_LABELS, QUESTIONS, _conll_dir, _squad_json

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _teacher(tmp_path, kind: str):
    import torch
    import transformers

    torch.manual_seed(0)
    labels = {"num_labels": len(NER_LABELS)} if kind == "token_classification" else {}
    config = tiny_config("bert", **labels)
    if kind == "token_classification":
        config.id2label, config.label2id = dict(enumerate(NER_LABELS)), {n: i for i, n in enumerate(NER_LABELS)}
    auto = {"token_classification": "AutoModelForTokenClassification", "question_answering":
            "AutoModelForQuestionAnswering", "multiple_choice": "AutoModelForMultipleChoice"}[kind]
    model = getattr(transformers, auto).from_config(config)
    path = tmp_path / "teacher"
    model.save_pretrained(path)
    tiny_tokenizer(save_dir=tmp_path / "vocab").save_pretrained(path)
    return path


def _squad_dir(tmp_path):
    data = tmp_path / "squad"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(_squad_json(range(len(QUESTIONS)))), encoding="utf-8")
    (data / "dev.json").write_text(json.dumps(_squad_json([0, 2, 5])), encoding="utf-8")
    return data


def _copa_dir(tmp_path):
    """COPA JSON lines (premise, choice1, choice2, question, label) in the tiny tokenizer's words."""
    import random

    from fastformers_hf.tasks.synthetic import NEGATIVE, POSITIVE, SUBJECTS

    rng = random.Random(0)

    def clause(words):
        return f"{rng.choice(SUBJECTS)} was {rng.choice(words)}"

    rows = []
    for i in range(24):
        good, bad, label = clause(POSITIVE), clause(NEGATIVE), i % 2
        rows.append({"premise": clause(POSITIVE) + " .", "question": "effect" if i % 3 == 0 else "cause",
                     "choice1": bad if label else good, "choice2": good if label else bad, "label": label, "idx": i})
    data = tmp_path / "copa"
    data.mkdir()
    for name, part in (("train", rows[:16]), ("dev", rows[16:])):
        (data / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in part) + "\n", encoding="utf-8")
    return data


CASES = [  # task, kind, data folder builder, headline metric
    ("squad", "question_answering", _squad_dir, "f1"),
    ("conll2003", "token_classification", _conll_dir, "f1"),
    ("copa", "multiple_choice", _copa_dir, "accuracy"),
]
SUMMARY_LABELS = {"f1": "F1", "accuracy": "accuracy"}  # how the final table's header names the metric


def _argv(teacher, data, task, out, *extra):
    return ["--model_name_or_path", str(teacher), "--data", str(data), "--task", task, "--output_dir", str(out),
            "--student_layers", "1", "--max_steps", "2", "--redistill_steps", "1", "--per_device_train_batch_size",
            "4", "--heads_per_layer", "2", "--ffn_width", "0.5", "--scoring_examples", "2", "--latency_samples", "3",
            "--max_length", "64", "--onnx_tolerance", "100", *extra]


@pytest.mark.parametrize("task,kind,make_data,metric", CASES)
def test_compress_runs_every_stage_for_the_kind(tmp_path, task, kind, make_data, metric):
    teacher, data = _teacher(tmp_path, kind), make_data(tmp_path)
    out = tmp_path / "out"
    summary = CompressPipeline(parse(_argv(teacher, data, task, out)), log=lambda _: None).run()
    final = summary["final"]
    assert summary["task"] == {"name": task, "kind": kind}
    assert final["kind"] == kind and final["metric"] == metric
    assert set(final["points"]) == {"teacher", "pytorch", "onnx"}
    assert all(0 <= p <= 100 for p in final["points"].values())
    for stage in ("1-distill", "2-prune", "3-redistill"):
        record = json.loads((out / stage / "stage.json").read_text())
        assert "metrics" in record["results"] or f"{metric}_before_redistill" in record["results"]
    heads = json.loads((out / "2-prune" / "stage.json").read_text())["results"]["heads_per_layer"]
    assert heads == [2]
    assert SUMMARY_LABELS[metric] in format_summary(summary).splitlines()[0]
    assert (out / "5-final" / "onnx").is_dir() and (out / "5-final" / "README.md").is_file()
    if kind == "multiple_choice":  # variants judged by dev accuracy; the card's task from the kind table
        report = json.loads((out / "4-onnx" / "onnx_variants.json").read_text())
        assert report["chosen"] and all(r["accuracy"] is not None for r in report["results"] if r["passed"])
        assert "8 examples" in report["data"]
        assert "pipeline_tag: multiple-choice" in (out / "5-final" / "README.md").read_text()
        assert set(final["accuracy"]) == {"teacher", "pytorch", "onnx"}
    again = CompressPipeline(parse(_argv(teacher, data, task, out)), log=lambda _: None)
    logged = []
    again.log = logged.append
    again.run()
    assert all("done earlier" in line for line in logged if line.startswith("[")), logged


@pytest.mark.parametrize("task,kind,make_data,metric", CASES)
def test_a_teacher_of_another_head_is_refused_before_training(tmp_path, task, kind, make_data, metric):
    other = "token_classification" if kind == "question_answering" else "question_answering"
    teacher, data = _teacher(tmp_path, other), make_data(tmp_path)
    with pytest.raises(FastFormersError, match=f"needs a {kind} model.*--teacher_fine_tune_steps"):
        CompressPipeline(parse(_argv(teacher, data, task, tmp_path / "out"))).validate()
    assert not (tmp_path / "out").exists()


def test_squad_without_data_is_refused(tmp_path):
    teacher = _teacher(tmp_path, "question_answering")
    with pytest.raises(FastFormersError, match="needs --data"):
        CompressPipeline(parse(["--model_name_or_path", str(teacher), "--task", "squad",
                                "--output_dir", str(tmp_path / "o")])).validate()


def test_question_answering_defaults_to_384_token_windows():
    config = parse(["--model_name_or_path", "x", "--task", "squad"])
    assert (config.max_length, config.doc_stride) == (384, 128)
    assert parse(["--model_name_or_path", "x"]).max_length == 128


@pytest.mark.parametrize("task,kind,make_data,metric", CASES)
def test_a_bare_encoder_gets_the_kinds_head_in_0_teacher(tmp_path, task, kind, make_data, metric):
    """A pretrained encoder without a head (as the demo's MiniLM) is fine-tuned first: NER labels from the data."""
    import torch
    from transformers import AutoConfig, BertModel

    torch.manual_seed(0)
    encoder = tmp_path / "encoder"
    BertModel(tiny_config("bert")).save_pretrained(encoder)
    tiny_tokenizer(save_dir=tmp_path / "vocab").save_pretrained(encoder)
    out = tmp_path / "out"
    CompressPipeline(parse(_argv(encoder, make_data(tmp_path), task, out, "--teacher_fine_tune_steps", "2")),
                     log=lambda _: None).run()
    config = AutoConfig.from_pretrained(out / "0-teacher")
    assert config.architectures[0].endswith({"question_answering": "ForQuestionAnswering",
                                             "token_classification": "ForTokenClassification",
                                             "multiple_choice": "ForMultipleChoice"}[kind])
    if kind == "token_classification":
        assert sorted(config.id2label.values()) == sorted(NER_LABELS)
    record = json.loads((out / "0-teacher" / "stage.json").read_text())
    assert metric in record["results"]
