"""ModelCardCallback: training facts are recorded while a Trainer runs and the card is written with no extra call."""
from __future__ import annotations

import json

from transformers import Trainer, TrainingArguments

from fastformers_hf.testing import tiny_model
from hub_cards import TRAINING_FILE
from trainer_callbacks import ModelCardCallback


def test_trainer_run_records_facts_and_writes_the_card(tmp_path, sentiment_data, tokenizer):
    out = tmp_path / "run"
    args = TrainingArguments(output_dir=str(out), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3,
                             eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=4,
                             logging_steps=2, report_to=[], dataloader_pin_memory=False, seed=0,
                             hub_token="hf_do_not_record_me")
    trainer = Trainer(model=tiny_model("bert"), args=args, processing_class=tokenizer,
                      train_dataset=sentiment_data["train"].select(range(64)),
                      eval_dataset=sentiment_data["validation"].select(range(32)),
                      callbacks=[ModelCardCallback(datasets="sst2", license="mit")])
    trainer.train()

    facts = json.loads((out / TRAINING_FILE).read_text())
    assert facts["hyperparameters"]["learning_rate"] == 1e-3 and facts["hyperparameters"]["max_steps"] == 4
    assert "hf_do_not_record_me" not in (out / TRAINING_FILE).read_text()
    assert [(d["role"], d["name"], d["num_rows"]) for d in facts["datasets"]] == [("train", "sst2", 64), ("eval", "sst2", 32)]
    assert [row["step"] for row in facts["eval_history"]] == [2, 4]
    assert facts["summary"]["global_step"] == 4 and "train_runtime" in facts["summary"]

    card = (out / "README.md").read_text()  # written at the end of training, before any save_model call
    assert "license: mit" in card and "nyu-mll/glue" in card
    last_loss = facts["eval_history"][-1]["eval_loss"]
    assert "Evaluation during training" in card and f"{last_loss:.4f}" in card
    assert "| learning_rate | 0.001 |" in card
    checkpoint = out / "checkpoint-4"
    assert (checkpoint / "README.md").exists() and (checkpoint / TRAINING_FILE).exists()
    assert "model.safetensors" in (checkpoint / "README.md").read_text()  # the checkpoint's card lists its weights
