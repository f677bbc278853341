import pytest
from transformers import DataCollatorWithPadding

from fastformers_hf import FastFormersError, classification_metrics, load_task_data, tokenize
from fastformers_hf.utils.io import atomic_output_dir, write_output_record


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
    write_output_record(target, "output")  # ours: an earlier output of the same kind
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            (tmp / "config.json").write_text('{"new": 1}')
            raise RuntimeError("boom")
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_output_dir(target) as tmp:
        (tmp / "config.json").write_text('{"new": 1}')
    assert (target / "config.json").read_text() == '{"new": 1}'


@pytest.mark.parametrize("files,data,expected", [
    (["sst2/train.tsv", "sst2/dev.tsv"], "sst2", "sst2"),  # a folder of GLUE files: the folder's name
    (["glue_sst2/dev.csv"], "glue_sst2/dev.csv", "glue_sst2"),  # a split file: its folder's name
    (["boolq/boolq_dev.jsonl"], "boolq/boolq_dev.jsonl", "boolq_dev"),  # a named file: its own name
])
def test_local_data_is_named_after_itself_not_its_loader_format(tmp_path, monkeypatch, files, data, expected):
    from fastformers_hf.tasks.data import dataset_name

    for f in files:
        path = tmp_path / f
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = {".tsv": "sentence\tlabel\nfine\t1\n", ".csv": "sentence,label\nfine,1\n",
                ".jsonl": '{"sentence": "fine", "label": 1}\n'}
        path.write_text(rows[path.suffix])
    monkeypatch.chdir(tmp_path)  # relative paths, as users pass them
    for split in load_task_data(data).values():
        assert dataset_name(split, "eval_dataset") == expected
        assert dataset_name(split.select(range(1)), "eval_dataset") == expected  # subsets keep the name


def test_a_dataset_without_a_name_of_its_own_gets_the_default():
    from datasets import Dataset, DatasetInfo

    from fastformers_hf.tasks.data import dataset_name

    assert dataset_name(Dataset.from_dict({"x": [1]}), "eval_dataset") == "eval_dataset"
    csv_named = Dataset.from_dict({"x": [1]}, info=DatasetInfo(dataset_name="csv"))
    assert dataset_name(csv_named, "eval_dataset") == "eval_dataset"


# -- the generated sentiment task: hard sentences and label noise ---------------------------------------------------

def test_generated_data_defaults_use_only_the_tiny_tokenizers_vocabulary():
    from fastformers_hf.tasks.synthetic import VOCABULARY, make_sentiment_data

    data = make_sentiment_data(300, 100, seed=4)
    words = {w for split in ("train", "validation") for s in data[split]["sentence"] for w in s.split()}
    assert words <= set(VOCABULARY)


def test_hard_generated_data_is_seeded_and_labels_follow_the_main_clause():
    from fastformers_hf.tasks.synthetic import HARD_WORDS, NEGATIVE, NEGATORS, POSITIVE, VOCABULARY, make_sentiment_data

    a, b = make_sentiment_data(1000, 100, seed=7, hard=True), make_sentiment_data(1000, 100, seed=7, hard=True)
    assert a["train"][:] == b["train"][:] and a["validation"][:] == b["validation"][:]
    words = {w for s in a["train"]["sentence"] for w in s.split()}
    assert words <= set(VOCABULARY) | set(HARD_WORDS) and {"although", "true", "never", "hardly"} <= words

    def plain(clause):  # a clause without a negator: its label is its sentiment word's
        return not set(clause.split()) & set(NEGATORS) and clause.split()[-1] in POSITIVE + NEGATIVE

    checked = 0
    for sentence, label in zip(a["train"]["sentence"], a["train"]["label"]):
        body = sentence[:-2]  # without " ."
        if body.startswith("it is not true that ") and plain(body[len("it is not true that "):]):
            assert label == (body.split()[-1] in NEGATIVE), sentence  # double negation: the opposite
            checked += 1
        elif body.startswith(("although ", "though ")) and " , " in body and plain(body.split(" , ")[1]):
            assert label == (body.split()[-1] in POSITIVE), sentence  # the main clause after the comma decides
            checked += 1
        elif " , although " in body and plain(body.split(" , ")[0]):
            assert label == (body.split(" , ")[0].split()[-1] in POSITIVE), sentence  # main clause first
            checked += 1
    assert checked > 60


@pytest.mark.parametrize("hard", [False, True])
def test_label_noise_flips_exactly_the_stated_share_and_keeps_the_sentences(hard):
    from fastformers_hf.tasks.synthetic import accuracy_ceiling, make_sentiment_data

    clean = make_sentiment_data(300, 200, seed=2, hard=hard)
    noisy = make_sentiment_data(300, 200, seed=2, hard=hard, label_noise=0.1)
    for split, n in (("train", 300), ("validation", 200)):
        assert noisy[split]["sentence"] == clean[split]["sentence"]
        flipped = sum(x != y for x, y in zip(noisy[split]["label"], clean[split]["label"]))
        assert flipped == round(0.1 * n)
    assert accuracy_ceiling(200, 0.1) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="label_noise"):
        make_sentiment_data(10, 10, label_noise=0.5)
