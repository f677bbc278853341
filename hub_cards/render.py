"""Rendering a model card: card data -> Jinja template (shipped beside this file) -> ``huggingface_hub.ModelCard``."""
from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jinja2

from .card_data import MEASURE_HINT, FastFormersCardData, machine_text

TEMPLATE_NAME = "model_card.md.jinja"
README = "README.md"


def _num(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.4g}" if abs(value) < 10000 else f"{value:,.0f}"


def _quality_value(m) -> str:
    """A quality number as the card shows it: a fraction (accuracy 0.8957) as before; a metric recorded in points
    (SQuAD or entity F1, 0-100) with two decimals and its scale, so that 0.85 points never reads as 85%."""
    if m.points and not m.unit:
        return f"{m.value:.2f} / 100"
    return _num(m.value) + (f" {m.unit}" if m.unit else "")


def _settings(step: Mapping[str, Any]) -> str:
    """A recipe step's settings as ``key=value`` text (nested records, such as the shape before pruning, are shown
    in their own tables; long lists are cut)."""
    parts = []
    for k, v in step.items():
        if k == "step" or v is None or v == [] or isinstance(v, dict):
            continue
        text = str(v)
        parts.append(f"{k}={text if len(text) <= 80 else text[:77] + '...'}")
    return ", ".join(parts)


def _metric_keys(rows) -> list[str]:
    """Metric columns of the evaluation log (the Trainer's own timing of the evaluation loop is left out)."""
    keys = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in ("step", "epoch") and k not in keys and
                 isinstance(v, (int, float)) and not k.endswith(("_runtime", "_per_second"))]
    return keys


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=_num, quality_value=_quality_value, settings=_settings, machine=machine_text,
                       metric_keys=_metric_keys, basename=lambda p: Path(str(p).rstrip("/")).name)
    env.tests["search"] = lambda value, pattern: pattern in str(value)
    return env


def model_card(model_dir: str | os.PathLike, folders: Mapping[str, str | os.PathLike] | None = None,
               config: Mapping[str, Any] | None = None, **fields):
    """The card of ``model_dir`` as a ``huggingface_hub.ModelCard`` (YAML metadata checked by parsing it back).

    ``folders`` are extra ``{path in repo: local dir}`` a push adds (e.g. ``{"onnx": onnx_dir}``); ``fields`` are the
    user fields of :class:`FastFormersCardData` (``model_id``, ``license``, ``language``, ...).
    """
    from huggingface_hub import ModelCard

    data = FastFormersCardData.from_model_dir(model_dir, folders=folders, config=config, **fields)
    template = resources.files(__package__).joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
    text = _environment().from_string(template).render(
        card_data=data.to_model_card_data().to_yaml(), d=data, measure_hint=MEASURE_HINT)
    return ModelCard(text)  # parses the YAML block: a malformed header raises here, not on the Hub


def render_card(model_dir: str | os.PathLike, folders: Mapping[str, str | os.PathLike] | None = None,
                config: Mapping[str, Any] | None = None, **fields) -> str:
    """The README.md text (YAML metadata + Markdown) for ``model_dir``; see :func:`model_card`."""
    return str(model_card(model_dir, folders=folders, config=config, **fields))


def write_card(model_dir: str | os.PathLike, folders: Mapping[str, str | os.PathLike] | None = None,
               config: Mapping[str, Any] | None = None, **fields) -> Path:
    """Render the card and write it to ``model_dir/README.md`` atomically; returns the path."""
    text = render_card(model_dir, folders=folders, config=config, **fields)
    path = Path(model_dir) / README
    fd, tmp = tempfile.mkstemp(prefix=f".{README}.", dir=model_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
