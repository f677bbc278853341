import copy
import math

import pytest
import torch
from transformers import (AutoModelForSequenceClassification, GPT2Config, GPT2ForSequenceClassification, Trainer,
                          TrainerCallback, TrainingArguments)

import fastformers_hf
from fastformers_hf.compat import is_transformers_5
from fastformers_hf.hub_code import MODELING_FILE
from fastformers_hf import (DistillationConfig, DistillationTrainer, FastFormersError, compression_record, load_pruned,
                            prune)
from fastformers_hf.architectures import get_layers, get_spec
from fastformers_hf.pruning import (
    METHODS,
    current_shape,
    held_out_split,
    importance_scores,
    resolve_target,
    scoring_dataloader,
)
from fastformers_hf.testing import tiny_model
from trainer_callbacks import StructuredPruningCallback

ARCHS = ["bert", "roberta", "xlm-roberta", "electra", "distilbert"]


def batch(seed=0, n=4, length=10, vocab=30):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, 7:] = 0  # one padded row
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(n) % 2}


def inputs(b):
    return {k: v for k, v in b.items() if k != "labels"}


def logits(model, b):
    with torch.no_grad():
        return model(**inputs(b)).logits


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def _config(model):
    # transformers 5's Trainer sets use_cache=False when training starts; that is the Trainer's change, not ours.
    return {k: v for k, v in model.config.to_dict().items() if k != "use_cache"}


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, _config(model)


def assert_unchanged(model, snap):
    state, cfg = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    assert all(now[k].shape == state[k].shape and torch.equal(now[k], state[k]) for k in state)
    assert _config(model) == cfg


def gated_logits(model, keep_heads, keep_ffn, b):
    """Logits of the *unpruned* model with every removed head / neuron multiplied by zero (what pruning removes)."""
    spec, hooks = get_spec(model), []
    for layer, heads, neurons in zip(get_layers(model), keep_heads, keep_ffn):
        n_heads = getattr(layer.get_submodule(spec.self_attention), spec.module_num_heads_attr)
        hm = torch.zeros(n_heads)
        hm[heads] = 1
        width = layer.get_submodule(spec.intermediate).out_features
        fm = torch.zeros(width)
        fm[neurons] = 1
        hooks.append(layer.get_submodule(spec.attention_output).register_forward_pre_hook(
            lambda m, a, hm=hm: ((a[0].unflatten(-1, (len(hm), -1)) * hm[:, None]).flatten(-2),)))
        hooks.append(layer.get_submodule(spec.output).register_forward_pre_hook(lambda m, a, fm=fm: (a[0] * fm,)))
    try:
        return logits(model, b)
    finally:
        for h in hooks:
            h.remove()


# -- pruning per architecture x method ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_type", ARCHS)
def test_prune_equals_masking_and_shrinks(model_type, method, tmp_path):
    model = tiny_model(model_type)  # 4 layers, 4 heads, FFN 64
    reference = copy.deepcopy(model)
    b = batch()
    before = n_params(model)
    prune(model, heads_per_layer=2, ffn_width=0.25, method=method, dataloader=[b, batch(1)])

    assert current_shape(model) == {"num_layers": 4, "heads_per_layer": [2] * 4, "ffn_width_per_layer": [16] * 4}
    assert n_params(model) < before
    spec = get_spec(model)
    for layer in get_layers(model):  # physically smaller, no zero rows left behind
        assert layer.get_submodule(spec.query).weight.shape[0] == 2 * 8
        assert layer.get_submodule(spec.attention_output).weight.shape[1] == 2 * 8
        assert layer.get_submodule(spec.intermediate).weight.abs().sum(1).min() > 0
    # the sliced model computes exactly what the unpruned one computes with the removed units gated to zero
    keep_heads = _kept_heads(reference, model)
    keep_ffn = _kept_neurons(reference, model)
    assert torch.allclose(logits(model, b), gated_logits(reference, keep_heads, keep_ffn, b), atol=1e-5)

    record = compression_record(model)
    assert record["heads_per_layer"] == [2] * 4 and record["ffn_width_per_layer"] == [16] * 4
    assert record["steps"][-1]["step"] == "structured_pruning" and record["steps"][-1]["method"] == method


