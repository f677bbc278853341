"""benchmarks/bench_tokenization.py: a smoke run on a tiny tokenizer and generated sentences writes a report with both
tokenisation paths, their medians and the ratio (that the two paths give the same ids: tests/test_classifier.py)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tokenization.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (registered first: its dataclasses look their module up while being built)."""
    spec = importlib.util.spec_from_file_location("bench_tokenization_script", SCRIPT)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_reports_both_paths_medians_and_the_ratio(bench, tokenizer, tmp_path):
    model_dir = tmp_path / "model"
    tiny_model("bert").save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    sentences = make_sentiment_data(40, 1, seed=2)["train"]["sentence"]
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{s}\t0\n" for s in sentences), encoding="utf-8")
    out = tmp_path / "report"
    report = bench.main(["--out", str(out), "--data", str(data), "--tokenizer", str(model_dir), "--model", str(model_dir),
                         "--batch_sizes", "1", "8", "--repeats", "1", "--warmup", "2", "--model_repeats", "1"])
    assert report == json.loads((out / "report.json").read_text())
    assert report["inputs"] == 40 and report["max_length"] == 128 and report["machine"]["cpu"]
    assert [r["batch_size"] for r in report["rows"]] == [1, 8] and [r["batch_size"] for r in report["after_forward"]] == [1]
    for row in report["rows"] + report["after_forward"]:
        assert set(row["paths"]) == {"transformers", "rust"}
        medians = {p: row["paths"][p]["median_us_per_input"] for p in row["paths"]}
        assert all(m > 0 for m in medians.values()) and isinstance(row["saved_us_per_input"], float)
        assert row["ratio"] == pytest.approx(medians["rust"] / medians["transformers"])
    forward = report["after_forward"][0]
    assert forward["saved_share_of_forward"] == pytest.approx(forward["saved_us_per_input"]
                                                              / forward["forward"]["median_us_per_input"])
    markdown = (out / "report.md").read_text()
    assert "| 1 |" in markdown and "| 8 |" in markdown and "rust / transformers" in markdown and "Machine:" in markdown
    assert "saved / forward" in markdown
    bench.main(["--out", str(out), "--data", str(data), "--tokenizer", str(model_dir), "--repeats", "1"])  # reruns there
