"""Checks that a teacher and a student can be distilled one into the other; each failure names both models."""
from __future__ import annotations

from ..errors import FastFormersError


def _name(model) -> str:
    cfg = model.config
    return f"{getattr(cfg, '_name_or_path', '') or cfg.model_type} ({cfg.model_type})"


def check_same_vocabulary(teacher, student, teacher_tokenizer=None, student_tokenizer=None) -> None:
    """Logit distillation needs the same inputs for both: same vocabulary, same tokenizer.

    The FastFormers paper found BERT -> RoBERTa distillation fails for exactly this reason.
    """
    tv, sv = teacher.config.vocab_size, student.config.vocab_size
    if tv != sv:
        raise FastFormersError(
            f"teacher {_name(teacher)} has a vocabulary of {tv} tokens but student {_name(student)} has {sv}: "
            "distillation needs one tokenizer for both; pick a student of the teacher's family."
        )
    if teacher_tokenizer is not None and student_tokenizer is not None:
        if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
            raise FastFormersError(
                f"teacher {_name(teacher)} and student {_name(student)} use different tokenizers "
                f"({type(teacher_tokenizer).__name__} vs {type(student_tokenizer).__name__}); "
                "use the teacher's tokenizer for the student."
            )


def check_same_labels(teacher, student) -> None:
    t, s = teacher.config, student.config
    if t.num_labels != s.num_labels:
        raise FastFormersError(
            f"teacher {_name(teacher)} predicts {t.num_labels} labels but student {_name(student)} predicts "
            f"{s.num_labels}; build the student with num_labels={t.num_labels} (make_student does)."
        )
    tl = [t.id2label[i] for i in range(t.num_labels)]
    sl = [s.id2label[i] for i in range(s.num_labels)]
    default = [f"LABEL_{i}" for i in range(t.num_labels)]
    if tl != sl and default not in (tl, sl):
        raise FastFormersError(
            f"teacher {_name(teacher)} labels {tl} and student {_name(student)} labels {sl} differ in name or "
            "order; give the student the teacher's id2label/label2id."
        )
