"""A small generated sentiment task, so the demo and the tests run offline with no downloaded data.

Sentences mix positive and negative words, negation ("not good") and contrast ("good acting but a dull plot",
where the clause after "but" decides), so a model has to read more than one word to be right.

``hard=True`` mixes in (``HARD_SHARE`` of the sentences) constructions where the deciding clause is neither simply
the last one nor the words' majority: double negation ("it is not true that the plot was not dull"), concessive
clauses in both orders ("although the cast was charming , the script was weak" / "the script was weak , although the
cast was charming": the main clause decides), three-clause contrasts ("A and B but C") and the negators "never" and
"hardly". ``label_noise`` flips a
stated share of the labels (exactly ``round(label_noise * n)`` per split, chosen with their own seeded generator, so
the sentences are those of the noise-free call): no model can score above ``1 - label_noise`` on the validation split
but by chance, so the ceiling is known. Everything is seeded: the same arguments give the same data.
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
# Words only the hard sentences use (kept out of VOCABULARY, which sizes the tests' tiny tokenizer).
NEGATORS = ["not", "never", "hardly"]
CONCESSIVES = ["although", "though", "even though", "while"]
# Share of hard sentences when hard=True; the rest are basic ones. With hard ones only, the words' polarity says little
# about the label (concessions pair opposite clauses, double negation flips it), and a small student distilled
# from scratch on them stays at chance (measured: the demo's 2-layer ReLU student, 300 steps, 50%): the basic
# sentences give it a start, the hard ones the errors that show what compression costs.
HARD_SHARE = 0.4
HARD_WORDS = sorted(set(" ".join(NEGATORS + CONCESSIVES).split() + ["it", "true", "that", ","]) - set(VOCABULARY))


def _clause(rng: random.Random) -> tuple[str, int]:
    label = rng.randint(0, 1)
    negate = rng.random() < 0.3
    word = rng.choice(POSITIVE if label ^ negate else NEGATIVE)
    verb = rng.choice(["was", "is"]) + (" not" if negate else "")
    return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(FILLERS)}{word}", label


def _hard_clause(rng: random.Random, label: int | None = None) -> tuple[str, int]:
    """A clause of the given (or a random) label; negated by not/never/hardly a third of the time."""
    label = rng.randint(0, 1) if label is None else label
    negate = rng.random() < 0.35
    word = rng.choice(POSITIVE if label ^ negate else NEGATIVE)
    verb = rng.choice(["was", "is"]) + (f" {rng.choice(NEGATORS)}" if negate else "")
    return f"{rng.choice(SUBJECTS)} {verb} {rng.choice(FILLERS)}{word}", label


def _hard_example(rng: random.Random) -> tuple[str, int]:
    kind = rng.random()
    if kind < 0.2:  # one clause
        clause, label = _hard_clause(rng)
        return f"{clause} .", label
    if kind < 0.35:  # double negation: "it is not true that <clause>" means the opposite of the clause
        clause, label = _hard_clause(rng)
        return f"it is not true that {clause} .", 1 - label
    if kind < 0.5:  # contrast: the clause after "but" decides
        (first, _), (second, label) = _hard_clause(rng), _hard_clause(rng)
        return f"{first} but {second} .", label
    if kind < 0.85:  # concession, either order: the main clause decides, not the "although" one nor the last one
        main, label = _hard_clause(rng)
        conceded, _ = _hard_clause(rng, 1 - label)
        concessive = rng.choice(CONCESSIVES)
        if rng.random() < 0.5:
            return f"{concessive} {conceded} , {main} .", label
        return f"{main} , {concessive} {conceded} .", label
    # three clauses: two that agree, then "but" and the one that decides
    last, label = _hard_clause(rng)
    (first, _), (second, _) = _hard_clause(rng, 1 - label), _hard_clause(rng, 1 - label)
    return f"{first} and {second} but {last} .", label


def accuracy_ceiling(num_validation: int, label_noise: float) -> float:
    """Validation accuracy of a model right about every sentence, when ``label_noise`` of the labels are flipped."""
    return 1 - round(label_noise * num_validation) / num_validation if num_validation else 1.0


def make_sentiment_data(num_train: int = 2000, num_validation: int = 400, seed: int = 0, *,
                        hard: bool = False, label_noise: float = 0.0) -> DatasetDict:
    """``train``/``validation`` splits with columns ``sentence`` and ``label`` (0 negative, 1 positive).

    ``hard`` mixes in double negation, concessive clauses in both orders and three-clause contrasts; ``label_noise``
    flips exactly ``round(label_noise * n)`` labels of each split (so the best validation accuracy is about
    ``1 - label_noise``). The defaults give the same data as before these two options existed.
    """
    if not 0.0 <= label_noise < 0.5:
        raise ValueError(f"label_noise is the share of labels flipped, in [0, 0.5); got {label_noise}.")
    rng = random.Random(seed)

    def example():
        if hard and rng.random() < HARD_SHARE:
            return _hard_example(rng)
        first, label = _clause(rng)
        if rng.random() < 0.4:  # contrast: the second clause decides
            second, label = _clause(rng)
            return f"{first} but {second} .", label
        return f"{first} .", label

    def split(n, name):
        rows = [example() for _ in range(n)]
        labels = [r[1] for r in rows]
        if label_noise:  # its own generator: the sentences stay those of the noise-free call
            for i in random.Random(f"{seed}-{name}-label-noise").sample(range(n), round(label_noise * n)):
                labels[i] = 1 - labels[i]
        return Dataset.from_dict({"sentence": [r[0] for r in rows], "label": labels})

    return DatasetDict({"train": split(num_train, "train"), "validation": split(num_validation, "validation")})
