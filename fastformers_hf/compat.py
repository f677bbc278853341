"""Which transformers is installed, read from its package metadata (no import: ``import fastformers_hf`` stays fast),
and the one warning for a major version this package has not been checked against."""
from __future__ import annotations

import warnings
from importlib import metadata

# Major versions the test suite runs under (CI: 4.57 with Optimum, newest 5.x without it).
CHECKED_MAJORS = (4, 5)


def transformers_version() -> tuple[int, ...]:
    """``(major, minor, ...)`` of the installed transformers; ``()`` if it is not installed."""
    try:
        text = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return ()
    parts = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def is_transformers_5() -> bool:
    return transformers_version()[:1] >= (5,)


def check_transformers_version() -> None:
    """Warn (never raise) when transformers is of a major version outside :data:`CHECKED_MAJORS`."""
    version = transformers_version()
    if version and version[0] not in CHECKED_MAJORS:
        warnings.warn(
            f"fastformers-hf is checked with transformers {' and '.join(f'{m}.x' for m in CHECKED_MAJORS)}; "
            f"transformers {'.'.join(map(str, version))} is installed. Most of it may work; if something fails, "
            "install a checked version (pip install 'transformers<6') and report the failure.",
            stacklevel=3)


def warmup(ratio: float) -> dict:
    """The ``TrainingArguments`` keyword for a warm-up of ``ratio`` of the steps: ``warmup_ratio`` in 4.x; 5.x
    removed it and reads a ``warmup_steps`` below 1 as that ratio."""
    return {"warmup_steps": ratio} if is_transformers_5() else {"warmup_ratio": ratio}


def group_by_length(enabled: bool) -> dict:
    """The ``TrainingArguments`` keyword for batches of similar length: ``group_by_length`` in 4.x; 5.x replaced it
    with ``train_sampling_strategy="group_by_length"``."""
    if not enabled:
        return {}
    return {"train_sampling_strategy": "group_by_length"} if is_transformers_5() else {"group_by_length": True}