def _kept_heads(reference, pruned):
    """Which original heads survived, found by matching each kept head's query rows (transformers 5 keeps no
    ``config.pruned_heads`` to read them from)."""
    spec, kept = get_spec(reference), []
    for ref_layer, layer in zip(get_layers(reference), get_layers(pruned)):
        size = getattr(layer.get_submodule(spec.self_attention), spec.module_head_size_attr)
        w_ref = ref_layer.get_submodule(spec.query).weight.unflatten(0, (-1, size))  # (heads, head_dim, hidden)
        w = layer.get_submodule(spec.query).weight.unflatten(0, (-1, size))
        kept.append([int((w_ref - head).abs().sum((1, 2)).argmin()) for head in w])
    return kept


def _kept_neurons(reference, pruned):
    """Which original FFN neurons survived, found by matching intermediate weight rows."""
    spec, kept = get_spec(reference), []
    for ref_layer, layer in zip(get_layers(reference), get_layers(pruned)):
        w_ref = ref_layer.get_submodule(spec.intermediate).weight
        w = layer.get_submodule(spec.intermediate).weight
        kept.append([int((w_ref - row).abs().sum(1).argmin()) for row in w])
    return kept


@pytest.mark.parametrize("model_type", ARCHS)
def test_uniform_round_trip_with_plain_from_pretrained(model_type, tmp_path):
    model = tiny_model(model_type)
    b = batch()
    prune(model, heads_per_layer=[1, 2, 3, 4], ffn_width=24, method="first_order", dataloader=[b])
    prune(model, heads_per_layer=1, ffn_width=0.5, method="magnitude")  # iterative: the bookkeeping adds up
    model.save_pretrained(tmp_path)
    if is_transformers_5():  # 5.x has no pruned_heads: only our loader (or the saved remote code) rebuilds it
        with pytest.raises(RuntimeError, match="mismatch"):
            AutoModelForSequenceClassification.from_pretrained(tmp_path)
        loaders = [load_pruned(tmp_path)]
    else:
        loaders = [AutoModelForSequenceClassification.from_pretrained(tmp_path).eval(), load_pruned(tmp_path)]
    for loaded in loaders:
        assert torch.equal(logits(loaded, b), logits(model, b))
        assert n_params(loaded) == n_params(model) < n_params(tiny_model(model_type))
        assert current_shape(loaded) == current_shape(model)
    record = compression_record(tmp_path)
    assert record["heads_per_layer"] == [1] * 4 and record["ffn_width_per_layer"] == [12] * 4
    assert [s["step"] for s in record["steps"]] == ["structured_pruning"] * 2
    assert record["steps"][0]["pruned_from"]["heads_per_layer"] == [4] * 4


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_per_layer_ffn_widths_need_load_pruned(model_type, tmp_path):
    model = tiny_model(model_type)
    b = batch()
    prune(model, heads_per_layer=[4, 3, 2, 1], ffn_width=[8, 64, 16, 0.5], method="random")
    model.save_pretrained(tmp_path)
    loaded = load_pruned(tmp_path)
    assert torch.equal(logits(loaded, b), logits(model, b))
    assert current_shape(loaded)["ffn_width_per_layer"] == [8, 64, 16, 32]
    assert compression_record(tmp_path)["ffn_width_per_layer"] == [8, 64, 16, 32]
    # a later step (e.g. distillation) that does not pass a shape keeps the recorded per-layer widths
    fastformers_hf.shape_record.update_record(loaded.config, {"step": "distillation"})
    assert compression_record(loaded)["ffn_width_per_layer"] == [8, 64, 16, 32]
    # plain from_pretrained cannot build uneven widths: it must fail, never load silently
    with pytest.raises(RuntimeError, match="mismatch"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)


def test_load_pruned_rejects_mismatched_weights(tmp_path):
    model = tiny_model("bert")
    prune(model, heads_per_layer=2, method="random")
    model.save_pretrained(tmp_path)
    other = tiny_model("bert")
    prune(other, heads_per_layer=3, method="random")
    other.save_pretrained(tmp_path / "other")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(FastFormersError, match=r"heads per layer \[2, 2, 2, 2\].* has shape \(32, 24\) in the weights "
                                               r"but \(32, 16\) by the record"):
        load_pruned(tmp_path)


