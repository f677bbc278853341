"""``ModelCardCallback``: record training facts while a Trainer runs and write the model card with the model.

The sentence-transformers pattern: datasets, the hyperparameters that differ from the defaults, and evaluation
metrics by step are recorded as they happen (``fastformers_training.json``), and ``README.md`` is rendered by
``hub_cards`` at every checkpoint and at the end of training, so a Trainer-made model has its card with no extra call.
"""
from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from hub_cards import describe_dataset, non_default_hyperparameters, save_training_facts, write_card


class ModelCardCallback(TrainerCallback):
    """Add to any ``Trainer`` (``callbacks=[ModelCardCallback()]``).

    Args:
        datasets: names of the training data (Hub ids such as ``"nyu-mll/glue:sst2"`` or task names such as
            ``"sst2"``) when the Dataset objects cannot tell (local files do not).
        card_fields: user fields of the card (``license``, ``language``, ``description``, ...).
    """

    def __init__(self, datasets: list[str] | str | None = None, **card_fields):
        self.names = [datasets] if isinstance(datasets, str) else list(datasets or [])
        self.card_fields = card_fields
        self.facts: dict = {}

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.facts = {"training_arguments": type(args).__name__, "datasets": [],
                      "hyperparameters": non_default_hyperparameters(args), "eval_history": [], "summary": {}}
        self._add_dataset("train", train_dataloader)
        self._write(args, state)

    def on_evaluate(self, args, state, control, metrics=None, eval_dataloader=None, **kwargs):
        if self.facts and metrics:
            self._add_dataset("eval", eval_dataloader)  # the Trainer hands the eval data over only here
            self.facts["eval_history"].append({"step": state.global_step, "epoch": state.epoch, **metrics})
            self._write(args, state)

    def _add_dataset(self, role: str, dataloader) -> None:
        dataset = getattr(dataloader, "dataset", None)
        if dataset is None or any(d["role"] == role for d in self.facts["datasets"]):
            return
        name = self.names[min(len(self.facts["datasets"]), len(self.names) - 1)] if self.names else None
        self.facts["datasets"].append({"role": role, **describe_dataset(dataset, name)})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.facts and logs and "train_runtime" in logs:  # the Trainer's end-of-training summary
            self.facts["summary"] = {"global_step": state.global_step, **logs}

    def on_save(self, args, state, control, model=None, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.facts and state.is_world_process_zero and (checkpoint / "config.json").exists():
            save_training_facts(checkpoint, self.facts)
            write_card(checkpoint, **self.card_fields)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._write(args, state)
        if self.facts and state.is_world_process_zero:
            # The final model is saved after training (trainer.save_model), so the card reads the live config.
            config = model.config.to_dict() if model is not None else None
            write_card(args.output_dir, config=config, **self.card_fields)

    def _write(self, args, state):
        if self.facts and state.is_world_process_zero:
            save_training_facts(args.output_dir, self.facts)
