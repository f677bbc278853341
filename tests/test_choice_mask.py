"""Multiple-choice rows with different numbers of choices, padded with a choice mask by a setting
(``--mixed_choices pad``): the collator's batches, the masked loss (equal to each example's loss on its own
choices), the teacher cache, distillation, pruning scores, and ``compress`` through every stage."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForMultipleChoice, DataCollatorForMultipleChoice

from fastformers_hf.commands.compress import parse
from fastformers_hf.errors import FastFormersError
from fastformers_hf.pipeline.compress import CompressPipeline
from fastformers_hf.tasks.choice_mask import MASKED_CHOICE_LOGIT, ChoiceCollator, forward_masked
from fastformers_hf.tasks.data import load_task_data
from fastformers_hf.tasks.multiple_choice import tokenize_choices
from fastformers_hf.testing import tiny_config, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
WORDS = ["good", "bad", "great", "awful", "fine", "dull"]


def _rows(counts):
    """OpenBookQA-style rows, row i with counts[i] choices; the answer is the first 'good' word."""
    rows = []
    for i, n in enumerate(counts):
        texts = [WORDS[(i + j) % len(WORDS)] for j in range(n)]
        keys = "ABCDEFG"[:n]
        rows.append({"id": f"q{i}", "question_stem": f"the film was {WORDS[i % len(WORDS)]}",
                     "choices": {"text": texts, "label": list(keys)}, "answerKey": keys[i % n]})
    return rows


def _folder(tmp_path, train_counts, dev_counts):
    data = tmp_path / "obqa"
    data.mkdir()
    for name, counts in (("train", train_counts), ("dev", dev_counts)):
        (data / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in _rows(counts)) + "\n", encoding="utf-8")
    return data


def _model(seed=0):
    torch.manual_seed(seed)
    return AutoModelForMultipleChoice.from_config(tiny_config("bert", num_layers=2, initializer_range=0.5)).eval()


def _features(tmp_path, counts):
    tokenizer = tiny_tokenizer()
    raw = load_task_data(_folder(tmp_path, counts, counts), "openbookqa", loader_options={"mixed_choices": "pad"})
    return tokenizer, [dict(f) for f in tokenize_choices(raw["train"], tokenizer)]


def test_mixed_choices_are_refused_unless_padding_is_asked_for(tmp_path):
    data = _folder(tmp_path, [4, 3, 4], [4, 4])
    with pytest.raises(FastFormersError, match=r"line 2: 3 choices, but line 1 has 4.*--mixed_choices pad"):
        load_task_data(data, "openbookqa")
    raw = load_task_data(data, "openbookqa", loader_options={"mixed_choices": "pad"})
    assert [len(c) for c in raw["train"]["choices"]] == [4, 3, 4]  # the raw rows keep their own choices
    with pytest.raises(FastFormersError, match="mixed_choices must be one of refuse, pad, got 'mask'"):
        load_task_data(data, "openbookqa", loader_options={"mixed_choices": "mask"})
    with pytest.raises(FastFormersError, match="mixed_choices must be refuse or pad"):
        parse(["--model_name_or_path", "m", "--task", "openbookqa", "--mixed_choices", "mask"])


def test_one_number_of_choices_batches_exactly_as_transformers(tmp_path):
    tokenizer, features = _features(tmp_path, [3, 3, 3])
    ours = ChoiceCollator(tokenizer)([dict(f) for f in features])
    theirs = DataCollatorForMultipleChoice(tokenizer)([dict(f) for f in features])
    assert set(ours) == set(theirs)  # no choice_mask
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_mixed_choices_are_padded_with_a_mask(tmp_path):
    tokenizer, features = _features(tmp_path, [4, 2, 3])
    batch = ChoiceCollator(tokenizer)(features)
    assert batch["input_ids"].shape[:2] == (3, 4)  # (B, C, T)
    assert batch["choice_mask"].tolist() == [[True] * 4, [True, True, False, False], [True, True, True, False]]
    assert torch.equal(batch["input_ids"][1, 2], batch["input_ids"][1, 0])  # a padded slot repeats choice 0
    assert batch["labels"].tolist() == [f["labels"] for f in features]


def test_the_masked_loss_is_each_examples_loss_on_its_own_choices(tmp_path):
    tokenizer, features = _features(tmp_path, [4, 2, 3, 4])
    model = _model()
    collator = ChoiceCollator(tokenizer)
    batch = collator(features)
    with torch.no_grad():
        out, mask = forward_masked(model, batch)
        alone = [forward_masked(model, collator([f]))[0] for f in features]  # each example: its own choices only
    assert "choice_mask" in batch and mask is not None  # the caller's batch is left as it was
    for i, (one, n) in enumerate(zip(alone, mask.sum(-1).tolist())):
        torch.testing.assert_close(out.logits[i, :n], one.logits[0], atol=1e-4, rtol=1e-4)
        assert (out.logits[i, n:] == MASKED_CHOICE_LOGIT).all()
    expected = torch.stack([o.loss for o in alone]).mean()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)


def test_teacher_cache_and_distillation_ignore_the_padded_choices(tmp_path):
    from fastformers_hf.distillation.config import DistillationConfig
    from fastformers_hf.distillation.trainer import DistillationTrainer, cache_teacher_logits

    tokenizer = tiny_tokenizer()
    raw = load_task_data(_folder(tmp_path, [4, 2, 3, 4, 2, 3, 4, 4], [4, 2]), "openbookqa",
                         loader_options={"mixed_choices": "pad"})
    train = tokenize_choices(raw["train"], tokenizer)
    teacher, student = _model(0), _model(1)
    cached = cache_teacher_logits(teacher, train, tokenizer, batch_size=3)
    logits = np.asarray(cached["teacher_logits"])  # (N, most choices)
    counts = [len(c) for c in raw["train"]["choices"]]
    assert logits.shape == (8, 4)
    for row, n in zip(logits, counts):
        assert (row[n:] == MASKED_CHOICE_LOGIT).all() and (row[:n] > MASKED_CHOICE_LOGIT / 2).all()
    args = DistillationConfig(output_dir=str(tmp_path / "distil"), max_steps=2, per_device_train_batch_size=4,
                              report_to=[], save_strategy="no", temperature=2.0, distillation_weight=0.5)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=cached, processing_class=tokenizer)
    batch = trainer.data_collator([cached[i] for i in range(3)])  # 4, 2 and 3 choices
    assert batch["teacher_logits"].shape == (3, 4) and "choice_mask" in batch
    loss, _ = trainer.compute_loss(student, dict(batch), return_outputs=True)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    assert trainer.train().training_loss > 0


def test_first_order_scores_use_the_masked_loss(tmp_path):
    from fastformers_hf.pruning import importance_scores, scoring_dataloader

    tokenizer = tiny_tokenizer()
    raw = load_task_data(_folder(tmp_path, [4, 2, 3, 4], [4, 2]), "openbookqa",
                         loader_options={"mixed_choices": "pad"})
    model = _model()
    loader = scoring_dataloader(tokenize_choices(raw["train"], tokenizer), tokenizer, batch_size=4, model=model)
    assert "choice_mask" in next(iter(loader))
    scores = importance_scores(model, "first_order", loader)
    assert all(torch.isfinite(s).all() and (s > 0).any() for s in scores.heads + scores.ffn)
    unmasked = [{k: v for k, v in b.items() if k != "choice_mask"} for b in loader]  # padded slots counted
    other = importance_scores(model, "first_order", unmasked)
    assert not all(torch.allclose(a, b) for a, b in zip(scores.heads, other.heads))


def test_compress_runs_every_stage_on_mixed_choices(tmp_path):
    from fastformers_hf.inference.multiple_choice import ChoicePredictor

    teacher = tmp_path / "teacher"
    _model().save_pretrained(teacher)
    tiny_tokenizer(save_dir=tmp_path / "vocab").save_pretrained(teacher)
    data = _folder(tmp_path, [4, 3, 2, 4, 3, 4, 2, 4, 3, 4, 4, 3], [4, 3, 2, 4])
    out = tmp_path / "out"
    argv = ["--model_name_or_path", str(teacher), "--data", str(data), "--task", "openbookqa", "--output_dir",
            str(out), "--mixed_choices", "pad", "--teacher_fine_tune_steps", "2", "--student_layers", "1",
            "--max_steps", "2", "--redistill_steps", "1", "--per_device_train_batch_size", "4",
            "--heads_per_layer", "2", "--scoring_examples", "3", "--latency_samples", "3", "--max_length", "32",
            "--onnx_tolerance", "100"]
    summary = CompressPipeline(parse(argv), log=lambda _: None).run()
    assert set(summary["final"]["points"]) == {"teacher", "pytorch", "onnx"}
    rows = load_task_data(data, "openbookqa", loader_options={"mixed_choices": "pad"})["validation"]
    inputs = [{"context": r["context"], "choices": r["choices"]} for r in rows]
    for folder in (out / "5-final", out / "5-final" / "onnx"):
        answers = ChoicePredictor.from_pretrained(folder).predict(inputs)
        assert [len(a["probabilities"]) for a in answers] == [4, 3, 2, 4]
        assert all(0 <= a["choice"] < len(a["probabilities"]) for a in answers)
