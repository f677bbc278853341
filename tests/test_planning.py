import pytest

from fastformers_hf import FastFormersError
from fastformers_hf.cli import main
from fastformers_hf.pipeline.planning import ShapeTiming, candidate_shapes, largest_within, time_shapes
from fastformers_hf.testing import tiny_config


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_candidate_shapes_include_the_full_model_first(model_type):
    config = tiny_config(model_type, num_layers=4, num_heads=4, intermediate_size=64)
    shapes = candidate_shapes(config, layers=[1, 2], ratios=[1.0, 0.5])
    assert shapes[0] == (4, 4, 64)
    assert set(shapes) == {(4, 4, 64), (1, 4, 64), (1, 2, 32), (2, 4, 64), (2, 2, 32)}


@pytest.mark.parametrize("layers,ratios,match", [([5], [1.0], "between 1 and"), ([1], [0.0], r"ratios must be in \(0, 1\]"),
                                                 ([1], [1.5], "ratios")])
def test_bad_candidates(layers, ratios, match):
    with pytest.raises(FastFormersError, match=match):
        candidate_shapes(tiny_config("bert"), layers, ratios)


def test_timing_gives_every_shape_a_latency_and_smaller_shapes_fewer_parameters():
    config = tiny_config("bert", num_layers=4)
    shapes = candidate_shapes(config, [1, 4], [1.0, 0.5])
    rows, load = time_shapes(config, shapes, seq_lengths=[8, 16], rounds=1)
    by_shape = {(r.num_layers, r.heads_per_layer, r.ffn_width): r for r in rows}
    assert set(by_shape) == set(shapes) and all(r.median_ms > 0 for r in rows)
    assert by_shape[(1, 2, 32)].parameters < by_shape[(4, 4, 64)].parameters
    assert by_shape[(4, 4, 64)].speedup == pytest.approx(1.0)
    assert "other_load_cores" in load


def test_largest_within_budget():
    rows = [ShapeTiming(6, 12, 1536, 22, 25.0, 30.0), ShapeTiming(3, 6, 768, 14, 4.0, 5.0),
            ShapeTiming(1, 12, 1536, 13, 2.0, 3.0)]
    assert largest_within(rows, 5.0).num_layers == 3
    assert largest_within(rows, 1.0) is None


def test_plan_cli_writes_report_and_explains_an_unreachable_budget(tmp_path, capsys):
    model_dir = tmp_path / "m"
    from fastformers_hf.testing import tiny_model

    tiny_model("bert").save_pretrained(model_dir)
    argv = ["plan", "--model_name_or_path", str(model_dir), "--seq_lengths", "8", "16", "--layers", "1", "2",
            "--ratios", "1", "0.5", "--output_dir", str(tmp_path / "plan")]
    assert main(argv) == 0
    assert {p.name for p in (tmp_path / "plan").iterdir() if not p.name.startswith(".")} == {"plan.json", "plan.md",
                                                                                             "plan.png"}
    assert main(argv + ["--latency_budget_ms", "0.000001"]) == 2
    assert "no candidate meets" in capsys.readouterr().err
