"""Distillation and pruning for every kind of head (a table over :data:`fastformers_hf.tasks.kinds.KINDS`)."""
import copy
import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from fastformers_hf import DistillationConfig, DistillationTrainer, FastFormersError, cache_teacher_logits, make_student
from fastformers_hf.distillation.compatibility import check_same_kind
from fastformers_hf.distillation.losses import LOSSES, loss_for, make_collator, token_mask
from fastformers_hf.distillation.trainer import TeacherOutputsCollator, teacher_columns
from fastformers_hf.pruning import current_shape, prune, scoring_dataloader
from fastformers_hf.tasks.kinds import KINDS, kind_of
from fastformers_hf.testing import tiny_config

NUM_LABELS = {"regression": 1, "token_classification": 3}
LABEL_COLUMNS = {"question_answering": ["start_positions", "end_positions"]}


def _ids(rng, vocab, length):
    return [2] + rng.integers(5, vocab, length - 2).tolist() + [3]  # [CLS] ... [SEP]


def _labels(kind, rng, i, length):
    """Random labels of each kind for one row of ``length`` tokens."""
    return {
        "sequence_classification": lambda: {"labels": i % 2},
        "regression": lambda: {"labels": float(rng.normal())},
        "multiple_choice": lambda: {"labels": i % 2},
        # Special tokens and "sub-word continuations" carry no label.
        "token_classification": lambda: {"labels": [-100] + [int(x) if x < 3 else -100
                                                             for x in rng.integers(0, 4, length - 2)] + [-100]},
        "question_answering": lambda: _span(int(rng.integers(1, length - 1)), length),
    }[kind]()


def _span(start, length):
    return {"start_positions": start, "end_positions": min(start + 1, length - 2)}  # inside the window


