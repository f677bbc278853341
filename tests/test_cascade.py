import json

import numpy as np
import pytest

from fastformers_hf import CascadeClassifier, CascadeConfig, FastFormersError, cascade_curve
from fastformers_hf.cascade.model import confidence_scores, fit_temperature, measure_throughput, softmax
from fastformers_hf.inference.classifier import TextClassifier
from fastformers_hf.tasks.metrics import METRICS
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model, tiny_tokenizer

DATA = make_sentiment_data(10, 48, seed=5)["validation"]
TEXTS, LABELS = list(DATA["sentence"]), list(DATA["label"])


def save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiers(tmp_path_factory, tokenizer, trained_teacher):
    """Tier 1: a random 1-layer BERT (spread-out confidences) with its OWN tokenizer (vocabulary in another order);
    tier 2: the fine-tuned tiny teacher."""
    root = tmp_path_factory.mktemp("tiers")
    words = list(reversed(sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)[5:]))
    tok1 = tiny_tokenizer(words, save_dir=root / "tok1")
    tier1 = save(tiny_model("bert", seed=3, num_layers=1, initializer_range=0.6), tok1, root / "tier1")
    tier2 = save(trained_teacher, tokenizer, root / "tier2")
    return tier1, tier2


def accuracy(results):
    return float(np.mean([r["label_id"] == y for r, y in zip(results, LABELS)]))


# -- the curve: analytic vs brute force -------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
@pytest.mark.parametrize("confidence", ["max_prob", "entropy"])
def test_curve_matches_one_cascade_run_per_threshold(tiers, metric, confidence):
    cascade = CascadeClassifier(*tiers, confidence=confidence, tier1_batch_size=4, tier2_batch_size=3)
    curve = cascade.calibrate(TEXTS, LABELS, metric=metric, target=0.5, random_trials=3)
    t = curve.arrays("tangobert")
    assert t["share"][0] == 0 and len(t["share"]) > 10  # one point per distinct confidence
    assert np.all(np.diff(t["share"]) > 0) and np.all(np.diff(t["cost_ms"]) >= 0)
    for i in range(0, len(t["threshold"]), 3):  # brute force: a real run at each threshold
        results = cascade.configure(threshold=float(t["threshold"][i])).predict(TEXTS)
        assert np.mean([r["tier"] == 2 for r in results]) == pytest.approx(t["share"][i])
        value = METRICS[metric](np.asarray(LABELS), np.asarray([r["label_id"] for r in results]))
        assert value == pytest.approx(t["value"][i])
    assert t["value"][-1] == pytest.approx(curve.tier2["value"])  # everything escalated = tier 2 alone


def test_curve_costs_and_baselines_follow_the_formulas():
    rng = np.random.default_rng(0)
    l1, l2 = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) * 3
    labels = rng.integers(0, 3, size=50)
    curve = cascade_curve(l1, l2, labels, tier1_ms=1.0, tier2_ms=4.0)
    t, r, o = curve.arrays("tangobert"), curve.arrays("random"), curve.arrays("oracle")
    np.testing.assert_allclose(t["cost_ms"], 1.0 + t["share"] * 4.0)  # cost1 + share * cost2
    np.testing.assert_allclose(t["speedup"], 4.0 / t["cost_ms"])
    acc1, acc2 = (l1.argmax(-1) == labels).mean(), (l2.argmax(-1) == labels).mean()
    np.testing.assert_allclose(r["value"], acc1 + r["share"] * (acc2 - acc1))  # random: linear in expectation
    assert o["value"].max() == pytest.approx(((l1.argmax(-1) == labels) | (l2.argmax(-1) == labels)).mean())
    assert np.all(o["value"] >= np.interp(o["share"], t["share"], t["value"]) - 1e-12)  # nothing beats the oracle
    conf = confidence_scores(softmax(l1), "max_prob")
    for thr, share in zip(t["threshold"], t["share"]):  # each threshold escalates exactly its share
        assert (conf < thr).mean() == pytest.approx(share)


def test_per_example_costs_charge_the_escalated_inputs_own_cost():
    l1 = np.array([[0.0, 0.1], [0.0, 3.0], [0.0, 0.5]])  # confidences: lowest, highest, middle
    curve = cascade_curve(l1, l1, [1, 1, 1], tier1_ms=[1, 1, 1], tier2_ms=[10.0, 20.0, 30.0])
    np.testing.assert_allclose(curve.tangobert["cost_ms"], [1.0, 1 + 10 / 3, 1 + 40 / 3, 1 + 60 / 3])


