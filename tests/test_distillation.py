import json
import math

import pytest
import torch
from safetensors.torch import load_file

from fastformers_hf import (
    DistillationConfig,
    DistillationTrainer,
    FastFormersError,
    cache_teacher_logits,
    compression_record,
    compute_metrics,
    make_student,
    soft_cross_entropy,
)
from fastformers_hf.distillation.trainer import layer_map
from fastformers_hf.testing import tiny_model


def config(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=40, per_device_train_batch_size=32, learning_rate=2e-3,
                    logging_steps=5, report_to=[], save_strategy="no", dataloader_pin_memory=False, seed=0)
    return DistillationConfig(**{**defaults, **kw})


# -- the loss -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
def test_soft_cross_entropy_matches_definition(temperature):
    torch.manual_seed(0)
    s, t = torch.randn(8, 3), torch.randn(8, 3)
    p = torch.softmax(t / temperature, -1)
    expected = -(p * torch.log_softmax(s / temperature, -1)).sum(-1).mean() * temperature**2
    assert torch.allclose(soft_cross_entropy(s, t, temperature), expected)
    # minimised (gradient zero) when the student equals the teacher
    s2 = t.clone().requires_grad_(True)
    soft_cross_entropy(s2, t, temperature).backward()
    assert s2.grad.abs().max() < 1e-6


@pytest.mark.parametrize("n_student,n_teacher,mapping,expected", [
    (3, 6, "uniform", [2, 4, 6]),
    (2, 6, "uniform", [3, 6]),
    (3, 6, "last", [4, 5, 6]),
    (3, 6, [1, 3, 6], [1, 3, 6]),
    (6, 6, "uniform", [1, 2, 3, 4, 5, 6]),
])
def test_layer_map(n_student, n_teacher, mapping, expected):
    assert layer_map(n_student, n_teacher, mapping) == expected


@pytest.mark.parametrize("n_student,n_teacher,mapping,match", [
    (8, 6, "uniform", "no layer mapping exists"),
    (3, 6, [1, 2], "one teacher layer"),
    (3, 6, [1, 2, 7], "one teacher layer"),
])
def test_layer_map_errors(n_student, n_teacher, mapping, match):
    with pytest.raises(FastFormersError, match=match):
        layer_map(n_student, n_teacher, mapping)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0), "temperature must be > 0"),
    (dict(temperature=-1.0), "temperature must be > 0"),
    (dict(distillation_weight=1.5), "distillation_weight"),
    (dict(hidden_state_loss_weight=-1), "hidden_state_loss_weight"),
    (dict(layer_mapping="every-other"), "layer_mapping"),
])
def test_config_rejects_bad_values(tmp_path, kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        config(tmp_path, **kwargs)


# -- make_student ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra", "distilbert"])
def test_make_student_copies_chosen_teacher_layers(model_type):
    teacher = tiny_model(model_type, num_layers=6)
    student = make_student(teacher, layer_indices=[1, 3, 5], hidden_act="relu")
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    layers = {"distilbert": "distilbert.transformer.layer"}.get(model_type, f"{teacher.base_model_prefix}.encoder.layer")
    for new, old in enumerate([1, 3, 5]):
        for key in (k for k in s_sd if k.startswith(f"{layers}.{new}.")):
            assert torch.equal(s_sd[key], t_sd[key.replace(f"{layers}.{new}.", f"{layers}.{old}.", 1)])
    non_layer = [k for k in s_sd if not k.startswith(layers)]
    assert non_layer and all(torch.equal(s_sd[k], t_sd[k]) for k in non_layer)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    act = "activation" if model_type == "distilbert" else "hidden_act"
    assert getattr(student.config, act) == "relu"
    record = compression_record(student)
    assert record["num_layers"] == 3 and record["steps"][0]["layers_from_teacher"] == [1, 3, 5]


def test_make_student_uniform_layers_and_errors():
    teacher = tiny_model("bert", num_layers=6)
    assert compression_record(make_student(teacher, num_layers=3))["steps"][0]["layers_from_teacher"] == [0, 2, 4]
    with pytest.raises(FastFormersError, match="between 1 and"):
        make_student(teacher, num_layers=7)
    with pytest.raises(FastFormersError, match="distinct"):
        make_student(teacher, layer_indices=[0, 0])


def test_make_student_from_general_checkpoint(tmp_path):
    teacher = tiny_model("bert", num_layers=4)
    general = tiny_model("bert", num_layers=2, num_labels=3, seed=3)
    general.save_pretrained(tmp_path / "general")
    student = make_student(teacher, general_checkpoint=tmp_path / "general")
    assert student.config.num_labels == 2 and student.config.id2label == teacher.config.id2label
    assert compression_record(student)["steps"][-1]["recipe"] == "task_agnostic"


# -- training ----------------------------------------------------------------------------------------------

def _logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


def test_distillation_learns_from_teacher_and_teacher_stays_frozen(tmp_path, trained_teacher, sentiment_data, tokenizer):
    student = make_student(trained_teacher, num_layers=2)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in trained_teacher.state_dict().items()}
    trainer = DistillationTrainer(model=student, teacher_model=trained_teacher,
                                  args=config(tmp_path, distillation_weight=0.7, max_steps=60),
                                  train_dataset=sentiment_data["train"], eval_dataset=sentiment_data["validation"],
                                  processing_class=tokenizer, compute_metrics=compute_metrics)
    trainer.train()
    soft = _logged(trainer, "soft_loss")
    assert len(soft) >= 4 and soft[-1] < soft[0]
    assert _logged(trainer, "hard_loss")
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in trained_teacher.state_dict().items())
    assert not trained_teacher.training and not any(p.requires_grad for p in trained_teacher.parameters())
    metrics = trainer.evaluate()
    assert "eval_soft_loss" in metrics and metrics["eval_accuracy"] > 0.6
    trainer.save_model()
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(saved) == set(student.state_dict())  # the student only: no teacher, no projections
    record = compression_record(tmp_path / "out")
    assert [s["step"] for s in record["steps"]] == ["student", "distillation"]
    trainer.create_model_card(license="apache-2.0")  # what trainer.push_to_hub() publishes: our card
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: apache-2.0" in card and "distillation" in card.lower() and "fastformers" in card.lower()


