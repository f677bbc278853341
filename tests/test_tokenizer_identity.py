"""Teacher and student tokenizers are compared by content, not size, on every route a tokenizer can come in by:
passed to the trainer, found beside a teacher path or a loaded teacher's folder, or coming with a general
checkpoint (API and CLI). Same size, different tokens: refused, unless asked for explicitly."""
from __future__ import annotations

import pytest

from fastformers_hf import DistillationConfig, DistillationTrainer, FastFormersError, make_student
from fastformers_hf.distillation.compatibility import tokenizer_fingerprint
from fastformers_hf.tasks.synthetic import VOCABULARY
from fastformers_hf.testing import tiny_model, tiny_tokenizer, write_glue_folder

# One word replaced: the same number of tokens, but id k means another word in one of them.
OTHER_WORDS = [w for w in VOCABULARY if w != "boring"] + ["zebra"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, trained_teacher, tokenizer):
    root = tmp_path_factory.mktemp("tokenizers")
    other = tiny_tokenizer(OTHER_WORDS, save_dir=root / "other-vocab")
    assert len(other) == len(tokenizer) and tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    teacher = root / "teacher"
    trained_teacher.save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    general = root / "general"  # a "generally distilled" checkpoint of the same size with the other vocabulary
    tiny_model("bert", num_layers=2, hidden_size=64, intermediate_size=128).save_pretrained(general)
    other.save_pretrained(general)
    data = write_glue_folder(root / "data", 64, 16)
    return {"teacher": teacher, "general": general, "other": other, "data": data, "root": root}


def _args(tmp_path, **kw):
    return DistillationConfig(output_dir=str(tmp_path / "out"), max_steps=1, report_to=[], save_strategy="no",
                              dataloader_pin_memory=False, **kw)


def _trainer_teacher_path_other_training_tokenizer(f, tmp_path, sentiment_data, allow):
    from transformers import AutoModelForSequenceClassification

    student = make_student(AutoModelForSequenceClassification.from_pretrained(f["teacher"]), num_layers=1)
    return DistillationTrainer(model=student, teacher_model=str(f["teacher"]), processing_class=f["other"],
                               train_dataset=sentiment_data["train"], args=_args(tmp_path, allow_different_tokenizers=allow))


def _trainer_loaded_teacher_student_from_other_folder(f, tmp_path, sentiment_data, allow):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(f["teacher"])  # its folder holds its tokenizer
    student = AutoModelForSequenceClassification.from_pretrained(f["general"])  # and this one holds the other
    return DistillationTrainer(model=student, teacher_model=teacher, train_dataset=sentiment_data["train"],
                               args=_args(tmp_path, allow_different_tokenizers=allow))


def _trainer_both_passed(f, tmp_path, sentiment_data, allow, tokenizer=None):
    from transformers import AutoTokenizer

    teacher = tiny_model("bert", num_layers=2)
    return DistillationTrainer(model=make_student(teacher, num_layers=1), teacher_model=teacher,
                               teacher_processing_class=AutoTokenizer.from_pretrained(f["teacher"]),
                               processing_class=f["other"], train_dataset=sentiment_data["train"],
                               args=_args(tmp_path, allow_different_tokenizers=allow))


def _make_student_general_checkpoint(f, tmp_path, sentiment_data, allow):
    return make_student(str(f["teacher"]), general_checkpoint=str(f["general"]), allow_different_tokenizers=allow)


def _distill_cli_general_checkpoint(f, tmp_path, sentiment_data, allow):
    from fastformers_hf.commands import distill

    return distill.main(["--teacher_model_name_or_path", str(f["teacher"]), "--data", str(f["data"]),
                         "--general_checkpoint", str(f["general"]), "--output_dir", str(tmp_path / "cli"),
                         "--max_steps", "1", "--report_to", "none", "--save_strategy", "no",
                         *(["--allow_different_tokenizers"] if allow else [])])


ROUTES = {
    "teacher path, other training tokenizer": _trainer_teacher_path_other_training_tokenizer,
    "loaded teacher, student from another folder": _trainer_loaded_teacher_student_from_other_folder,
    "both tokenizers passed": _trainer_both_passed,
    "make_student(general_checkpoint=...)": _make_student_general_checkpoint,
    "fastformers-hf distill --general_checkpoint": _distill_cli_general_checkpoint,
}


@pytest.mark.parametrize("route", ROUTES)
def test_same_size_different_vocabularies_are_refused_naming_both(route, folders, tmp_path, sentiment_data):
    with pytest.raises(FastFormersError, match=r"use different tokenizers: .*\(vocabulary [0-9a-f]{12}\).*differ in "
                                               r"content, though both have \d+ tokens.*allow_different_tokenizers"):
        ROUTES[route](folders, tmp_path, sentiment_data, False)


@pytest.mark.parametrize("route", ROUTES)
def test_asking_explicitly_lets_it_through(route, folders, tmp_path, sentiment_data):
    ROUTES[route](folders, tmp_path, sentiment_data, True)


def test_the_same_tokenizer_passed_and_beside_the_teacher_is_accepted(folders, tmp_path, sentiment_data, tokenizer):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(folders["teacher"])
    DistillationTrainer(model=make_student(teacher, num_layers=1), teacher_model=str(folders["teacher"]),
                        processing_class=tokenizer, train_dataset=sentiment_data["train"], args=_args(tmp_path))