def make_data(kind, vocab, n=16, seed=0):
    """Tokenised rows of varied length (dynamic padding), with labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(6, 13))
        if kind == "multiple_choice":  # (choices, T): two candidate continuations
            ids = [_ids(rng, vocab, length), _ids(rng, vocab, length + 1)]
            row = {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
        else:
            row = {"input_ids": _ids(rng, vocab, length), "attention_mask": [1] * length}
        rows.append({**row, **_labels(kind, rng, i, length)})
    return Dataset.from_list(rows)


def make_model(kind, seed=0, **kw):
    torch.manual_seed(seed)
    # A wide initialisation, so random models disagree clearly (the default 0.02 gives near-uniform outputs).
    kw = {"initializer_range": 0.3, "num_layers": 2, "num_labels": NUM_LABELS.get(kind, 2), **kw}
    config = tiny_config("bert", **kw)
    return KINDS[kind].model_class().from_config(config).eval()


def collate(kind, tokenizer, rows):
    return make_collator(kind, tokenizer)([dict(r) for r in rows])


def args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=8,
                    learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
                    dataloader_pin_memory=False, seed=0, distillation_weight=0.5)
    return DistillationConfig(**{**defaults, **kw})


def outputs(model, batch, kind):
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    out = model(**inputs)
    return {name: out[name] for name in KINDS[kind].outputs}


ALL = list(KINDS)


# -- the table -----------------------------------------------------------------------------------------------

def test_every_kind_has_a_loss_row():
    assert set(LOSSES) == set(KINDS)


@pytest.mark.parametrize("kind", ALL)
def test_make_student_keeps_the_head(kind):
    teacher = make_model(kind)
    student = make_student(teacher, num_layers=1, hidden_act="relu")
    assert type(student) is type(teacher) and kind_of(student).name == kind
    head = {k: v for k, v in teacher.state_dict().items() if not k.startswith(teacher.base_model_prefix)}
    assert head and all(torch.equal(student.state_dict()[k], v) for k, v in head.items())


def test_make_student_from_general_checkpoint_gets_the_teachers_head(tmp_path):
    make_model("sequence_classification", seed=3).save_pretrained(tmp_path / "general")
    student = make_student(make_model("question_answering"), general_checkpoint=tmp_path / "general")
    assert kind_of(student).name == "question_answering"


# -- the losses -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ALL)
def test_soft_loss_is_minimal_at_a_copy_and_larger_otherwise(kind, tokenizer):
    """At a copy of the teacher the soft loss is its minimum (zero gradient; the teacher's entropy for the soft
    cross-entropies, zero for regression's MSE); any other student pays more."""
    data = make_data(kind, len(tokenizer))
    batch = collate(kind, tokenizer, data.select(range(6)))
    teacher, other = make_model(kind), make_model(kind, seed=1)
    soft = loss_for(kind).soft_loss
    with torch.no_grad():
        t_out = outputs(teacher, batch, kind)
        floor = soft(t_out, t_out, batch, 2.0)
        assert float(soft(outputs(other, batch, kind), t_out, batch, 2.0) - floor) > 1e-4
    student = copy.deepcopy(teacher)
    loss = soft(outputs(student, batch, kind), t_out, batch, 2.0)
    assert float(loss.detach() - floor) == pytest.approx(0.0, abs=1e-6)
    if kind == "regression":
        assert float(loss.detach()) == 0.0
    loss.backward()
    assert max(p.grad.abs().max() for p in student.parameters() if p.grad is not None) < 1e-5


def _perturbed(out, where):
    """``out`` with large random values at positions ``where`` (B, T)."""
    g = torch.Generator().manual_seed(0)
    return {k: torch.where(where.reshape(*where.shape, *[1] * (v.dim() - 2)), 50 * torch.randn(v.shape, generator=g), v)
            for k, v in out.items()}


@pytest.mark.parametrize("kind,labelled", [("token_classification", True), ("token_classification", False),
                                           ("question_answering", False)])
def test_ignored_positions_do_not_change_the_loss(kind, labelled, tokenizer):
    data = make_data(kind, len(tokenizer))
    batch = dict(collate(kind, tokenizer, data.select(range(6))))
    if not labelled:
        for column in ("labels", *LABEL_COLUMNS.get(kind, [])):
            batch.pop(column, None)
    padding = batch["attention_mask"] == 0  # (B, T)
    assert padding.any()
    with torch.no_grad():
        s, t = outputs(make_model(kind, seed=1), batch, kind), outputs(make_model(kind), batch, kind)
    soft = loss_for(kind).soft_loss
    base = soft(s, t, batch, 2.0)
    ignored = padding | (batch["labels"] == -100) if labelled else padding
    assert torch.equal(soft(_perturbed(s, ignored), _perturbed(t, ignored), batch, 2.0), base)
    if kind == "token_classification":
        counted = token_mask(batch, s["logits"])
        assert torch.equal(counted, ~ignored)
        # and counted positions do change it
        assert not torch.equal(soft(_perturbed(s, counted), t, batch, 2.0), base)


def test_soft_losses_survive_low_temperature(tokenizer):
    data = make_data("question_answering", len(tokenizer))
    batch = collate("question_answering", tokenizer, data.select(range(6)))
    with torch.no_grad():
        s, t = outputs(make_model("question_answering", seed=1), batch, "question_answering"), \
            outputs(make_model("question_answering"), batch, "question_answering")
    assert math.isfinite(float(loss_for("question_answering").soft_loss(s, t, batch, 0.25)))


# -- training, every kind ----------------------------------------------------------------------------------------

def _logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


MODES = {  # teacher object?, cached outputs?, hidden-state loss weight, attention loss weight, labels kept?
    "teacher": (True, False, 0.0, 0.0, True),
    "teacher+hidden+attention": (True, False, 1.0, 1.0, True),
    "cached": (True, True, 0.0, 0.0, True),
    "cached+hidden": (True, True, 1.0, 0.0, True),
    "cached-only": (False, True, 0.0, 0.0, False),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ALL)
def test_distillation_trains_every_kind(kind, mode, tmp_path, tokenizer):
    with_teacher, cached, hidden, attention, labelled = MODES[mode]
    teacher = make_model(kind, hidden_size=48, intermediate_size=64)
    student = make_model(kind, seed=1, num_layers=1)  # narrower: the hidden-state loss learns a projection
    train = make_data(kind, len(tokenizer))
    if cached:
        train = cache_teacher_logits(teacher, train, tokenizer, batch_size=5)
    if not labelled:
        train = train.remove_columns([c for c in ("labels", *LABEL_COLUMNS.get(kind, [])) if c in train.column_names])
    calls = []
    handle = teacher.register_forward_hook(lambda *a: calls.append(1))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    try:
        trainer = DistillationTrainer(model=student, teacher_model=teacher if with_teacher else None,
                                      args=args(tmp_path, hidden_state_loss_weight=hidden,
                                                attention_loss_weight=attention,
                                                distillation_weight=0.5 if labelled else 1.0),
                                      train_dataset=train, processing_class=tokenizer)
        trainer.train()
    finally:
        handle.remove()
    losses = _logged(trainer, "loss") + _logged(trainer, "soft_loss")
    assert len(_logged(trainer, "soft_loss")) == 3 and all(math.isfinite(v) for v in losses)
    assert bool(_logged(trainer, "hard_loss")) == labelled
    assert bool(_logged(trainer, "hidden_loss")) == (hidden > 0)
    assert bool(_logged(trainer, "attention_loss")) == (attention > 0)
    assert bool(calls) == (not cached or hidden > 0)  # cached outputs: the teacher runs only for hidden states
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    if mode == "teacher":  # evaluation returns the kind's outputs (e.g. start/end logits) and logs each term
        metrics = trainer.evaluate(train)
        assert math.isfinite(metrics["eval_loss"]) and "eval_soft_loss" in metrics and "eval_hard_loss" in metrics
        prediction = trainer.predict(train.select(range(5)))
        shapes = [p.shape[:2] for p in (prediction.predictions if isinstance(prediction.predictions, tuple)
                                        else (prediction.predictions,))]
        assert len(shapes) == len(KINDS[kind].outputs) and all(s[0] == 5 for s in shapes)


@pytest.mark.parametrize("kind", ["question_answering", "token_classification"])
def test_cached_loss_equals_live_teacher_loss(kind, tmp_path, tokenizer):
    """The float16 per-position cache, padded by the collator, gives the live teacher's soft loss."""
    teacher, student = make_model(kind), make_model(kind, seed=1, num_layers=1)
    data = make_data(kind, len(tokenizer), n=8)
    cached = cache_teacher_logits(teacher, data, tokenizer, batch_size=3)
    terms = []
    for train, t in ((data, teacher), (cached, None)):
        trainer = DistillationTrainer(model=student, teacher_model=t, args=args(tmp_path, distillation_weight=1.0),
                                      train_dataset=train, processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            trainer.compute_loss(student, dict(batch))
        terms.append(trainer._loss_terms["eval"]["soft_loss"][-1])  # the student is in eval mode: no dropout
    assert terms[1] == pytest.approx(terms[0], abs=1e-3)


# -- the teacher cache --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["question_answering", "token_classification"])
def test_cache_stores_own_length_float16_rows(kind, tmp_path, tokenizer):
    teacher = make_model(kind)
    data = make_data(kind, len(tokenizer), n=10)
    path = tmp_path / "teacher.npy"
    cached = cache_teacher_logits(teacher, data, tokenizer, batch_size=4, cache_file=path)
    columns = teacher_columns(KINDS[kind])
    assert path.exists() and set(columns.values()) <= set(cached.column_names)
    for name, column in columns.items():
        assert "float16" in str(cached.features[column])
        for i in (0, 3, 9):  # computed in length-sorted batches, stored in the dataset's order
            ids = data[i]["input_ids"]
            with torch.no_grad():
                direct = teacher(input_ids=torch.tensor([ids]))[name][0]  # (L,) or (L, C)
            row = torch.tensor(cached[i][column])
            assert row.shape == direct.shape and torch.allclose(row, direct, atol=2e-3)
    again = cache_teacher_logits(None, data, cache_file=path)  # read back: no teacher, no tokenizer
    assert all(again[c][:4] == cached[c][:4] for c in columns.values())
    # a file of other rows is not reused
    with pytest.raises(FastFormersError, match="needs the tokenizer"):
        cache_teacher_logits(None, data.select(range(5)), cache_file=path)

    collator = TeacherOutputsCollator(make_collator(kind, tokenizer),
                                      list(columns.values()), per_position=True)
    batch = collator([cached[i] for i in (0, 1, 2)])
    lengths = [len(cached[i]["input_ids"]) for i in (0, 1, 2)]
    for column in columns.values():
        value = batch[column]  # (B, T) or (B, T, C)
        assert value.shape[:2] == batch["input_ids"].shape and value.dtype == torch.float32
        for j, length in enumerate(lengths):
            assert (value[j, length:] == 0).all()


def test_classification_cache_is_unchanged_float32(tokenizer):
    teacher = make_model("sequence_classification")
    cached = cache_teacher_logits(teacher, make_data("sequence_classification", len(tokenizer), n=6), tokenizer)
    assert "float32" in str(cached.features["teacher_logits"]) and len(cached[0]["teacher_logits"]) == 2


# -- compatibility --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("teacher_kind,student_kind", [("question_answering", "sequence_classification"),
                                                       ("sequence_classification", "regression"),
                                                       ("token_classification", "multiple_choice")])
