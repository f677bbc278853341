import numpy as np
import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.benchmarks.ablation import (AblationConfig, Step, boolq_like_pairs, chain_rows, checks, markdown_table,
                                     stratified)


@pytest.fixture(scope="module")
def bert_tokenizer():
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(__file__).resolve().parents[2] / "shared" / "models" / "sst2-minilm-teacher"
    if not path.exists():
        pytest.skip("the shared MiniLM teacher (its tokenizer) is not available")
    return AutoTokenizer.from_pretrained(path)


def test_boolq_like_pairs_have_the_asked_lengths(bert_tokenizer):
    pairs = boolq_like_pairs(bert_tokenizer, 400, median=140, low=32, high=512, seed=0)
    lengths = [len(ids) for ids in bert_tokenizer([q for q, _ in pairs], [p for _, p in pairs])["input_ids"]]
    assert min(lengths) == 32 and max(lengths) == 512
    assert 120 <= np.median(lengths) <= 160
    assert pairs == boolq_like_pairs(bert_tokenizer, 400, seed=0)  # seeded


@pytest.mark.parametrize("n", [3, 10, 25])
def test_stratified_sample_spreads_over_lengths(n):
    items = list(range(100))
    lengths = items  # item i has length i
    picked = stratified(items, lengths, n)
    assert len(picked) == n and len(set(picked)) == n
    assert abs(np.median(picked) - 49.5) <= 100 / n  # representative, not a prefix of short ones


def test_stratified_cycles_when_asked_for_more():
    picked = stratified(list("abc"), [1, 2, 3], 7)
    assert len(picked) == 7 and {picked.count(x) for x in "abc"} <= {2, 3}


def _steps(accuracies=(None, None, None)):
    names = ["base", "fast", "ref"]
    return [Step(n, n, "1 x 2", lambda items: None, in_chain=(n != "ref"), accuracy=a) for n, a in zip(names, accuracies)]


def _timing(qps, cpu=(0.5, 0.05, 0.1)):
    return {n: {"queries_per_s": q, "cpu_s_per_query": c, "other_load_median": 0.0, "other_load_max": 0.4,
                "disturbed_passes": 1, "queries_per_pass": 10, "passes": [{}] * 5}
            for n, q, c in zip(["base", "fast", "ref"], qps, cpu)}


def test_chain_rows_speedups_cost_and_energy():
    config = AblationConfig(instance_usd_per_hour=0.5, instance_physical_cores=8, watts_per_core=4.0)
    rows = chain_rows(_steps(), _timing([2.0, 500.0, 100.0]), config, measured_cores=2)
    base, fast, ref = rows
    assert base["cumulative_speedup"] == 1.0 and fast["step_speedup"] == pytest.approx(250.0)
    assert "step_speedup" not in ref and ref["cumulative_speedup"] == pytest.approx(50.0)  # off-chain: vs baseline
    # 2 q/s on 2 cores -> 8 q/s on the 8-core instance -> 1e8 / 8 s = 3472.2 h at 0.5 USD
    assert base["usd_per_100m"] == pytest.approx(0.5 * 1e8 / 8 / 3600)
    assert base["joules_per_query"] == pytest.approx(2.0) and base["ms_per_query"] == pytest.approx(500.0)


def test_accuracy_delta_and_checks():
    config = AblationConfig()
    rows = chain_rows(_steps((0.90, 0.885, 0.885)), _timing([2.0, 500.0, 100.0]), config, 2, reference_accuracy=0.90)
    assert rows[1]["accuracy_delta_points"] == pytest.approx(-1.5)
    table = markdown_table(rows, with_accuracy=True, paper=False)
    assert "| fast | 88.50 | -1.50 |" in table and table.count("\n") == 4
    report = {"tables": {"sst2": {"rows": rows, "multi_instance_vs_one_instance": 1.9, "fastest_loss_points": 1.5},
                         "shapes": {"rows": rows, "multi_instance_vs_one_instance": 1.5}}}
    # shapes: 250x >= 233.9x, multi-instance 1.5x < 1.8x; SST-2: 1.9x >= 1.8x, loses 1.5 > 1.2 points
    assert [c["ok"] for c in checks(report)] == [True, False, True, False]


def test_a_loss_of_exactly_the_limit_is_within_it():
    rows = chain_rows(_steps((0.614, 0.602)), _timing([2.0, 150.0]), AblationConfig(), 2, reference_accuracy=0.614)
    assert rows[1]["accuracy_delta_points"] == -1.2  # not -1.2000000000000002


def test_boolq_checks_the_loss_and_the_speed_up_of_its_fastest_row():
    rows = chain_rows(_steps((0.70, 0.69)), _timing([2.0, 150.0]), AblationConfig(), 2, reference_accuracy=0.70)
    table = {"rows": rows, "multi_instance_vs_one_instance": 1.85, "fastest_loss_points": 1.0,
             "fastest_speedup": rows[-1]["cumulative_speedup"], "sources": {"chance": 0.62}}
    # 1.85x >= 1.8x; teacher 70% is 8 points above chance; 1.0 <= 1.2 points; 75x >= 50x
    assert [(c["check"].split(":")[0], c["ok"]) for c in checks({"tables": {"boolq": table}})] == \
        [("BoolQ", True)] * 4
    slow = dict(table, fastest_speedup=40.0, fastest_loss_points=1.5, sources={"chance": 0.68})
    assert [c["ok"] for c in checks({"tables": {"boolq": slow}})] == [True, False, False, False]


