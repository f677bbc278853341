"""The optimizer across a prune step: ``remap_optimizer_in_place`` keeps the optimizer object and points it at the
pruned parameters, so accelerate, the LR scheduler, the grad scaler and the Trainer go on with one optimizer over
exactly the model's current parameters, and nothing stale is left behind."""
import gc
import weakref

import pytest
import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from transformers import Trainer, TrainingArguments

from fastformers_hf.architectures import get_layers, get_spec
from fastformers_hf.pruning import prune, remap_optimizer_in_place, remap_optimizer_state
from fastformers_hf.testing import tiny_model
from trainer_callbacks import StructuredPruningCallback


def batch(seed=0, n=4, length=10, vocab=30):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, vocab, (n, length), generator=g), "labels": torch.arange(n) % 2}


def params_of(optimizer):
    return [p for group in optimizer.param_groups for p in group["params"]]


def query(model, layer=0):
    return get_layers(model)[layer].get_submodule(get_spec(model).query).weight


def adamw_over(model):
    decay = [p for n, p in model.named_parameters() if "bias" not in n and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-3)


def train_step(model, optimizer, seed=0):
    model.train()
    model(**batch(seed)).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_remap_in_place_keeps_the_optimizer_and_slices_its_state():
    model = tiny_model("bert")
    opt = adamw_over(model)
    train_step(model, opt)
    lists = [g["params"] for g in opt.param_groups]
    sizes = [len(p) for p in lists]
    q_old = query(model)
    moment = opt.state[q_old]["exp_avg"].clone()
    untouched = model.classifier.weight
    untouched_state = opt.state[untouched]

    _, mapping = prune(model, heads_per_layer=2, ffn_width=16, method="magnitude", return_mapping=True)
    moved = remap_optimizer_in_place(opt, mapping)

    assert moved == len(mapping)  # every sliced weight and bias carried its state
    assert all(g["params"] is same for g, same in zip(opt.param_groups, lists))  # the same lists, edited in place
    assert [len(g["params"]) for g in opt.param_groups] == sizes  # same groups, same positions
    assert sorted(map(id, params_of(opt))) == sorted(map(id, model.parameters()))  # exactly the current ones
    q_new = query(model)
    old, dim, index = mapping[q_new]
    assert old is q_old and q_old not in opt.state
    assert torch.equal(opt.state[q_new]["exp_avg"], moment.index_select(dim, index))
    assert opt.state[q_new]["exp_avg"].shape == q_new.shape and float(opt.state[q_new]["step"]) == 1
    assert opt.state[untouched] is untouched_state  # unchanged parameters are left alone
    before = q_new.detach().clone()
    train_step(model, opt, seed=1)  # and it trains on
    assert not torch.equal(before, q_new.detach())