@pytest.mark.parametrize("kwargs,match", [
    (dict(target=1.2), r"Best reachable point: accuracy 0.8000 \(100.00% of tier 2\) at threshold"),
    (dict(target=None, latency_budget_ms=0.5), "tier 1 alone costs 1.000 ms"),
])
def test_unreachable_target_or_budget_names_the_best_point(kwargs, match):
    logits = np.array([[3.0, 0]] * 8 + [[0, 0.1]] * 2)  # right on 8 (confident), wrong on 2 (unsure)
    curve = cascade_curve(logits, logits, np.zeros(10, dtype=int), 1.0, 4.0)
    assert max(curve.tangobert["value"]) == pytest.approx(0.8)  # no mix beats 0.8 when both tiers agree
    with pytest.raises(FastFormersError, match=match):
        curve.choose(**kwargs)


def test_versus_random_reports_where_confidence_routing_falls_below_random():
    labels = np.zeros(10, dtype=int)
    # Tier 1 is wrong exactly on its 3 most confident inputs: escalating the unsure ones first gains nothing at first.
    l1 = np.array([[0.1 * i, 0] for i in range(7)] + [[0, 5.0 + i] for i in range(3)])
    l2 = np.array([[2.0, 0]] * 10)  # always right
    vr = cascade_curve(l1, l2, labels, 1.0, 4.0).versus_random()
    assert vr["points_below"] > 0 and 0 < vr["max_share_below"] < 1 and vr["min_margin"] < 0


def test_choice_takes_the_fastest_point_reaching_the_target_or_the_best_within_budget():
    labels = np.array([0] * 10)
    l1 = np.array([[3.0 - i * 0.3, 0] if i < 7 else [0, 0.1 * (i - 6)] for i in range(10)])  # wrong on the 3 unsure
    l2 = np.array([[2.0, 0]] * 10)  # always right
    curve = cascade_curve(l1, l2, labels, 1.0, 4.0)
    p99 = curve.choose(0.99)
    assert p99["value"] == pytest.approx(1.0) and p99["share"] == pytest.approx(0.3)
    p = curve.choose(target=None, latency_budget_ms=1.0 + 0.2 * 4.0)  # room for 2 escalations
    assert p["share"] == pytest.approx(0.2) and p["value"] == pytest.approx(0.9)
    assert curve.versus_random()["min_margin"] >= 0 and curve.versus_random()["share_of_points_at_or_above"] == 1.0
    assert curve.versus_random()["points_below"] == 0 and curve.versus_random()["max_share_below"] == 0.0
    for method in ("tangobert", "random", "oracle"):
        assert curve.speedup_at(0.98, method)["speedup"] <= curve.speedup_at(0.98, "oracle")["speedup"] + 1e-9
    assert curve.speedup_at(0.99, "random")["share"] == pytest.approx(1.0)  # random must send (almost) all


def test_temperature_is_fitted_and_keeps_the_binary_ranking():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=400)
    logits = np.stack([np.zeros(400), np.where(labels == 1, 1.0, -1.0) + rng.normal(scale=1.5, size=400)], -1) * 4
    temperature = fit_temperature(logits, labels)
    assert temperature > 2  # 4x overconfident logits need T around 4
    a = cascade_curve(logits, logits, labels, 1.0, 2.0)
    b = cascade_curve(logits, logits, labels, 1.0, 2.0, temperature=temperature)
    np.testing.assert_allclose(a.tangobert["share"], b.tangobert["share"])  # same order, other thresholds
    assert b.tangobert["threshold"][1] > a.tangobert["threshold"][1] - 1 and b.temperature == pytest.approx(temperature)


def test_entropy_confidence_is_between_zero_and_one():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    np.testing.assert_allclose(confidence_scores(probs, "entropy")[:2], [0.0, 1.0])
    assert 0 < confidence_scores(probs, "entropy")[2] < confidence_scores(probs, "max_prob")[2]


