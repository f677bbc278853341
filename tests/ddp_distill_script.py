"""Run by tests/test_distillation_ddp.py, once alone and once under `accelerate launch --cpu --num_processes 2`."""
import json
import sys

import torch

from fastformers_hf import DistillationConfig, DistillationTrainer, make_student, tokenize
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model, tiny_tokenizer

out = sys.argv[1]
tok = tiny_tokenizer()
data = tokenize(make_sentiment_data(512, 64, seed=2), tok, max_length=32)
teacher = tiny_model("bert", num_layers=4, hidden_size=64, intermediate_size=128)
student = tiny_model("bert", num_layers=2, hidden_size=32, intermediate_size=64, seed=1)  # narrower: projections
args = DistillationConfig(output_dir=out, max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3,
                          logging_steps=5, report_to=[], save_strategy="no", dataloader_pin_memory=False,
                          hidden_state_loss_weight=1.0, seed=0, use_cpu=True)
trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data["train"],
                              processing_class=tok)
trainer.train()
trainer.save_model()
rank = trainer.args.process_index
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"world_size": trainer.args.world_size, "log_history": trainer.state.log_history,
               "projection_sum": float(sum(p.detach().double().sum() for p in trainer.projections.parameters()))}, f)
# Tear the process group down before exit: left to interpreter shutdown, gloo's threads can abort a rank
# ("terminate called without an active exception") on a loaded machine.
if torch.distributed.is_available() and torch.distributed.is_initialized():
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
