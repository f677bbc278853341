"""Tiny models and tokenizers built from configs, for tests and offline demos (nothing is downloaded)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from transformers import AutoConfig, AutoModelForSequenceClassification, BertTokenizerFast

from .tasks.synthetic import VOCABULARY

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Per-architecture names of the size fields, so one call builds any supported type.
_SIZE_FIELDS = {
    "distilbert": dict(n_layers="num_layers", n_heads="num_heads", dim="hidden_size", hidden_dim="intermediate_size"),
}
_DEFAULT_SIZE_FIELDS = dict(num_hidden_layers="num_layers", num_attention_heads="num_heads", hidden_size="hidden_size",
                            intermediate_size="intermediate_size")


def tiny_tokenizer(words=VOCABULARY, save_dir: str | os.PathLike | None = None) -> BertTokenizerFast:
    """A WordPiece tokenizer whose vocabulary is the special tokens plus ``words`` (whole words only)."""
    save_dir = Path(save_dir or tempfile.mkdtemp(prefix="tiny-tokenizer-"))
    save_dir.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(SPECIAL_TOKENS + [w.lower() for w in words]))
    (save_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # from_pretrained, not BertTokenizerFast(vocab_file=...): transformers 5 renamed that argument to ``vocab``.
    return BertTokenizerFast.from_pretrained(str(save_dir), do_lower_case=True)


def tiny_config(model_type: str = "bert", num_layers: int = 4, num_heads: int = 4, hidden_size: int = 32,
                intermediate_size: int = 64, vocab_size: int | None = None, num_labels: int = 2, **overrides):
    """A small config of any supported type; ``vocab_size`` defaults to the tiny tokenizer's."""
    sizes = dict(num_layers=num_layers, num_heads=num_heads, hidden_size=hidden_size,
                 intermediate_size=intermediate_size)
    fields = {name: sizes[ours] for name, ours in _SIZE_FIELDS.get(model_type, _DEFAULT_SIZE_FIELDS).items()}
    if model_type == "electra":
        fields["embedding_size"] = hidden_size
    vocab = vocab_size or len(tiny_tokenizer().get_vocab())
    labels = {i: ("negative", "positive")[i] if num_labels == 2 else f"LABEL_{i}" for i in range(num_labels)}
    overrides = {"max_position_embeddings": 128, "pad_token_id": 0, **overrides}
    return AutoConfig.for_model(model_type, vocab_size=vocab, num_labels=num_labels, id2label=labels,
                                label2id={v: k for k, v in labels.items()}, **fields, **overrides)


def tiny_model(model_type: str = "bert", seed: int = 0, **config_kwargs):
    """A randomly initialised sequence classifier from :func:`tiny_config`, seeded for repeatability."""
    import torch

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, **config_kwargs)).eval()


def write_glue_folder(path: str | os.PathLike, num_train: int = 200, num_dev: int = 50, seed: int = 3) -> Path:
    """A GLUE-style folder (``train.tsv``, ``dev.tsv`` with ``sentence``/``label``) of generated sentiment data."""
    from .tasks.synthetic import make_sentiment_data

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    raw = make_sentiment_data(num_train, num_dev, seed=seed)
    for split, name in (("train", "train"), ("validation", "dev")):
        raw[split].to_csv(path / f"{name}.tsv", sep="\t", index=False)
    return path


# A second environment with transformers 5.x for cross-version tests: FASTFORMERS_VENV5, else .venv5 in the repo.
VENV5 = Path(os.environ.get("FASTFORMERS_VENV5", Path(__file__).resolve().parents[1] / ".venv5"))
VENV5_PYTHON = VENV5 / "bin" / "python"
VENV5_SETUP = "make setup-5, or set FASTFORMERS_VENV5"