# -- routing, order and streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("b1,b2,threshold", [(1, 1, 0.6), (4, 3, 0.6), (16, 8, 0.55), (4, 3, 0.0), (4, 3, 1.0)])
def test_each_input_is_answered_by_the_right_tier_in_the_callers_order(tiers, b1, b2, threshold):
    cascade = CascadeClassifier(*tiers, threshold=threshold, tier1_batch_size=b1, tier2_batch_size=b2)
    ref1 = TextClassifier.from_pretrained(tiers[0]).predict(TEXTS)  # each tier alone, own tokenizer
    ref2 = TextClassifier.from_pretrained(tiers[1]).predict(TEXTS)
    results = cascade.predict(TEXTS)
    assert len(results) == len(TEXTS)
    for r, a, b in zip(results, ref1, ref2):
        expected = a if a["score"] >= threshold else b
        assert (r["tier"], r["label"]) == ((1 if expected is a else 2), expected["label"])
        assert r["score"] == pytest.approx(expected["score"], abs=1e-5)
        assert r["confidence"] == pytest.approx(a["score"], abs=1e-5)
    assert {r["tier"] for r in results} == ({1} if threshold == 0 else {2} if threshold == 1 else {1, 2})


def test_streaming_gathers_tier2_batches_until_full_or_flushed(tiers):
    cascade = CascadeClassifier(*tiers, threshold=0.6, tier1_batch_size=2, tier2_batch_size=4)
    expected = cascade.predict(TEXTS)
    got, held_back = [], 0
    for text in TEXTS:
        got += cascade.submit(text)
        assert len(cascade._stream.tier2_queue) < 4 and len(cascade._stream.tier1_queue) < 2
        held_back = max(held_back, cascade.pending)
    assert held_back > 0 and cascade.pending < 4 + 2
    got += cascade.flush()
    assert cascade.pending == 0
    assert sorted(r["index"] for r in got) == list(range(len(TEXTS)))
    got.sort(key=lambda r: r["index"])
    assert [(r["label"], r["tier"]) for r in got] == [(r["label"], r["tier"]) for r in expected]


def test_streaming_timeout_runs_partial_batches(tiers):
    cascade = CascadeClassifier(*tiers, threshold=1.0, tier1_batch_size=8, tier2_batch_size=8, max_wait_s=0.0)
    assert [r["tier"] for r in cascade.submit(TEXTS[:3])] == [2, 2, 2] and cascade.pending == 0
    waiting = CascadeClassifier(*tiers, threshold=1.0, tier1_batch_size=8, tier2_batch_size=8, max_wait_s=3600)
    assert waiting.submit(TEXTS[:3]) == [] and waiting.poll() == [] and waiting.pending == 3
    assert [r["index"] for r in waiting.flush()] == [0, 1, 2]


def test_tiers_as_loaded_models_and_classifiers(tiers, tokenizer, trained_teacher):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model1 = AutoModelForSequenceClassification.from_pretrained(tiers[0])
    from_objects = CascadeClassifier(model1, TextClassifier.from_pretrained(tiers[1]), threshold=0.6,
                                     tier1_tokenizer=AutoTokenizer.from_pretrained(tiers[0]))
    assert from_objects.predict(TEXTS) == CascadeClassifier(*tiers, threshold=0.6).predict(TEXTS)
    with pytest.raises(FastFormersError, match="tier1_tokenizer"):
        CascadeClassifier(model1, tiers[1])


def test_onnx_tier(tiers, tmp_path):
    from fastformers_hf import export_onnx

    onnx1 = export_onnx(tiers[0], tmp_path / "onnx1")
    cascade = CascadeClassifier(onnx1, tiers[1], threshold=0.6)
    assert cascade.tier1.backend == "onnxruntime" and cascade.tier2.backend == "pytorch"
    reference = CascadeClassifier(*tiers, threshold=0.6).predict(TEXTS)
    results = cascade.predict(TEXTS)
    close = [abs(a["confidence"] - b["confidence"]) < 1e-4 for a, b in zip(results, reference)]
    assert all(close) and [r["tier"] for r in results] == [r["tier"] for r in reference]


# -- bad input -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_tiers(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("odd")
    swapped = tiny_model("bert", seed=1)
    swapped.config.id2label, swapped.config.label2id = {0: "positive", 1: "negative"}, {"positive": 0, "negative": 1}
    return {"swapped": save(swapped, tokenizer, root / "swapped"),
            "three": save(tiny_model("bert", seed=1, num_labels=3), tokenizer, root / "three")}