# -- scoring -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_scores_pick_the_important_units(method):
    model = tiny_model("bert")
    spec = get_spec(model)
    layer = get_layers(model)[0]
    with torch.no_grad():  # head 1 and neuron 5 of layer 0 contribute nothing
        layer.get_submodule(spec.attention_output).weight[:, 8:16] = 0
        layer.get_submodule(spec.output).weight[:, 5] = 0
        layer.get_submodule(spec.intermediate).weight[5] = 0
        layer.get_submodule(spec.intermediate).bias[5] = 0
    scores = importance_scores(model, method, [batch(0), batch(1)], normalize=True)
    assert [len(s) for s in scores.heads] == [4] * 4 and [len(s) for s in scores.ffn] == [64] * 4
    assert all(math.isclose(float(s.norm()), 1.0, rel_tol=1e-5) for s in scores.heads + scores.ffn)
    if method == "random":
        assert not torch.equal(scores.heads[0], importance_scores(model, "random", seed=1).heads[0])
        return
    assert int(scores.heads[0].argmin()) == 1 and float(scores.ffn[0][5]) == pytest.approx(0.0, abs=1e-6)
    reference = copy.deepcopy(model)
    prune(model, heads_per_layer=3, ffn_width=63, scores=scores)
    assert _kept_heads(reference, model)[0] == [0, 2, 3]


def test_first_order_score_is_the_gate_gradient():
    """Check one head's score against d loss / d gate computed by finite differences."""
    model = tiny_model("bert")
    b = batch()
    score = importance_scores(model, "first_order", [b], normalize=False).heads[2][1]
    spec = get_spec(model)
    out = get_layers(model)[2].get_submodule(spec.attention_output)

    def loss_with_gate(g):
        gate = torch.ones(4, dtype=torch.float64)
        gate[1] = g
        h = out.register_forward_pre_hook(lambda m, a: ((a[0].unflatten(-1, (4, -1)) * gate[:, None].float()).flatten(-2),))
        try:
            with torch.no_grad():
                return float(model(**b).loss)
        finally:
            h.remove()

    eps = 1e-3
    fd = (loss_with_gate(1 + eps) - loss_with_gate(1 - eps)) / (2 * eps)
    assert float(score) == pytest.approx(abs(fd), rel=2e-2, abs=1e-5)


# -- bad input: clear errors, model untouched ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(heads_per_layer=0), "at least 1"),
    (dict(ffn_width=0), "at least 1"),
    (dict(heads_per_layer=5), "only has 4"),
    (dict(ffn_width=65), "only has 64"),
    (dict(heads_per_layer=0.0), r"ratio .* must be in \(0, 1\]"),
    (dict(ffn_width=1.5), r"ratio .* must be in \(0, 1\]"),
    (dict(heads_per_layer=-0.5), r"ratio .* must be in \(0, 1\]"),
    (dict(heads_per_layer=[2, 2, 2]), "3 entries but the model has 4 layers"),
    (dict(ffn_width=[8, 8, 8, 8, 8]), "5 entries"),
    (dict(heads_per_layer="half"), "must be an int"),
    (dict(heads_per_layer=2, method="taylor"), "unknown pruning method"),
    (dict(heads_per_layer=2, method="first_order"), "needs dataloader"),
    (dict(heads_per_layer=2, method="first_order", dataloader=[]), "no batches"),
])
def test_bad_input_is_rejected_before_any_change(kwargs, match):
    model = tiny_model("bert")
    snap = snapshot(model)
    kwargs.setdefault("method", "magnitude")
    with pytest.raises(FastFormersError, match=match):
        prune(model, **kwargs)
    assert_unchanged(model, snap)
    assert current_shape(model)["heads_per_layer"] == [4] * 4


def test_failed_scoring_leaves_model_untouched():
    model = tiny_model("bert").train()
    snap = snapshot(model)

    def broken():
        yield batch()
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        prune(model, heads_per_layer=2, method="first_order", dataloader=broken())
    assert_unchanged(model, snap)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_scores_for_another_shape_are_rejected():
    model = tiny_model("bert")
    scores = importance_scores(model, "magnitude")
    prune(model, heads_per_layer=2, method="random")
    snap = snapshot(model)
    with pytest.raises(FastFormersError, match="score the model as it is now"):
        prune(model, heads_per_layer=1, scores=scores)
    assert_unchanged(model, snap)


