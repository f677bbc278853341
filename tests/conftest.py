import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# The loopback Hub of tests/hub_server.py speaks the LFS upload protocol, not Xet; huggingface_hub 1.x and later
# upload through Xet whenever hf_xet is installed unless this is set before it is imported.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
# Tiny models gain nothing from threads, and on a 2-core machine shared with other jobs, oversubscribed
# OpenMP threads slow everyone down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from fastformers_hf.testing import tiny_tokenizer

    return tiny_tokenizer(save_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def sentiment_data(tokenizer):
    """Tokenised generated sentiment data: train 600, validation 200."""
    from fastformers_hf.tasks.data import tokenize
    from fastformers_hf.tasks.synthetic import make_sentiment_data

    return tokenize(make_sentiment_data(600, 200, seed=1), tokenizer, max_length=32)


@pytest.fixture(scope="session")
def trained_teacher(sentiment_data, tokenizer, tmp_path_factory):
    """A tiny 4-layer BERT fine-tuned for a few seconds, so it has opinions worth distilling."""
    from transformers import Trainer, TrainingArguments

    from fastformers_hf.testing import tiny_model

    model = tiny_model("bert", num_layers=4, hidden_size=64, intermediate_size=128)
    args = TrainingArguments(output_dir=str(tmp_path_factory.mktemp("teacher")), max_steps=80, learning_rate=3e-3,
                             per_device_train_batch_size=32, report_to=[], save_strategy="no", logging_steps=80,
                             dataloader_pin_memory=False, seed=0)
    Trainer(model=model, args=args, train_dataset=sentiment_data["train"], processing_class=tokenizer).train()
    return model.eval()