@pytest.mark.parametrize("hidden,attention,width", [(1.0, 0.0, 64), (1.0, 1.0, 32), (0.0, 1.0, 32)])
def test_intermediate_losses(tmp_path, trained_teacher, sentiment_data, tokenizer, hidden, attention, width):
    student = tiny_model("bert", num_layers=2, hidden_size=width, num_heads=4, intermediate_size=64)
    trainer = DistillationTrainer(model=student, teacher_model=trained_teacher,
                                  args=config(tmp_path, hidden_state_loss_weight=hidden, attention_loss_weight=attention,
                                              max_steps=20),
                                  train_dataset=sentiment_data["train"], processing_class=tokenizer)
    assert (trainer.projections is not None) == (hidden > 0 and width != 64)
    trainer.train()
    for key, weight in (("hidden_loss", hidden), ("attention_loss", attention)):
        values = _logged(trainer, key)
        assert bool(values) == (weight > 0)
        assert all(math.isfinite(v) for v in values)
    if hidden:
        assert _logged(trainer, "hidden_loss")[-1] < _logged(trainer, "hidden_loss")[0]
    if trainer.projections is not None:
        in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in in_optimizer for p in trainer.projections.parameters())


def test_cached_teacher_logits_need_no_teacher_forward(tmp_path, trained_teacher, sentiment_data, tokenizer):
    train = cache_teacher_logits(trained_teacher, sentiment_data["train"], tokenizer,
                                 cache_file=tmp_path / "logits.npy")
    assert (tmp_path / "logits.npy").exists() and "teacher_logits" in train.column_names
    for i in (0, 7, 123):  # computed in length-sorted batches, stored in the dataset's order
        row = sentiment_data["train"][i]
        with torch.no_grad():
            direct = trained_teacher(input_ids=torch.tensor([row["input_ids"]])).logits[0]
        assert torch.allclose(torch.tensor(train[i]["teacher_logits"]), direct, atol=1e-4)
    # second call reads the file: works without a teacher or tokenizer
    again = cache_teacher_logits(None, sentiment_data["train"], cache_file=tmp_path / "logits.npy")
    assert again["teacher_logits"][:3] == train["teacher_logits"][:3]

    calls = []
    handle = trained_teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        trainer = DistillationTrainer(model=make_student(trained_teacher, num_layers=2), teacher_model=trained_teacher,
                                      args=config(tmp_path, max_steps=10), train_dataset=train,
                                      processing_class=tokenizer)
        trainer.train()
    finally:
        handle.remove()
    assert calls == [] and _logged(trainer, "soft_loss")
    # and with no teacher at all
    DistillationTrainer(model=make_student(trained_teacher, num_layers=2), args=config(tmp_path, max_steps=2),
                        train_dataset=train, processing_class=tokenizer).train()


