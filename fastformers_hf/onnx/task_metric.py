"""The variant choice's measure for question answering and token classification: the task's own metric (SQuAD F1,
entity F1) of every candidate on a raw eval split, through the predictor the kind serves with
(:mod:`~fastformers_hf.inference.evaluation`), so an answer or entity a variant gets wrong counts as the user sees
it. Classification keeps its accuracy on tokenised examples (:mod:`~fastformers_hf.onnx.examples`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import FastFormersError

# The task spec (:func:`~fastformers_hf.tasks.data.get_task`) of the raw split a kind is scored on, and the
# columns that split needs: a kind without a row here is scored otherwise (classification: accuracy).
TASK_OF_KIND: dict[str, tuple[str, tuple[str, ...]]] = {
    "question_answering": ("squad", ("id", "question", "context", "answers")),
    "token_classification": ("conll2003", ("tokens", "ner_tags")),
}


def scored_by_task_metric(kind) -> bool:
    """Whether an eval set of this kind is scored by :class:`TaskScorer` (its task's metric on a raw split)."""
    return getattr(kind, "name", kind) in TASK_OF_KIND


def raw_eval_split(eval_dataset, kind, max_samples: int | None = None):
    """The raw split to score ``kind`` on: a Dataset, or the validation (else test) split of a DatasetDict, with
    the columns of the kind's task, cut to its first ``max_samples`` examples."""
    from datasets import Dataset, DatasetDict

    name = getattr(kind, "name", kind)
    task, columns = TASK_OF_KIND[name]
    if isinstance(eval_dataset, DatasetDict):
        split = next((s for s in ("validation", "test") if s in eval_dataset), None)
        if split is None:
            raise FastFormersError(f"the eval DatasetDict has no validation/test split (it has {list(eval_dataset)}).")
        eval_dataset = eval_dataset[split]
    example = f'load_task_data(path, "{task}")["validation"]'
    if not isinstance(eval_dataset, Dataset):
        raise FastFormersError(f"an eval set for {name} is a raw {task} split (a datasets.Dataset with columns "
                               f"{', '.join(columns)}, e.g. {example}), got {type(eval_dataset).__name__}.")
    missing = [c for c in columns if c not in eval_dataset.column_names]
    if missing:
        raise FastFormersError(f"the eval set for {name} has no column {', '.join(map(repr, missing))} (it has "
                               f"{eval_dataset.column_names}); pass a raw {task} split, e.g. {example}.")
    if len(eval_dataset) == 0:
        raise FastFormersError("eval_dataset is empty; pass at least a few labelled examples.")
    if max_samples is not None:
        eval_dataset = eval_dataset.select(range(min(max_samples, len(eval_dataset))))
    return eval_dataset


@dataclass
class TaskScorer:
    """Scores a PyTorch model or an ``onnxruntime.InferenceSession`` of ``kind`` on ``split`` with the kind's
    served evaluation: ``score(source)`` is its metrics dict, ``points(metrics)`` the headline in points."""

    kind: str
    split: Any
    tokenizer: Any
    id2label: dict | None = None
    threads: int = 1
    max_length: int | None = None
    name: str = "eval_dataset"

    def __post_init__(self):
        from ..inference.evaluation import evaluation_for
        from ..tasks.data import get_task

        self.evaluation = evaluation_for(self.kind)
        self.task = get_task(TASK_OF_KIND[self.kind][0])
        if self.kind == "token_classification":
            self._check_labels()

    @property
    def metric(self) -> str:
        return self.evaluation.headline

    def describe(self) -> str:
        return f"{self.name} ({len(self.split)} examples, {TASK_OF_KIND[self.kind][0]} {self.metric})"

    def _check_labels(self) -> None:
        """Entity F1 compares the model's label names with the split's: refuse tags the model cannot predict."""
        from ..tasks.conll import label_names

        tags = set(label_names(self.split))
        model = {str(v) for v in (self.id2label or {}).values()}
        if not tags <= model:
            raise FastFormersError(f"the eval set's tags {sorted(tags - model)} are not among the model's labels "
                                   f"{sorted(model)}; load it with the model's labels (load_conll(path, "
                                   "labels=model.config.id2label)) or fix the model's id2label.")

    def predictor(self, source):
        """The kind's predictor over ``source``, one input a forward pass (batch 1, as the variants are timed)."""
        if self.kind == "token_classification" and hasattr(source, "get_inputs"):
            # A bare session has no labels and Evaluation.load passes none: the tagger gets the model's.
            from ..inference.classifier import InferenceConfig
            from ..inference.token_classification import EntityTagger

            config = InferenceConfig(batch_size=1, max_length=self.max_length, threads=self.threads)
            return EntityTagger.from_pretrained(source, tokenizer=self.tokenizer, config=config, id2label=self.id2label)
        return self.evaluation.load(source, tokenizer=self.tokenizer, threads=self.threads, batch_size=1,
                                    max_length=self.max_length)

    def score(self, source) -> dict[str, float]:
        import torch

        old_threads = torch.get_num_threads()  # loading a PyTorch predictor sets them; the timing needs them as set
        try:
            return {k: float(v) for k, v in self.evaluation.score(self.predictor(source), self.split,
                                                                   self.task).items()}
        finally:
            torch.set_num_threads(old_threads)

    def points(self, metrics: dict) -> float:
        return self.evaluation.points(metrics)


def task_scorer(kind, eval_dataset, tokenizer, config, id2label: dict | None = None) -> TaskScorer:
    """A :class:`TaskScorer` of the raw split in ``eval_dataset`` with the settings of a
    :class:`~fastformers_hf.onnx.config.VariantChoiceConfig` (``max_eval_samples``, ``max_length``, threads,
    ``data_name``)."""
    from ..tasks.data import dataset_name

    name = getattr(kind, "name", kind)
    split = raw_eval_split(eval_dataset, name, config.max_eval_samples)
    return TaskScorer(name, split, tokenizer, id2label=id2label, threads=max(1, config.session.intra_op_num_threads),
                      max_length=config.max_length, name=config.data_name or dataset_name(split, "eval_dataset"))