@pytest.mark.parametrize("case,match", [
    ("label_order", "the same labels in a different order"),
    ("label_set", "different label sets"),
    ("threshold_high", r"threshold must be in \[0, 1\], got 1.5"),
    ("threshold_low", r"threshold must be in \[0, 1\], got -0.1"),
    ("unknown_setting", "unknown cascade setting"),
    ("bad_confidence", "confidence 'margin' is unknown"),
    ("empty_validation", "validation set is empty"),
    ("label_not_known", "label 'neutral' is not one of the tiers' labels"),
    ("label_count", "3 inputs but 2 labels"),
    ("target_unreachable", "Best reachable point"),
    ("not_a_model", "holds no model"),
    ("no_cascade_here", "holds no cascade_config.json"),
])
def test_bad_input_raises_a_clear_error(tiers, odd_tiers, tmp_path, case, match):
    def run():
        if case == "label_order":
            CascadeClassifier(tiers[0], odd_tiers["swapped"])
        elif case == "label_set":
            CascadeClassifier(tiers[0], odd_tiers["three"])
        elif case == "threshold_high":
            CascadeClassifier(*tiers, threshold=1.5)
        elif case == "threshold_low":
            CascadeClassifier(*tiers).threshold = -0.1
        elif case == "unknown_setting":
            CascadeClassifier(*tiers, treshold=0.5)
        elif case == "bad_confidence":
            CascadeClassifier(*tiers, confidence="margin")
        elif case == "empty_validation":
            CascadeClassifier(*tiers).calibrate([], [])
        elif case == "label_not_known":
            CascadeClassifier(*tiers).calibrate(TEXTS[:2], ["positive", "neutral"])
        elif case == "label_count":
            CascadeClassifier(*tiers).calibrate(TEXTS[:3], LABELS[:2])
        elif case == "target_unreachable":
            CascadeClassifier(*tiers).calibrate(TEXTS, LABELS, target=1.5)
        elif case == "not_a_model":
            CascadeClassifier(tmp_path, tiers[1])
        elif case == "no_cascade_here":
            CascadeClassifier.from_pretrained(tmp_path)

    with pytest.raises(FastFormersError, match=match):
        run()


def test_failed_calibration_changes_nothing(tiers):
    cascade = CascadeClassifier(*tiers, threshold=0.7)
    with pytest.raises(FastFormersError):
        cascade.calibrate(TEXTS, LABELS, target=1.5)
    assert cascade.threshold == 0.7 and cascade.curve is None


# -- save / load ---------------------------------------------------------------------------------------------------


def test_save_and_reload_round_trip(tiers, tmp_path):
    cascade = CascadeClassifier(*tiers, tier1_batch_size=4, tier2_batch_size=2)
    curve = cascade.calibrate(TEXTS, [("negative", "positive")[y] for y in LABELS], target=0.95, fit_temperature=True)
    assert cascade.threshold == curve.chosen["threshold"] and cascade.config.temperature == curve.temperature
    out = cascade.save_pretrained(tmp_path / "cascade")
    for name in ("cascade_config.json", "cascade_curve.json", "cascade.md", "cascade_curve.png", "tier1/config.json",
                 "tier2/config.json", "tier1/tokenizer.json", "tier2/model.safetensors"):
        assert (out / name).exists(), name
    assert json.loads((out / "cascade_config.json").read_text())["tier1"] == "tier1"  # relative: portable
    loaded = CascadeClassifier.from_pretrained(out)
    assert loaded.config == cascade.config and loaded.curve.to_dict() == curve.to_dict()
    assert loaded.predict(TEXTS) == cascade.predict(TEXTS)
    assert CascadeClassifier.from_pretrained(out, threshold=0.0).threshold == 0.0

    by_path = cascade.save_pretrained(tmp_path / "light", copy_tiers=False)
    assert not (by_path / "tier1").exists()
    assert CascadeClassifier.from_pretrained(by_path).predict(TEXTS) == cascade.predict(TEXTS)
    with pytest.raises(FastFormersError, match="inside the input"):
        cascade.save_pretrained(tiers[0] / "cascade")


def test_measure_throughput_reports_every_system(tiers):
    cascade = CascadeClassifier(*tiers, threshold=0.6, tier1_batch_size=4, tier2_batch_size=4)
    result = measure_throughput(cascade, TEXTS, LABELS, repeats=1)
    assert result["tier2"]["speedup_vs_tier2"] == 1.0
    assert result["cascade"]["accuracy"] == pytest.approx(accuracy(cascade.predict(TEXTS)))
    assert 0 < result["cascade"]["share_tier2"] < 1


