"""Scoring a served model on a raw validation split, by task kind: the predictor a kind serves with, the requests
it answers (texts, text pairs, (question, context) pairs, contexts with choices, sentences) and its headline
metric, computed from what the predictor returns (the same path that is timed), not from a separate evaluation loop.

    evaluation = evaluation_for("question_answering")
    predictor = evaluation.load(folder, threads=1, batch_size=1)
    scores = evaluation.score(predictor, raw["validation"], task)   # {"exact_match": ..., "f1": ...}
    requests = evaluation.requests(raw["validation"], task)          # what to time: evaluation.serve(predictor)

A table (the PEFT way): a new kind adds a row here, not a branch in ``compress`` or the ONNX variant choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FastFormersError


@dataclass(frozen=True)
class Evaluation:
    kind: str
    headline: str  # the key of :meth:`score` the card, the final table and the variant choice report
    scale: float  # headline units per point: accuracy, Pearson are fractions (100); F1 of SQuAD / seqeval is x100 (1)
    # (model_or_dir, tokenizer=None, threads=1, batch_size=1, max_length=None, doc_stride=None, backend="auto")
    # -> predictor; doc_stride is read by question answering only (windows of long contexts)
    load: Callable[..., Any]
    requests: Callable[[Any, Any], list]  # (split, task) -> inputs in the predictor's form
    score: Callable[[Any, Any, Any], dict]  # (predictor, split, task) -> metrics
    serve: Callable[[Any], Callable[[list], Any]]  # predictor -> the call a request makes

    def points(self, metrics: dict) -> float:
        """The headline metric in points (0-100)."""
        return float(metrics[self.headline]) * self.scale


# -- sequence classification --------------------------------------------------------------------------------------

def _load_classifier(model_or_dir, tokenizer=None, threads: int = 1, batch_size: int = 1, max_length=None,
                     doc_stride=None, backend: str = "auto"):
    from .classifier import InferenceConfig, TextClassifier

    config = InferenceConfig(batch_size=batch_size, max_length=max_length, threads=threads)
    return TextClassifier.from_pretrained(model_or_dir, tokenizer=tokenizer, config=config, backend=backend)


def _classification_requests(split, task) -> list:
    return task.inputs(split)


def _classification_score(predictor, split, task) -> dict:
    from ..tasks.metrics import METRICS

    predicted = predictor.predict_logits(task.inputs(split)).argmax(-1)  # (N,)
    gold = np.asarray(split[task.label_field])  # (N,)
    return {"accuracy": float(np.mean(predicted == gold)),
            **{name: METRICS[name](gold, predicted) for name in getattr(task, "also_reported", ())}}


def _regression_score(predictor, split, task) -> dict:
    from ..tasks.metrics import regression_metrics

    return regression_metrics(split[task.label_field], predictor.predict_logits(task.inputs(split))[:, 0])


# -- multiple choice ----------------------------------------------------------------------------------------------

def _load_chooser(model_or_dir, tokenizer=None, threads: int = 1, batch_size: int = 1, max_length=None,
                  doc_stride=None, backend: str = "auto"):
    from .classifier import InferenceConfig
    from .multiple_choice import ChoicePredictor

    config = InferenceConfig(batch_size=batch_size, max_length=max_length, threads=threads)
    return ChoicePredictor.from_pretrained(model_or_dir, tokenizer=tokenizer, config=config, backend=backend)


def _choice_requests(split, task) -> list:
    return [{"context": c, "choices": list(ch)} for c, ch in zip(split["context"], split["choices"])]


def _choice_score(predictor, split, task) -> dict:
    predicted = np.array([p["choice"] for p in predictor.predict(_choice_requests(split, task))])  # (N,)
    return {"accuracy": float(np.mean(predicted == np.asarray(split[task.label_field])))}


# -- question answering -------------------------------------------------------------------------------------------

def _load_answerer(model_or_dir, tokenizer=None, threads: int = 1, batch_size: int = 1, max_length=None,
                   doc_stride=None, backend: str = "auto"):
    from .question_answering import QuestionAnswerer, QuestionAnsweringConfig

    config = QuestionAnsweringConfig(batch_size=batch_size, max_length=max_length, doc_stride=doc_stride,
                                     threads=threads)
    return QuestionAnswerer.from_pretrained(model_or_dir, tokenizer=tokenizer, config=config, backend=backend)


def _qa_requests(split, task) -> list:
    return list(zip(split["question"], split["context"]))


def _qa_score(predictor, split, task) -> dict:
    from ..tasks.squad_metric import squad_metrics

    answers = predictor.predict(_qa_requests(split, task))
    return squad_metrics({str(i): a["answer"] for i, a in zip(split["id"], answers)}, split)


# -- token classification -----------------------------------------------------------------------------------------

def _load_tagger(model_or_dir, tokenizer=None, threads: int = 1, batch_size: int = 1, max_length=None,
                 doc_stride=None, backend: str = "auto"):
    from .classifier import InferenceConfig
    from .token_classification import EntityTagger

    config = InferenceConfig(batch_size=batch_size, max_length=max_length, threads=threads)
    return EntityTagger.from_pretrained(model_or_dir, tokenizer=tokenizer, config=config, backend=backend)


def joined_words(words: Sequence[str]) -> tuple[str, list[int]]:
    """A sentence's words joined by single spaces, and each word's character start in that text."""
    starts, at = [], 0
    for w in words:
        starts.append(at)
        at += len(w) + 1
    return " ".join(words), starts


def _ner_requests(split, task) -> list:
    return [joined_words(words)[0] for words in split["tokens"]]


def word_tags(tokens: list[dict], word_starts: Sequence[int]) -> list[str]:
    """Each word's tag: the label of the token that starts at the word's first character (the first sub-token, as
    the model was trained and as CoNLL is scored); "O" for a word no token starts at (nothing to read)."""
    by_start = {t["start"]: t["entity"] for t in tokens}
    return [by_start.get(s, "O") for s in word_starts]


def _ner_score(predictor, split, task) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    from ..tasks.conll import label_names

    names = label_names(split)
    sentences = [joined_words(words) for words in split["tokens"]]
    tokens = predictor.token_predictions([text for text, _ in sentences])
    predicted = [word_tags(t, starts) for t, (_, starts) in zip(tokens, sentences)]
    gold = [[names[i] for i in tags] for tags in split[task.label_field]]
    return {"precision": 100.0 * precision_score(gold, predicted, zero_division=0),
            "recall": 100.0 * recall_score(gold, predicted, zero_division=0),
            "f1": 100.0 * f1_score(gold, predicted, zero_division=0)}


def _predict(predictor) -> Callable[[list], Any]:
    return predictor.predict


def _logits(predictor) -> Callable[[list], Any]:
    return predictor.predict_logits


EVALUATIONS: dict[str, Evaluation] = {
    "sequence_classification": Evaluation("sequence_classification", "accuracy", 100.0, _load_classifier,
                                          _classification_requests, _classification_score, _logits),
    "regression": Evaluation("regression", "pearson", 100.0, _load_classifier, _classification_requests,
                             _regression_score, _logits),
    "multiple_choice": Evaluation("multiple_choice", "accuracy", 100.0, _load_chooser, _choice_requests,
                                  _choice_score, _predict),
    "question_answering": Evaluation("question_answering", "f1", 1.0, _load_answerer, _qa_requests, _qa_score,
                                     _predict),
    "token_classification": Evaluation("token_classification", "f1", 1.0, _load_tagger, _ner_requests, _ner_score,
                                       _predict),
}


def evaluation_for(kind) -> Evaluation:
    """The row of a kind (a name or a :class:`~fastformers_hf.tasks.kinds.TaskKind`)."""
    name = getattr(kind, "name", kind)
    if name not in EVALUATIONS:
        raise FastFormersError(f"served evaluation of {name} models is not available yet; available: "
                               f"{', '.join(EVALUATIONS)}.")
    return EVALUATIONS[name]

