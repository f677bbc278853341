import os
import signal

import numpy as np
import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.inference.classifier import TextClassifier
from fastformers_hf.serving.batching import length_buckets
from fastformers_hf.serving.cores import physical_cores, plan_instances
from fastformers_hf.serving.multi_instance import MultiInstanceClassifier, RuntimeConfig
from fastformers_hf.serving.layout_search import TuningConfig, choose_setting, tune
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model

CORES = len(physical_cores())
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="multi-instance tests need 2 physical cores")
TEXTS = list(make_sentiment_data(120, 1, seed=5)["train"]["sentence"]) + ["", "   ", ("the film", "was good")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("runtime-model")
    tiny_model("bert").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(saved):
    return TextClassifier.from_pretrained(saved).predict_logits(TEXTS)


@pytest.fixture(scope="module")
def server(saved):
    with MultiInstanceClassifier(saved, RuntimeConfig(num_instances=2, threads_per_instance=1)) as s:
        yield s


# -- batching and core planning (no workers) -------------------------------------------------------------------------


@pytest.mark.parametrize("lengths,batch_size,sort,expected", [
    ([5, 1, 3, 2, 4], 2, True, [[1, 3], [2, 4], [0]]),
    ([5, 1, 3, 2, 4], 2, False, [[0, 1], [2, 3], [4]]),
    ([5, 1, 3], 1, True, [[0], [1], [2]]),  # batch 1: nothing to group, caller order
    ([], 4, True, []),
])
def test_length_buckets(lengths, batch_size, sort, expected):
    assert [b.tolist() for b in length_buckets(lengths, batch_size, sort)] == expected


FAKE_CORES = [[0, 2], [1, 3]]  # two physical cores with a hyper-thread sibling each


@pytest.mark.parametrize("instances,threads,policy,expected", [
    (None, 1, "error", (2, 1, [[0], [1]])),
    (1, 2, "error", (1, 2, [[0, 1]])),
    (2, 2, "clamp", (2, 1, [[0], [1]])),
    (3, 1, "clamp", (2, 1, [[0], [1]])),
])
def test_plan_instances(instances, threads, policy, expected):
    plan = plan_instances(instances, threads, policy, cores=FAKE_CORES)
    assert (plan.num_instances, plan.threads_per_instance, plan.cpus) == expected
    assert bool(plan.note) == (policy == "clamp")


def test_more_threads_than_cores_is_refused_before_starting(saved):
    with pytest.raises(FastFormersError, match="physical core"):
        plan_instances(2, 2, "error", cores=FAKE_CORES)
    with pytest.raises(FastFormersError, match=f"may use {CORES} physical core"):
        MultiInstanceClassifier(saved, RuntimeConfig(num_instances=CORES + 1))


@pytest.mark.parametrize("kwargs,match", [(dict(empty_inputs="skip"), "empty_inputs"), (dict(start_method="fork"), "fork"),
                                          (dict(oversubscribe="yes"), "oversubscribe"), (dict(batch_size=0), "batch_size")])
def test_bad_settings(kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        RuntimeConfig(**kwargs)


def test_needs_a_model_directory(tmp_path, saved):
    with pytest.raises(FastFormersError, match="no config.json"):
        MultiInstanceClassifier(tmp_path)
    with pytest.raises(FastFormersError, match="from a directory"):
        MultiInstanceClassifier(tiny_model("bert"))
    tiny_model("bert").save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(FastFormersError, match="has no tokenizer"):
        MultiInstanceClassifier(tmp_path / "no-tokenizer")


# -- the workers -----------------------------------------------------------------------------------------------------


@needs_two_cores
def test_workers_are_pinned_to_their_own_cores(server):
    assert len(set(server.pids)) == 2
    cpus = [os.sched_getaffinity(pid) for pid in server.pids]
    assert all(len(c) == 1 for c in cpus) and not cpus[0] & cpus[1]


@needs_two_cores
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_results_in_caller_order_at_any_batch_size(server, reference, batch_size):
    logits = server.predict_logits(TEXTS, batch_size=batch_size)
    # Padded batches change the matmul shapes, hence float rounding (~1e-4); the order and answers must not change.
    np.testing.assert_allclose(logits, reference, atol=1e-5 if batch_size == 1 else 1e-3)
    assert (logits.argmax(-1) == reference.argmax(-1)).all() and server.stats["queries"] == len(TEXTS)


@needs_two_cores
def test_dynamic_length_pads_each_batch_only_to_its_longest(server):
    server.predict_logits(TEXTS, batch_size=1)
    assert server.stats["padded_tokens"] == server.stats["real_tokens"]  # batch 1: no padding at all
    server.predict_logits(TEXTS, batch_size=8)
    bucketed = server.stats["padded_tokens"]
    lengths = server._check_inputs(TEXTS[:-1])[1]  # the same batches of 8 in input order would pad to this:
    in_order = sum(len(b) * max(lengths[i] for i in b) for b in length_buckets(lengths, 8, sort_by_length=False))
    in_order += server._check_inputs(TEXTS[-1:])[1][0]  # the pair, in a batch of its own
    assert server.stats["real_tokens"] <= bucketed < in_order


@needs_two_cores
def test_predict_returns_labels_and_probabilities(server, reference):
    preds = server.predict(TEXTS[:5])
    assert [p["label_id"] for p in preds] == reference[:5].argmax(-1).tolist()
    assert all(p["label"] in ("negative", "positive") and 0.5 <= p["score"] <= 1 for p in preds)
    np.testing.assert_allclose(server.predict_proba(TEXTS[:5]).sum(-1), 1.0, atol=1e-6)


@needs_two_cores
def test_killed_worker_is_replaced_and_no_request_is_lost(server, reference):
    victim = server.pids[0]
    killed = []

    def kill_once(done, total):
        if not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(done)

    crashes_before = len(server.crashes)
    logits = server.predict_logits(TEXTS * 2, batch_size=1, progress=kill_once)
    np.testing.assert_allclose(logits, np.concatenate([reference, reference]), atol=1e-5)
    assert len(server.crashes) == crashes_before + 1
    crash = server.crashes[-1]
    assert crash["pid"] == victim and crash["exitcode"] == -signal.SIGKILL and crash["requeued_requests"] > 0
    server.wait_until_ready()
    assert victim not in server.pids and all(server.pids)
    np.testing.assert_allclose(server.predict_logits(TEXTS), reference, atol=1e-5)  # the replacement serves


@needs_two_cores
@pytest.mark.parametrize("inputs,match", [([None], "input 0 is a NoneType"), (["ok", 3], "input 1 is a int")])
def test_non_text_is_refused_and_the_server_keeps_working(server, inputs, match):
    with pytest.raises(FastFormersError, match=match):
        server.predict(inputs)
    assert len(server.predict(["fine", "", "  "])) == 3  # empty strings are predicted by default


@needs_two_cores
def test_long_inputs_are_truncated_and_counted(server, caplog):
    long_text = " ".join(["good"] * 200)  # the tiny model takes 128 positions
    with caplog.at_level("WARNING"):
        server.predict(["good", long_text, long_text], batch_size=1)
    assert server.stats["truncated"] == 2 and "2 input(s) longer than 128 tokens were truncated" in caplog.text


def test_strict_policies_refuse_empty_and_long_inputs(saved, caplog):
    config = RuntimeConfig(num_instances=1, empty_inputs="error", long_inputs="error", max_length=16)
    with MultiInstanceClassifier(saved, config) as strict:
        with pytest.raises(FastFormersError, match="empty or blank .*index 1"):
            strict.predict(["good", " "])
        with pytest.raises(FastFormersError, match="exceed 16 tokens"):
            strict.predict([" ".join(["good"] * 40)])
        assert len(strict.predict(["good"])) == 1
    with pytest.raises(FastFormersError, match="closed"):
        strict.predict(["good"])


def test_onnx_model_directory_runs_in_workers(saved, tmp_path, reference):
    from fastformers_hf import export_onnx

    onnx_dir = export_onnx(saved, tmp_path / "onnx")
    with MultiInstanceClassifier(onnx_dir, RuntimeConfig(num_instances=1)) as s:
        assert s.backend == "onnxruntime"
        np.testing.assert_allclose(s.predict_logits(TEXTS, batch_size=4), reference, atol=1e-4)


# -- tuning ----------------------------------------------------------------------------------------------------------


@needs_two_cores
def test_tune_picks_the_fastest_measured_setting(saved):
    config = TuningConfig(layouts=[(2, 1)], batch_sizes=[1, 8], sample_size=60, repeats=1)
    result = tune(saved, TEXTS, config)
    assert len(result.rows) == 2 and result.best in result.rows
    assert result.best["queries_per_s"] == max(r["queries_per_s"] for r in result.rows)
    assert all(r["queries_per_s"] > 0 and r["p90_batch_ms"] > 0 for r in result.rows)
    chosen = result.runtime_config()
    assert (chosen.num_instances, chosen.batch_size) == (2, result.best["batch_size"])
    assert "**chosen**" in result.table()


ROWS = [dict(instances=2, threads=1, batch_size=32, queries_per_s=900.0, p90_batch_ms=40.0),
        dict(instances=2, threads=1, batch_size=8, queries_per_s=700.0, p90_batch_ms=12.0),
        dict(instances=1, threads=2, batch_size=1, queries_per_s=300.0, p90_batch_ms=3.0)]


@pytest.mark.parametrize("bound,expected", [(None, 0), (50.0, 0), (20.0, 1), (5.0, 2)])
def test_choice_under_a_latency_bound(bound, expected):
    rows = [dict(r, other_load_cores=0.0, disturbed=False) for r in ROWS]
    assert choose_setting(rows, bound).best is rows[expected]


def test_an_impossible_latency_bound_says_so():
    with pytest.raises(FastFormersError, match="no setting keeps p90 batch latency within 1.0 ms"):
        choose_setting([dict(r, other_load_cores=0.0, disturbed=False) for r in ROWS], 1.0)
    with pytest.raises(FastFormersError, match="latency_bound_ms must be > 0"):
        TuningConfig(latency_bound_ms=0)
