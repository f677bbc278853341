"""Real-data check on SQuAD from ../shared (slow: run with `pytest -m slow`): the reference QA teacher scores what
its card says through our loader, predictor and metric, and answers like transformers' pipeline."""
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SQUAD, TEACHER = SHARED / "data" / "squad", SHARED / "models" / "squad-minilm-teacher"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SQUAD / "dev.json").exists() or not TEACHER.exists(),
                                 reason="needs ../shared/data/squad and ../shared/models/squad-minilm-teacher")]


def test_reference_teacher_reaches_its_published_scores_and_matches_the_pipeline():
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    from fastformers_hf import QuestionAnswerer, QuestionAnsweringConfig, load_squad, squad_metrics

    dev = load_squad(SQUAD)["validation"]
    # The card's pipeline settings: max_seq_len 384, doc_stride 128, max answer 30 (top_k=1: 12 spans per window).
    config = QuestionAnsweringConfig(max_length=384, doc_stride=128, n_best=12, max_answer_length=30, batch_size=16)
    answers = QuestionAnswerer.from_pretrained(TEACHER, config=config).predict(dev)
    scores = squad_metrics({i: a["answer"] for i, a in zip(dev["id"], answers)}, dev)
    assert scores == pytest.approx({"exact_match": 43.9, "f1": 59.0}, abs=0.05)

    pipe = pipeline("question-answering", model=AutoModelForQuestionAnswering.from_pretrained(TEACHER),
                    tokenizer=AutoTokenizer.from_pretrained(TEACHER))
    few = dev.select(range(40))
    theirs = pipe([{"question": q, "context": c} for q, c in zip(few["question"], few["context"])],
                  max_seq_len=384, doc_stride=128, max_answer_len=30)
    for ours, ref in zip(answers, theirs):
        assert (ours["answer"], ours["start"], ours["end"]) == (ref["answer"], ref["start"], ref["end"])
        assert ours["score"] == pytest.approx(ref["score"], abs=1e-4)
