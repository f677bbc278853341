import json

import pytest

from fastformers_hf.cli import main
from fastformers_hf.tasks.synthetic import make_sentiment_data
from fastformers_hf.testing import tiny_model


@pytest.mark.parametrize("argv,match", [
    (["bench", "serve"], "unknown bench action 'serve'"),
    (["bench", "throughput"], "pass --model"),
    (["bench", "throughput", "--model", "m", "--data", "d", "--layouts", "2y1"], "--layouts must look like"),
    (["bench", "throughput", "--model", "m", "--data", "d", "--batch_sizes", "1,x"], "comma-separated integers"),
    (["bench", "ablation", "--tables", "glue"], "unknown table"),
])
def test_bad_arguments_are_one_line_errors(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_throughput_on_a_data_file(tmp_path, tokenizer, capsys):
    model_dir = tmp_path / "model"
    tiny_model("bert").save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "dev.tsv"
    make_sentiment_data(40, 1, seed=2)["train"].to_csv(data, sep="\t", index=False)
    out = tmp_path / "tune.json"
    code = main(["bench", "throughput", "--model", str(model_dir), "--data", str(data), "--layouts", "1x1",
                 "--batch_sizes", "1,4", "--repeats", "1", "--sample_size", "30", "--output", str(out)])
    assert code == 0
    assert "best: 1 instance(s) x 1 thread(s)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 2 and result["best"]["batch_size"] in (1, 4)