def test_kind_mismatch_is_refused(teacher_kind, student_kind, tmp_path, tokenizer):
    teacher, student = make_model(teacher_kind), make_model(student_kind)
    with pytest.raises(FastFormersError, match=f"{teacher_kind}.*{student_kind}"):
        check_same_kind(teacher, student)
    with pytest.raises(FastFormersError, match=f"{teacher_kind}.*{student_kind}"):
        DistillationTrainer(model=student, teacher_model=teacher, args=args(tmp_path),
                            train_dataset=make_data(student_kind, len(tokenizer), n=4))


def test_token_label_lists_are_compared_and_qa_has_none(tmp_path, tokenizer):
    teacher = make_model("token_classification")
    other = make_model("token_classification", num_labels=4)
    with pytest.raises(FastFormersError, match="predicts 3 labels"):
        DistillationTrainer(model=other, teacher_model=teacher, args=args(tmp_path),
                            train_dataset=make_data("token_classification", len(tokenizer), n=4))
    qa = make_model("question_answering")
    DistillationTrainer(model=make_student(qa, num_layers=1), teacher_model=qa, args=args(tmp_path),
                        train_dataset=make_data("question_answering", len(tokenizer), n=4))


def test_qa_without_span_columns_is_refused(tmp_path, tokenizer):
    qa = make_model("question_answering")
    data = make_data("question_answering", len(tokenizer), n=4).remove_columns(["end_positions"])
    with pytest.raises(FastFormersError, match="'end_positions'"):
        DistillationTrainer(model=make_student(qa, num_layers=1), teacher_model=qa, args=args(tmp_path),
                            train_dataset=data)


# -- pruning ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["question_answering", "token_classification"])
def test_first_order_pruning(kind, tokenizer):
    model = make_model(kind)
    data = make_data(kind, len(tokenizer), n=8)
    loader = scoring_dataloader(data, tokenizer, batch_size=4, model=model)
    assert set(LABEL_COLUMNS.get(kind, ["labels"])) <= set(next(iter(loader)))
    prune(model, heads_per_layer=2, method="first_order", dataloader=loader)
    assert current_shape(model)["heads_per_layer"] == [2, 2]
    batch = next(iter(loader))
    out = model(**batch)
    assert math.isfinite(float(out.loss.detach()))
    # no labels: the model's own predictions are the targets
    unlabelled = scoring_dataloader(data.remove_columns(LABEL_COLUMNS.get(kind, ["labels"])), tokenizer,
                                    batch_size=4, model=model)
    prune(model, heads_per_layer=1, method="first_order", dataloader=unlabelled)
    assert current_shape(model)["heads_per_layer"] == [1, 1]