def test_unsupported_model_is_named():
    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=30, n_positions=16))
    snap = snapshot(model)
    with pytest.raises(FastFormersError, match="not supported: gpt2; supported: bert, distilbert, electra"):
        prune(model, heads_per_layer=1, method="random")
    assert_unchanged(model, snap)


@pytest.mark.parametrize("target,current,expected", [
    (None, [4, 4], [4, 4]),
    (2, [4, 4], [2, 2]),
    (0.5, [4, 3], [2, 2]),  # round(1.5) == 2
    (0.1, [4, 4], [1, 1]),  # never below one
    ([1, 1.0], [4, 3], [1, 3]),
])
def test_resolve_target(target, current, expected):
    assert resolve_target(target, current, "heads_per_layer") == expected


def test_held_out_split_separates_rows(sentiment_data):
    train, held = held_out_split(sentiment_data["train"], num_examples=50, seed=0)
    assert len(held) == 50 and len(train) == len(sentiment_data["train"]) - 50
    with pytest.raises(FastFormersError, match="num_examples"):
        held_out_split(sentiment_data["train"], num_examples=0)


# -- the callback --------------------------------------------------------------------------------------------------

class Recorder(TrainerCallback):
    """Keeps losses and a copy of the weights right after each prune step (runs after the pruning callback)."""

    def __init__(self, pruner):
        self.pruner, self.losses, self.after_prune, self.done_seen = pruner, [], None, 0

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.pruner.done != self.done_seen:
            self.done_seen = self.pruner.done
            self.after_prune = {k: v.clone() for k, v in model.state_dict().items()}

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def train_args(tmp_path, cls=TrainingArguments, **kw):
    defaults = dict(output_dir=str(tmp_path / "out"), max_steps=8, per_device_train_batch_size=16, learning_rate=1e-3,
                    logging_steps=1, report_to=[], save_strategy="no", dataloader_pin_memory=False, seed=0)
    return cls(**{**defaults, **kw})


def assert_optimizer_owns_model(trainer, model):
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} <= in_opt


@pytest.mark.parametrize("schedule,expected_heads,expected_ffn", [
    (dict(prune_at_step=3), [2] * 4, [16] * 4),
    (dict(prune_at_step=0), [2] * 4, [16] * 4),
    (dict(prune_at_step=2, num_prune_steps=2, prune_every=3), [2] * 4, [16] * 4),
])
def test_callback_prunes_mid_training_and_training_continues(schedule, expected_heads, expected_ffn, tmp_path,
                                                             sentiment_data, tokenizer):
    model = tiny_model("bert", vocab_size=len(tokenizer))
    train, held = held_out_split(sentiment_data["train"], num_examples=64)
    trainer = Trainer(model=model, args=train_args(tmp_path), train_dataset=train, processing_class=tokenizer)
    pruner = StructuredPruningCallback(heads_per_layer=0.5, ffn_width=16, scoring_dataset=held, **schedule)
    pruner.attach(trainer)
    recorder = Recorder(pruner)
    trainer.add_callback(recorder)
    shapes = []
    trainer.add_callback(type("S", (TrainerCallback,), {"on_step_end": lambda s, a, st, c, model=None, **k:
                                                        shapes.append(current_shape(model)["ffn_width_per_layer"][0])})())
    trainer.train()

    assert pruner.done == len(pruner.schedule)
    assert current_shape(model) == {"num_layers": 4, "heads_per_layer": expected_heads,
                                    "ffn_width_per_layer": expected_ffn}
    if schedule.get("num_prune_steps") == 2:  # halfway first (64 -> 40), then the final width
        assert shapes[1] == 40 and shapes[-1] == 16
    assert len(recorder.losses) == 8 and all(math.isfinite(x) for x in recorder.losses)
    assert_optimizer_owns_model(trainer, model)
    # training went on after the (last) prune: every weight moved since
    if recorder.after_prune is not None:
        now = model.state_dict()
        moved = [k for k, v in recorder.after_prune.items() if v.is_floating_point() and not torch.equal(v, now[k])]
        assert any("attention.self.query" in k for k in moved) and any("intermediate" in k for k in moved)
        assert any("classifier" in k for k in moved)
    steps = compression_record(model)["steps"]
    assert steps[-1]["step"] == "structured_pruning" and "trainer_step" in steps[-1]