def test_the_boolq_chain_needs_the_compress_run(tmp_path):
    from fastformers_hf.benchmarks.ablation_real import boolq_chain

    (tmp_path / "run" / "1-distill").mkdir(parents=True)
    (tmp_path / "run" / "1-distill" / "stage.json").write_text("{}")
    with pytest.raises(FastFormersError, match=r"lacks the compress stage\(s\) 0-teacher, 3-redistill.*"
                                                r"bench_superglue.py --tasks boolq.*--boolq_compress"):
        boolq_chain(AblationConfig(boolq_compress=str(tmp_path / "run")))


@pytest.mark.parametrize("kwargs,match", [(dict(tables="shapes,mnli"), "unknown table"), (dict(rounds=0), "rounds"),
                                          (dict(median_tokens=600), "median_tokens")])
def test_bad_settings(kwargs, match):
    with pytest.raises(FastFormersError, match=match):
        AblationConfig(**kwargs)


def testint8_builds_choose_per_thread_count_and_are_cached(tmp_path):
    from fastformers_hf import VariantChoiceConfig, prune
    from fastformers_hf.benchmarks.ablation import int8_builds
    from fastformers_hf.testing import tiny_model, tiny_tokenizer
    from fastformers_hf.utils.io import read_json

    tokenizer = tiny_tokenizer()
    for name, model in [("student", tiny_model("bert")), ("pruned", prune(tiny_model("bert"), heads_per_layer=2,
                                                                             ffn_width=16, method="magnitude"))]:
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    config = VariantChoiceConfig(candidates=["int8", "int8-unfused-ln"], tolerance=100.0, sample_size=4,
                                 latency_repeats=1, warmup=0)
    builds = int8_builds(tmp_path / "student", tmp_path / "pruned", tmp_path / "out", config, threads=2)
    reports = {k: read_json(builds[k] / "onnx_variants.json") for k in ("int8", "int8_1thread", "pruned_int8")}
    assert [r["config"]["session"]["intra_op_num_threads"] for r in reports.values()] == [2, 1, 1]
    assert builds["int8_1thread"] != builds["int8"]
    # The pruned graph is the variant chosen for the 1-thread instances it serves in.
    assert reports["pruned_int8"]["chosen"] == builds["int8_1thread_variant"] == reports["int8_1thread"]["chosen"]
    stamps = {k: (builds[k] / "onnx_variants.json").stat().st_mtime_ns for k in reports}
    again = int8_builds(tmp_path / "student", tmp_path / "pruned", tmp_path / "out", config, threads=2)
    assert again == builds and stamps == {k: (builds[k] / "onnx_variants.json").stat().st_mtime_ns for k in reports}


def test_the_boolq_chain_runs_end_to_end_on_tiny_models(tmp_path):
    """Every step of the BoolQ table on tiny models standing in for a compress run: each step answers every dev pair,
    the pruned step serves the pruned model, and the report holds the chain with its checks."""
    import json

    from fastformers_hf import prune
    from fastformers_hf.benchmarks.ablation import run_ablation
    from fastformers_hf.testing import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    run = tmp_path / "run"
    models = {"0-teacher": tiny_model("bert", num_layers=2), "1-distill": tiny_model("bert", num_layers=1, seed=1)}
    models["3-redistill"] = prune(tiny_model("bert", num_layers=1, seed=1), heads_per_layer=2, ffn_width=32,
                                  method="magnitude")
    for stage, model in models.items():
        model.save_pretrained(run / stage)
        tokenizer.save_pretrained(run / stage)
        (run / stage / "stage.json").write_text("{}")
    data = tmp_path / "boolq"
    data.mkdir()
    words = ["good", "bad", "great", "awful", "the", "film", "was"]
    for name, n in (("train", 40), ("dev", 12)):
        rows = [{"question": f"was the film {words[i % 4]}", "passage": " ".join(words[(i + j) % 7] for j in range(9)),
                 "label": bool(i % 3)} for i in range(n)]
        (data / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = AblationConfig(out=str(tmp_path / "out"), tables="boolq", boolq_compress=str(run), boolq_dir=str(data),
                            boolq_max_length=32, boolq_choice_examples=8, rounds=1, pass_seconds=0.05)
    report = run_ablation(config)
    table = report["tables"]["boolq"]
    chain = [r for r in table["rows"] if r["in_chain"]]
    assert [r["step"].split(" ")[0] for r in chain] == ["MiniLM-L6", "+", "+", "+", "+", "+"]
    assert "padded to 32" in chain[0]["step"] and "2 heads / FFN 32" in chain[-1]["step"]
    assert all(0 <= r["accuracy"] <= 1 and r["queries_per_s"] > 0 for r in table["rows"])
    assert table["sources"]["chance"] == pytest.approx(8 / 12)
    assert sum(c["check"].startswith("BoolQ") for c in report["checks"]) == 4
    assert "## 1. BoolQ dev (12 pairs)" in (tmp_path / "out" / "ablation.md").read_text()
    assert (tmp_path / "out" / "ablation.png").is_file()