def test_state_that_cannot_be_sliced_starts_afresh():
    model = tiny_model("bert")
    opt = adamw_over(model)
    train_step(model, opt)
    opt.state[query(model)]["factored_rows"] = torch.ones(query(model).shape[0] // 2)  # e.g. Adafactor-like
    _, mapping = prune(model, heads_per_layer=2, method="magnitude", return_mapping=True)
    moved = remap_optimizer_in_place(opt, mapping)
    assert moved == len(mapping) - 1 and query(model) not in opt.state
    train_step(model, opt, seed=1)
    assert float(opt.state[query(model)]["step"]) == 1


def test_remap_state_into_a_new_optimizer_leaves_the_old_one():
    model = tiny_model("bert")
    old_opt = adamw_over(model)
    train_step(model, old_opt)
    q_old = query(model)
    moment = old_opt.state[q_old]["exp_avg"].clone()
    _, mapping = prune(model, heads_per_layer=2, ffn_width=16, method="magnitude", return_mapping=True)
    new_opt = adamw_over(model)
    assert remap_optimizer_state(old_opt, new_opt, mapping) == len(list(model.parameters()))
    _, dim, index = mapping[query(model)]
    assert torch.equal(new_opt.state[query(model)]["exp_avg"], moment.index_select(dim, index))
    assert torch.equal(old_opt.state[q_old]["exp_avg"], moment)  # copied, not moved


def test_in_place_remap_works_with_accelerate_and_a_grad_scaler():
    """The fp16 route of accelerate (a GradScaler unscaling and stepping the wrapped optimizer), on CPU."""
    model = tiny_model("bert").train()
    accelerator = Accelerator(cpu=True)
    wrapped = AcceleratedOptimizer(adamw_over(model), device_placement=False, scaler=torch.amp.GradScaler("cpu"))
    for seed in range(2):
        wrapped.scaler.scale(model(**batch(seed)).loss).backward()
        wrapped.step()
        wrapped.zero_grad()
        if seed == 0:
            _, mapping = prune(model, heads_per_layer=2, ffn_width=16, method="magnitude", return_mapping=True)
            remap_optimizer_in_place(wrapped, mapping)
            before = query(model).detach().clone()
    assert not wrapped.step_was_skipped and not torch.equal(before, query(model).detach())
    assert float(wrapped.state[query(model)]["step"]) == 2  # the moments of the kept rows went on
    accelerator.free_memory()


def _trainer(tmp_path, model, data, tokenizer, **kw):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=16,
                             learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
                             dataloader_pin_memory=False, seed=0)
    return Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, **kw)


def test_accelerate_only_sees_the_current_optimizer_after_pruning(tmp_path, sentiment_data, tokenizer, monkeypatch):
    """Every step, accelerate asks each optimizer it prepared whether its step was skipped (and under fp16 unscales
    each one): after the prune step that must be one optimizer, the trainer's, over the model's new parameters, and
    no stale optimizer may keep the pre-prune parameters alive."""
    model = tiny_model("bert", vocab_size=len(tokenizer))
    trainer = _trainer(tmp_path, model, sentiment_data["train"], tokenizer)
    pruner = StructuredPruningCallback(heads_per_layer=2, ffn_width=16, method="magnitude", prune_at_step=3)
    pruner.attach(trainer)
    consulted = []  # (step, is it the trainer's optimizer, its parameters, the model's parameters)
    original = AcceleratedOptimizer.step_was_skipped

    def spy(self):
        consulted.append((trainer.state.global_step, self is trainer.optimizer, sorted(map(id, params_of(self))),
                          sorted(map(id, model.parameters()))))
        return original.fget(self)

    monkeypatch.setattr(AcceleratedOptimizer, "step_was_skipped", property(spy))
    old_query = weakref.ref(query(model))
    trainer.train()

    assert pruner.done == 1 and query(model).shape[0] == 16
    assert [step for step, *_ in consulted] == list(range(6))  # one optimizer per step, before and after the prune
    assert all(is_current for _, is_current, _, _ in consulted)
    assert all(in_opt == in_model for _, _, in_opt, in_model in consulted)
    gc.collect()
    assert old_query() is None  # nothing (optimizer state, accelerate) holds the pre-prune weight any more


def test_an_optimizer_given_to_the_trainer_is_kept(tmp_path, sentiment_data, tokenizer):
    model = tiny_model("bert", vocab_size=len(tokenizer))
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0 / (1 + step))
    trainer = _trainer(tmp_path, model, sentiment_data["train"], tokenizer, optimizers=(sgd, schedule))
    StructuredPruningCallback(heads_per_layer=2, method="random", prune_at_step=2).attach(trainer)
    trainer.train()
    assert getattr(trainer.optimizer, "optimizer", trainer.optimizer) is sgd and trainer.lr_scheduler is schedule
    assert schedule.last_epoch == 6 and sgd.param_groups[0]["lr"] == pytest.approx(0.05 / 7)
    assert sorted(map(id, params_of(sgd))) == sorted(map(id, model.parameters()))
    assert sgd.state[query(model)]["momentum_buffer"].shape == query(model).shape == (16, 32)
