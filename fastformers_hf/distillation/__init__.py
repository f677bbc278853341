"""Knowledge distillation: the config (a ``TrainingArguments`` subclass), the trainer, student construction."""
