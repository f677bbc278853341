"""The named tasks (sst2, rte, squad, conll2003, ...): columns, labels, metric, head kind and loader. Kept free of
heavy imports (no ``datasets``) so configs and CLIs can check a task name in milliseconds."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import FastFormersError

MIXED_CHOICES = ("refuse", "pad")  # multiple choice: rows with different numbers of choices refused or padded


@dataclass(frozen=True)
class TaskSpec:
    """A named task: its text columns, labels, metric, kind of head (:data:`~fastformers_hf.tasks.kinds.KINDS`) and,
    for formats that are not GLUE-style tables, the loader (``"module:function"`` under ``fastformers_hf.tasks``,
    called with the data path, returning ``train``/``validation`` splits). Empty ``label_names``: from the data.
    ``also_reported``: metrics of :data:`~fastformers_hf.tasks.metrics.METRICS` scored beside the headline one."""

    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    label_field: str = "label"
    metric: str = "accuracy"
    kind: str = "sequence_classification"
    loader: str | None = None
    also_reported: tuple[str, ...] = ()

    def load(self, path, **options):
        """The loader's splits; ``options`` are its keyword settings (``mixed_choices`` for multiple choice)."""
        import importlib

        module, function = self.loader.split(":")
        return getattr(importlib.import_module(f"fastformers_hf.tasks.{module}"), function)(path, **options)

    def inputs(self, split) -> list:
        """The split's model inputs in order: texts, or (text, text) pairs for two-text tasks ((context, choices)
        for multiple choice)."""
        cols = [list(split[f]) for f in self.text_fields]
        return cols[0] if len(cols) == 1 else list(zip(*cols))


TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(("sentence",), ("negative", "positive")),
    "rte": TaskSpec(("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "boolq": TaskSpec(("question", "passage"), ("False", "True")),
    "mrpc": TaskSpec(("sentence1", "sentence2"), ("not_equivalent", "equivalent"), metric="f1"),
    "cola": TaskSpec(("sentence",), ("unacceptable", "acceptable"), metric="matthews_correlation"),
    # SQuAD v1.1 JSON (or Hub `squad` columns in JSON lines): extractive question answering.
    "squad": TaskSpec(("question", "context"), (), label_field="answers", metric="squad_f1",
                      kind="question_answering", loader="squad:load_squad"),
    # CoNLL-2003 column files (NER tag in the last column, IOB2) or Hub-style `tokens`/`ner_tags` JSON lines.
    "conll2003": TaskSpec(("tokens",), (), label_field="ner_tags", metric="entity_f1",
                          kind="token_classification", loader="conll:load_conll"),
    # SuperGLUE CommitmentBank JSON lines: three-way pairs; SuperGLUE reports accuracy and macro-F1.
    "cb": TaskSpec(("premise", "hypothesis"), ("entailment", "contradiction", "neutral"), loader="data:load_cb",
                   also_reported=("macro_f1",)),
    # Multiple choice (tasks/multiple_choice.py): rows of a context, its choices and the right one's index.
    "copa": TaskSpec(("context", "choices"), (), kind="multiple_choice", loader="multiple_choice:load_copa"),
    "openbookqa": TaskSpec(("context", "choices"), (), kind="multiple_choice",
                           loader="multiple_choice:load_openbookqa"),
}


def get_task(task: str) -> TaskSpec:
    if task not in TASKS:
        raise FastFormersError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[task]
