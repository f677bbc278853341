"""Checks that a teacher and a student can be distilled one into the other; each failure names both models."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import FastFormersError
from ..utils.model_folder import TOKENIZER_FILES


def _name(model) -> str:
    cfg = model.config
    return f"{getattr(cfg, '_name_or_path', '') or cfg.model_type} ({cfg.model_type})"


def tokenizer_fingerprint(tokenizer) -> str:
    """The identity of a tokenizer's vocabulary: a hash of its tokens in id order (two vocabularies of one size
    but different tokens, or the same tokens in another order, differ)."""
    vocab = tokenizer.get_vocab()
    ordered = "\n".join(token for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(ordered.encode("utf-8")).hexdigest()[:12]


def tokenizer_beside(model) -> tuple[str, object] | None:
    """``(folder, tokenizer)`` saved beside a model (a path, or a model loaded from a local folder), else None."""
    path = model if isinstance(model, (str, os.PathLike)) else getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path or not Path(path).is_dir():
        return None
    # transformers 5 builds an empty tokenizer for a folder without tokenizer files instead of raising.
    if not any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return str(path), AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError):  # no tokenizer files there
        return None


def check_same_vocabulary(teacher, student, teacher_tokenizer=None, student_tokenizer=None,
                          allow_different_tokenizers: bool = False) -> None:
    """Logit distillation needs the same inputs for both: same vocabulary, same tokenizer.

    Every tokenizer known for the pair is compared by content (:func:`tokenizer_fingerprint`): those passed, and
    those saved beside the teacher's and the student's folders. The FastFormers paper found BERT -> RoBERTa
    distillation fails for exactly this reason.
    """
    tv, sv = teacher.config.vocab_size, student.config.vocab_size
    if tv != sv:
        raise FastFormersError(
            f"teacher {_name(teacher)} has a vocabulary of {tv} tokens but student {_name(student)} has {sv}: "
            "distillation needs one tokenizer for both; pick a student of the teacher's family."
        )
    known = [(f"{role} tokenizer passed ({type(tok).__name__})", tok) for role, tok in
             (("teacher", teacher_tokenizer), ("training", student_tokenizer)) if tok is not None]
    for role, model in (("teacher", teacher), ("student", student)):
        found = tokenizer_beside(model)
        if found is not None:
            known.append((f"{role}'s tokenizer in {found[0]}", found[1]))
    prints = [(name, tokenizer_fingerprint(tok)) for name, tok in known]
    different = [(name, fp) for name, fp in prints if fp != prints[0][1]]
    if different and not allow_different_tokenizers:
        (first, fp0), (other, fp1) = prints[0], different[0]
        raise FastFormersError(
            f"teacher {_name(teacher)} and student {_name(student)} use different tokenizers: the {first} "
            f"(vocabulary {fp0}) and the {other} (vocabulary {fp1}) differ in content, though both have {tv} "
            "tokens, so the same token ids would mean different words to the two models. Use the teacher's "
            "tokenizer and a student of the teacher's family, or pass "
            "allow_different_tokenizers=True (--allow_different_tokenizers) if this is intended."
        )


def check_same_kind(teacher, student) -> None:
    """Distillation matches outputs of one kind of head (:data:`~fastformers_hf.tasks.kinds.KINDS`)."""
    from ..tasks.kinds import kind_of

    tk, sk = kind_of(teacher).name, kind_of(student).name
    if tk != sk:
        raise FastFormersError(
            f"teacher {_name(teacher)} is a {tk} model ({type(teacher).__name__}) but student {_name(student)} is a "
            f"{sk} model ({type(student).__name__}): distillation needs one kind of head for both; build the student "
            "with make_student(teacher, ...), which copies the teacher's head."
        )


def check_same_labels(teacher, student) -> None:
    """Same label list, in the same order, for kinds whose outputs are labels (QA and multiple choice have none)."""
    from ..tasks.kinds import kind_of
    from .losses import loss_for

    if not loss_for(kind_of(teacher)).compare_labels:
        return
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