def test_callback_keeps_schedule_position_and_adam_moments(tmp_path, sentiment_data, tokenizer):
    model = tiny_model("bert", vocab_size=len(tokenizer))
    trainer = Trainer(model=model, args=train_args(tmp_path, max_steps=6, warmup_steps=2), train_dataset=sentiment_data["train"],
                      processing_class=tokenizer)
    pruner = StructuredPruningCallback(heads_per_layer=2, method="magnitude", prune_at_step=4).attach(trainer)
    seen = {}

    class Peek(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 4:
                opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
                seen["lr"] = opt.param_groups[0]["lr"]
                seen["expected_lr"] = trainer.lr_scheduler.get_last_lr()[0]
                p = model.classifier.weight
                seen["classifier_moment"] = opt.state[p]["exp_avg"].abs().sum().item() if p in opt.state else 0.0
                q = get_layers(model)[0].attention.self.query.weight
                seen["query_moment_shape"] = tuple(opt.state[q]["exp_avg"].shape) if q in opt.state else None

    trainer.add_callback(Peek())
    trainer.train()
    assert pruner.done == 1
    assert seen["lr"] == pytest.approx(seen["expected_lr"]) and 0 < seen["lr"] < 1e-3  # decaying, not restarted
    assert seen["classifier_moment"] > 0  # Adam moments carried over
    assert seen["query_moment_shape"] == (16, 32)  # and sliced with the weights


def test_callback_with_distillation_from_the_unpruned_model(tmp_path, sentiment_data, tokenizer):
    student = tiny_model("bert", vocab_size=len(tokenizer))
    teacher = copy.deepcopy(student)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, train_dataset=sentiment_data["train"],
                                  args=train_args(tmp_path, cls=DistillationConfig, max_steps=6),
                                  processing_class=tokenizer)
    StructuredPruningCallback(heads_per_layer=1, ffn_width=0.25, prune_at_step=2, num_scoring_examples=64).attach(trainer)
    logged = []
    trainer.add_callback(type("L", (TrainerCallback,), {
        "on_log": lambda s, a, st, c, logs=None, **k: logged.append(logs)})())
    trainer.train()
    assert current_shape(student)["heads_per_layer"] == [1] * 4
    assert current_shape(teacher)["heads_per_layer"] == [4] * 4  # the teacher is never pruned
    soft = [l["soft_loss"] for l in logged if "soft_loss" in l]
    assert len(soft) == 6 and all(math.isfinite(x) for x in soft)
    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / MODELING_FILE).exists()  # the pruned shape loads in transformers 4.x and 5.x
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    b = {k: v.clamp(max=len(tokenizer) - 1) for k, v in batch().items()}
    assert torch.allclose(logits(loaded.eval(), b), logits(student.eval(), b), atol=1e-6)
    assert [s["step"] for s in compression_record(tmp_path / "saved")["steps"]] == ["distillation", "structured_pruning"]


def test_callback_needs_attach(tmp_path, sentiment_data, tokenizer):
    model = tiny_model("bert", vocab_size=len(tokenizer))
    snap = snapshot(model)
    trainer = Trainer(model=model, args=train_args(tmp_path, max_steps=2), train_dataset=sentiment_data["train"],
                      processing_class=tokenizer, callbacks=[StructuredPruningCallback(heads_per_layer=2, method="random")])
    with pytest.raises(FastFormersError, match=r"attach\(trainer\)"):
        trainer.train()
    assert_unchanged(model, snap)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="taylor"), "unknown pruning method"),
    (dict(num_prune_steps=3), "prune_every"),
    (dict(prune_at_step=-1), "prune_at_step"),
])
def test_callback_rejects_bad_settings(kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        StructuredPruningCallback(heads_per_layer=2, **kwargs)


def test_lazy_exports():
    assert fastformers_hf.StructuredPruningCallback is StructuredPruningCallback
    assert fastformers_hf.prune is prune


def test_scoring_dataloader_keeps_model_columns(sentiment_data, tokenizer):
    ds = sentiment_data["train"].select(range(10)).add_column("idx", list(range(10)))
    b = next(iter(scoring_dataloader(ds, tokenizer, batch_size=4)))
    assert set(b) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