def test_teacher_loaded_from_path(tmp_path, trained_teacher, sentiment_data, tokenizer):
    trained_teacher.save_pretrained(tmp_path / "teacher")
    trainer = DistillationTrainer(model=make_student(trained_teacher, num_layers=1),
                                  teacher_model=str(tmp_path / "teacher"), args=config(tmp_path, max_steps=2),
                                  train_dataset=sentiment_data["train"], processing_class=tokenizer)
    assert trainer.teacher is not None and not trainer.teacher.training
    trainer.train()


# -- bad input -------------------------------------------------------------------------------------------------

def _bad_cases():
    return {
        "vocabulary": (lambda t: tiny_model("bert", num_layers=2, vocab_size=500), {}, "vocabulary of"),
        "labels": (lambda t: tiny_model("bert", num_layers=2, num_labels=3), {}, "predicts 2 labels"),
        "deeper": (lambda t: tiny_model("bert", num_layers=6, hidden_size=64, intermediate_size=128),
                   dict(hidden_state_loss_weight=1.0), "no layer mapping exists"),
        "wider": (lambda t: tiny_model("bert", num_layers=2, hidden_size=128, intermediate_size=128),
                  dict(hidden_state_loss_weight=1.0), "wider than the teacher"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_teacher_student_pairs_are_refused(tmp_path, trained_teacher, sentiment_data, case):
    make, kw, match = _bad_cases()[case]
    with pytest.raises(FastFormersError, match=match):
        DistillationTrainer(model=make(trained_teacher), teacher_model=trained_teacher, args=config(tmp_path, **kw),
                            train_dataset=sentiment_data["train"])


def test_different_tokenizers_are_refused(tmp_path, trained_teacher, sentiment_data, tokenizer):
    from fastformers_hf.testing import tiny_tokenizer

    other = tiny_tokenizer(words=[f"w{i}" for i in range(len(tokenizer) - 5)])
    assert len(other) == len(tokenizer)
    with pytest.raises(FastFormersError, match="different tokenizers"):
        DistillationTrainer(model=make_student(trained_teacher, num_layers=2), teacher_model=trained_teacher,
                            args=config(tmp_path), train_dataset=sentiment_data["train"], processing_class=other,
                            teacher_processing_class=tokenizer)


def test_dataset_without_labels_is_refused(tmp_path, trained_teacher, sentiment_data):
    with pytest.raises(FastFormersError, match="no label column"):
        DistillationTrainer(model=make_student(trained_teacher, num_layers=2), teacher_model=trained_teacher,
                            args=config(tmp_path, distillation_weight=0.5),
                            train_dataset=sentiment_data["train"].remove_columns("labels"))


def test_output_dir_holding_another_model_is_refused(tmp_path, trained_teacher, sentiment_data):
    from fastformers_hf.utils.io import write_output_record

    tiny_model("roberta", num_layers=3).save_pretrained(tmp_path / "out")
    kwargs = dict(model=make_student(trained_teacher, num_layers=2), teacher_model=trained_teacher,
                  train_dataset=sentiment_data["train"])
    for overwrite in (False, True):  # a folder we did not write is never replaced, even when asked
        with pytest.raises(FastFormersError, match="did not write"):
            DistillationTrainer(args=config(tmp_path, overwrite_output_dir=overwrite), **kwargs)
    write_output_record(tmp_path / "out", "distill")  # an earlier distillation of ours, of another shape
    with pytest.raises(FastFormersError, match="already holds a different model"):
        DistillationTrainer(args=config(tmp_path), **kwargs)
    DistillationTrainer(args=config(tmp_path, overwrite_output_dir=True), **kwargs)  # explicit overwrite is fine


def test_failed_save_leaves_no_half_written_model(tmp_path, trained_teacher, sentiment_data, tokenizer, monkeypatch):
    trainer = DistillationTrainer(model=make_student(trained_teacher, num_layers=2), teacher_model=trained_teacher,
                                  args=config(tmp_path, max_steps=1), train_dataset=sentiment_data["train"],
                                  processing_class=tokenizer)
    trainer.train()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", broken)
    with pytest.raises(OSError):
        trainer.save_model()
    out = tmp_path / "out"
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".saving-")]
