"""The recipe of ``fastformers-hf compress``: one dataclass, read from a YAML/JSON file and/or flags.

Flags follow ``TrainingArguments`` naming (``output_dir``, ``learning_rate``, ``per_device_train_batch_size``,
``seed``, ``push_to_hub``, ``hub_model_id``, ...). Every setting is checked in :meth:`CompressConfig.validate`,
which ``--dry-run`` runs alone, in seconds, before any training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..errors import FastFormersError


def parse_target(value: Optional[str]) -> Union[None, int, float]:
    """'6' -> 6 units kept per layer, '0.5' -> half of them, None -> unchanged."""
    if value is None or str(value).lower() in ("", "none"):
        return None
    text = str(value)
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise FastFormersError(f"pruning target {value!r} is neither a count (e.g. 6) nor a ratio (e.g. 0.5).") from None


@dataclass
class CompressConfig:
    """distil -> prune -> re-distil -> ONNX Runtime variant -> serving settings -> (cascade) -> evaluate -> card."""

    model_name_or_path: str = field(default=None, metadata={"help": "The fine-tuned teacher (local dir or Hub id)."})
    output_dir: str = field(default="runs/compress", metadata={"help": "Each stage writes its own subdirectory here."})
    data: Optional[str] = field(default=None, metadata={"help": "Folder of GLUE-style train/dev files or a Hub dataset "
                                                                "id; empty = generated sentiment data (offline demo)."})
    task: str = field(default="sst2", metadata={"help": "Task name: its columns, format, head and metric (sst2, rte, "
                                                 "boolq, cb, mrpc, cola; squad: question answering; conll2003: NER; "
                                                 "copa, openbookqa: multiple choice)."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Truncation length (question answering: "
                                      "window length); batches are padded dynamically. Default 128; for question "
                                      "answering 384."})
    doc_stride: Optional[int] = field(default=None, metadata={"help": "Question answering: tokens of overlap between "
                                      "windows of a long context (default min(max_length // 2, 128))."})
    mixed_choices: str = field(default="refuse", metadata={"help": "Multiple choice: rows with different numbers "
                               "of choices are refused (refuse) or padded in each batch with a choice mask (pad)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use a shuffled subset of train."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use the first N validation rows."})
    generated_hard: bool = field(default=False, metadata={"help": "Without --data: harder generated sentences (double "
                                                                  "negation, concessions in both orders, 3 clauses)."})
    generated_label_noise: float = field(default=0.0, metadata={"help": "Without --data: share of the generated train "
                                         "and validation labels flipped (seeded); accuracy tops out at 1 minus it."})
    teacher_fine_tune_steps: int = field(default=0, metadata={"help": "Fine-tune the given model first (for a "
                                                                       "pretrained, not yet fine-tuned model)."})
    student_layers: int = field(default=3, metadata={"help": "Student depth, initialised from teacher layers."})
    student_hidden_act: Optional[str] = field(default=None, metadata={"help": "e.g. relu (FastFormers' choice)."})
    max_steps: int = field(default=1000, metadata={"help": "Distillation steps."})
    heads_per_layer: Optional[str] = field(default=None, metadata={"help": "Heads kept per layer: count or ratio; "
                                                                           "empty = no head pruning."})
    ffn_width: Optional[str] = field(default=None, metadata={"help": "FFN neurons kept per layer: count or ratio."})
    pruning_method: str = field(default="first_order", metadata={"help": "first_order, magnitude or random."})
    scoring_examples: int = field(default=1000, metadata={"help": "Held-out train rows used to score heads/neurons."})
    redistill_steps: int = field(default=500, metadata={"help": "Re-distillation steps after pruning."})
    temperature: float = field(default=2.0, metadata={"help": "Distillation temperature."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of the student."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    group_by_length: bool = field(default=False, metadata={"help": "Train on batches of similar length (Trainer's "
                                  "LengthGroupedSampler): less padding, about 2x faster on long, varied pairs."})
    seed: int = field(default=0, metadata={"help": "Seed of data shuffling and initialisation."})
    onnx_tolerance: float = field(default=0.5, metadata={"help": "Points of the task metric (accuracy, F1) the ONNX "
                                                                 "variant may lose."})
    quantization_preset: str = field(default="auto", metadata={"help": "auto, avx512_vnni, avx2 or arm64."})
    threads: int = field(default=1, metadata={"help": "Intra-op threads for timing and serving."})
    train_threads: Optional[int] = field(default=None, metadata={"help": "Intra-op threads for the training stages "
                                                                         "(default: every physical core)."})
    latency_samples: int = field(default=300, metadata={"help": "Validation inputs timed at batch 1."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the result (PyTorch + ONNX + card)."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "namespace/name of the Hub repo."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repo private."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Write token (default: HF_TOKEN / login)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an output_dir that holds our own "
                                                                        "output of another command (a folder with "
                                                                        "someone else's files is never replaced)."})
    dry_run: bool = field(default=False, metadata={"help": "Validate the recipe (paths, shapes, targets, "
                                                           "dependencies) in seconds and stop."})

    def __post_init__(self):
        from ..tasks.names import MIXED_CHOICES, get_task

        kind = get_task(self.task).kind  # an unknown task is refused here, with the list of known ones
        if self.max_length is None:
            self.max_length = 384 if kind == "question_answering" else 128
        if self.doc_stride is None:
            self.doc_stride = min(self.max_length // 2, 128)
        if not 0 <= self.doc_stride < self.max_length:
            raise FastFormersError(f"doc_stride ({self.doc_stride}) must be at least 0 and below max_length "
                                   f"({self.max_length}).")
        if self.mixed_choices not in MIXED_CHOICES:
            raise FastFormersError(f"mixed_choices must be refuse or pad, got {self.mixed_choices!r}.")
        if self.pruning_method not in ("first_order", "magnitude", "random"):
            raise FastFormersError(f"pruning_method must be first_order, magnitude or random, got "
                                   f"{self.pruning_method!r}.")
        for name in ("max_steps", "student_layers", "per_device_train_batch_size", "threads", "latency_samples"):
            if getattr(self, name) < 1:
                raise FastFormersError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("redistill_steps", "teacher_fine_tune_steps"):
            if getattr(self, name) < 0:
                raise FastFormersError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not self.temperature > 0:
            raise FastFormersError(f"temperature must be > 0, got {self.temperature}.")
        if self.onnx_tolerance < 0:
            raise FastFormersError(f"onnx_tolerance must be >= 0, got {self.onnx_tolerance}.")
        if not 0 <= self.generated_label_noise < 0.5:
            raise FastFormersError(f"generated_label_noise is the share of labels flipped, in [0, 0.5); got "
                                   f"{self.generated_label_noise}.")
        parse_target(self.heads_per_layer), parse_target(self.ffn_width)
        if self.push_to_hub and not self.hub_model_id:
            raise FastFormersError("push_to_hub needs hub_model_id (namespace/name).")

    @property
    def prunes(self) -> bool:
        return parse_target(self.heads_per_layer) is not None or parse_target(self.ffn_width) is not None

    @property
    def loader_options(self) -> dict:
        """Keyword settings of the task's own loader."""
        from ..tasks.names import get_task

        return {"mixed_choices": self.mixed_choices} if get_task(self.task).kind == "multiple_choice" else {}

    def settings(self, *names: str) -> dict:
        return {n: getattr(self, n) for n in names}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def read_recipe(path: str) -> dict:
    """A YAML or JSON recipe as a dict; unknown keys are refused with the list of valid ones."""
    import json

    import yaml

    p = Path(path)
    if not p.exists():
        raise FastFormersError(f"recipe file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        recipe = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise FastFormersError(f"recipe {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if not isinstance(recipe, dict):
        raise FastFormersError(f"recipe {p} must be a mapping of setting: value.")
    unknown = sorted(set(recipe) - set(CompressConfig.field_names()))
    if unknown:
        raise FastFormersError(f"recipe {p} has unknown keys {unknown}; valid keys: "
                               f"{', '.join(CompressConfig.field_names())}.")
    return recipe
