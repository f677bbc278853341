"""A small generated sentiment task, so the demo and the tests run offline with no downloaded data.

Sentences mix positive and negative words, negation ("not good") and contrast ("good acting but a dull plot",
where the clause after "but" decides), so a model has to read more than one word to be right.
"""
from __future__ import annotations

import random

from datasets import Dataset, DatasetDict

POSITIVE = ["good", "great", "wonderful", "moving", "funny", "clever", "brilliant", "charming", "gripping", "fresh"]
NEGATIVE = ["bad", "dull", "boring", "awful", "clumsy", "tedious", "weak", "predictable", "messy", "flat"]
SUBJECTS = ["the film", "the movie", "the acting", "the plot", "the script", "the ending", "the cast", "the music"]
FILLERS = ["", "really ", "quite ", "very ", "rather ", "truly "]
VOCABULARY = sorted(set(" ".join(POSITIVE + NEGATIVE + SUBJECTS + FILLERS).split())
                    | {"was", "is", "not", "but", "and", "."})


def _clause(rng: random.Random) -> tuple[str, int]:
    label = rng.randint(0, 1)
    negate = rng.random() < 0.3
    word = rng.choice(POSITIVE if label ^ negate else NEGATIVE)
    verb = rng.choice(["was", "is"]) + (" not" if negate else "")
    return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(FILLERS)}{word}", label


def make_sentiment_data(num_train: int = 2000, num_validation: int = 400, seed: int = 0) -> DatasetDict:
    """``train``/``validation`` splits with columns ``sentence`` and ``label`` (0 negative, 1 positive)."""
    rng = random.Random(seed)

    def example():
        first, label = _clause(rng)
        if rng.random() < 0.4:  # contrast: the second clause decides
            second, label = _clause(rng)
            return f"{first} but {second} .", label
        return f"{first} .", label

    def split(n):
        rows = [example() for _ in range(n)]
        return Dataset.from_dict({"sentence": [r[0] for r in rows], "label": [r[1] for r in rows]})

    return DatasetDict({"train": split(num_train), "validation": split(num_validation)})
