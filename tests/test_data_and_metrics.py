import pytest
from transformers import DataCollatorWithPadding

from fastformers_hf import FastFormersError, classification_metrics, load_task_data, tokenize
from fastformers_hf.utils.io import atomic_output_dir


def write_glue(folder, header, rows):
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return folder


def test_glue_tsv_with_bare_quotes_loads_row_per_line(tmp_path):
    rows = [('a "quoted start', "1"), ("it 's \" odd", "0"), ("plain", "1")]
    data = load_task_data(write_glue(tmp_path / "sst2", ["sentence", "label"], rows))
    assert set(data) == {"train", "validation"}
    assert data["train"]["sentence"] == [r[0] for r in rows] and data["train"]["label"] == [1, 0, 1]


def test_sentence_pair_task_tokenises_both_fields(tmp_path, tokenizer):
    rows = [("the film was good .", "the plot was good .", "0"), ("the cast", "the music", "1")]
    data = load_task_data(write_glue(tmp_path / "rte", ["sentence1", "sentence2", "label"], rows))
    enc = tokenize(data, tokenizer, ("sentence1", "sentence2"))
    assert enc["train"].column_names == ["labels", "input_ids", "token_type_ids", "attention_mask"]
    assert 1 in enc["train"][0]["token_type_ids"]  # second segment present


def test_dynamic_padding_pads_to_longest_in_batch(sentiment_data, tokenizer):
    rows = [sentiment_data["train"][i] for i in range(8)]
    batch = DataCollatorWithPadding(tokenizer)(rows)
    assert batch["input_ids"].shape[1] == max(len(r["input_ids"]) for r in rows) < 32


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing", "holds no train/dev files|not found"),
    (lambda p: write_glue(p / "bad", ["text", "label"], [("x", "1")]), "no column 'sentence'"),
])
def test_bad_data_is_refused_clearly(tmp_path, tokenizer, make, match):
    path = make(tmp_path)
    path.mkdir(exist_ok=True)
    with pytest.raises(FastFormersError, match=match):
        tokenize(load_task_data(path), tokenizer, ("sentence",))


@pytest.mark.parametrize("labels,preds,expected", [
    ([0, 1, 1, 0], [0, 1, 1, 0], {"accuracy": 1.0, "f1": 1.0, "matthews_correlation": 1.0}),
    ([0, 1, 1, 0], [1, 0, 0, 1], {"accuracy": 0.0, "f1": 0.0, "matthews_correlation": -1.0}),
    ([0, 1, 1, 1], [0, 1, 0, 1], {"accuracy": 0.75, "f1": 0.8}),
])
def test_metrics_offline(labels, preds, expected):
    got = classification_metrics(labels, preds)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)


def test_atomic_output_dir_keeps_old_contents_on_failure(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            (tmp / "config.json").write_text('{"new": 1}')
            raise RuntimeError("boom")
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_output_dir(target) as tmp:
        (tmp / "config.json").write_text('{"new": 1}')
    assert (target / "config.json").read_text() == '{"new": 1}'