# -- CLI -----------------------------------------------------------------------------------------------------------


def test_cli_calibrate_predict_bench(tiers, tmp_path, capsys):
    from fastformers_hf.cli import main

    DATA.to_csv(tmp_path / "dev.tsv", sep="\t", index=False)
    out = tmp_path / "cascade"
    assert main(["cascade", "calibrate", "--tier1", str(tiers[0]), "--tier2", str(tiers[1]), "--data",
                 str(tmp_path / "dev.tsv"), "--target", "0.9", "--tier2_batch_size", "4", "--output_dir", str(out)]) == 0
    assert "Chosen threshold" in capsys.readouterr().out
    (tmp_path / "in.txt").write_text("\n".join(TEXTS[:5]) + "\n")
    assert main(["cascade", "predict", "--cascade", str(out), "--input", str(tmp_path / "in.txt")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in lines] == [r["label"] for r in CascadeClassifier.from_pretrained(out).predict(TEXTS[:5])]
    assert main(["cascade", "bench", "--cascade", str(out), "--data", str(tmp_path / "dev.tsv"), "--repeats", "1"]) == 0
    assert "| cascade | 8 / 4 |" in capsys.readouterr().out
    assert main(["cascade", "frobnicate"]) == 2


def test_pushed_with_the_model_and_loaded_back_by_repo_id(tiers, tmp_path, monkeypatch):
    """push_to_hub(..., extra_dirs={"cascade": dir}) to the loopback Hub, then from_pretrained(repo, subfolder=...)
    in a fresh process with an empty cache (huggingface_hub reads HF_ENDPOINT at import)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import huggingface_hub.constants

    sys.path.insert(0, str(Path(__file__).parent))
    from hub_server import HubServer

    from fastformers_hf import push_to_hub

    cascade = CascadeClassifier(*tiers, threshold=0.6)
    saved = cascade.save_pretrained(tmp_path / "cascade")
    with HubServer(token="hf_test_write_token") as server:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.warns(UserWarning):  # no measurements recorded for the tiny model
            push_to_hub(tiers[1], "org/cascaded", token="hf_test_write_token", extra_dirs={"cascade": saved})
        assert {"cascade/cascade_config.json", "cascade/tier1/tokenizer.json", "cascade/tier2/config.json"} <= set(
            server.files("org/cascaded"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1")
        code = ("import json, sys; from fastformers_hf import CascadeClassifier; "
                "c = CascadeClassifier.from_pretrained('org/cascaded', subfolder='cascade', token='hf_test_write_token'); "
                "print(json.dumps(c.predict(json.loads(sys.argv[1]))))")
        out = subprocess.run([sys.executable, "-c", code, json.dumps(TEXTS[:6])], env=env, capture_output=True,
                             text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == cascade.predict(TEXTS[:6])


def test_bootstrap_guard_asks_for_more_margin_on_a_small_set():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=120)
    margin = rng.normal(1.0, 1.5, size=120)  # tier 1 right where margin > 0, unsure near 0
    l1 = np.stack([np.zeros(120), np.where(labels == 1, margin, -margin)], -1)
    l2 = np.stack([np.zeros(120), np.where(labels == 1, 2.0, -2.0)], -1)  # tier 2 always right
    l2[:6] *= -1  # ... but for 6
    plain = cascade_curve(l1, l2, labels, 1.0, 3.0)
    guarded = cascade_curve(l1, l2, labels, 1.0, 3.0, confidence_level=0.9, bootstrap_samples=300)
    lower = np.asarray(guarded.tangobert["relative_lower"])
    relative = np.asarray(guarded.tangobert["value"]) / guarded.tier2["value"]
    assert np.all(lower <= relative + 1e-12)  # a lower bound
    assert guarded.choose(0.99)["share"] > plain.choose(0.99)["share"]  # the guard escalates more
    assert guarded.choose(0.99)["threshold"] == guarded.speedup_at(0.99, guarded=True)["threshold"]
    with pytest.raises(FastFormersError, match="not reached with confidence 0.9"):
        guarded.choose(1.2)
    with pytest.raises(FastFormersError, match="metric='accuracy' only"):
        from fastformers_hf import CalibrationConfig
        CalibrationConfig(confidence_level=0.9, metric="f1")
