"""What every public prediction entry point accepts (``predict``, ``predict_proba``, the cascade, the
multi-instance server, the HTTP server), checked in one place.

Accepted: a string; a ``(text, text)`` pair; transformers' pipeline form ``{"text": ..., "text_pair": ...}``; or a
list (any iterable but a set) of those. Anything else is refused with the index and type of the first bad item —
a ``dict`` is never iterated (that would classify its keys).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Union

from ..errors import FastFormersError

TextInput = Union[str, tuple[str, str]]
PIPELINE_KEYS = ("text", "text_pair")
_EXPECTED = "pass a string, a (text, text) pair, {'text': ..., 'text_pair': ...}, or a list of them"


def describe(x: Any) -> str:
    """How an input item is named in error messages: its type, and its shape for sequences and dicts."""
    if isinstance(x, Mapping):
        return f"a dict with keys {sorted(map(str, x))[:4]}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} item(s) ({', '.join(type(p).__name__ for p in x[:3])})"
    return f"a {type(x).__name__}"


def check_items(inputs: Any, one: Callable[[Any], Any], noun: str, expected: str,
                single_types: tuple = (str, Mapping, tuple)) -> list:
    """The one input check of every predictor: ``one(x)`` turns one item into its canonical form or returns None.
    ``inputs`` is one item (of ``single_types``) or an iterable of items (never a set, bytes or a dict's keys)."""
    single = one(inputs) if isinstance(inputs, single_types) else None
    if single is not None:
        return [single]
    if inputs is None or isinstance(inputs, (str, bytes, bytearray, set, frozenset, Mapping, tuple)) \
            or not hasattr(inputs, "__iter__"):
        raise FastFormersError(f"the input is {describe(inputs)}, not {noun}: {expected}.")
    out = []
    for i, x in enumerate(inputs):
        item = one(x)
        if item is None:
            raise FastFormersError(f"input {i} is {describe(x)}, not {noun}: {expected}.")
        out.append(item)
    return out


def _one(x: Any) -> TextInput | None:
    """One input in canonical form, or None if it is not one."""
    if isinstance(x, str):
        return x
    if isinstance(x, Mapping):
        if "text" not in x or set(x) - set(PIPELINE_KEYS):
            return None
        text, pair = x["text"], x.get("text_pair")
        if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
            return None
        return text if pair is None else (text, pair)
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(p, str) for p in x):
        return (x[0], x[1])
    return None


def validate_inputs(inputs: Any) -> list[TextInput]:
    """``inputs`` as a list of strings and ``(text, text)`` pairs; raises ``FastFormersError`` otherwise."""
    if isinstance(inputs, Mapping) and _one(inputs) is None:
        raise FastFormersError(f"a dict input must be transformers' pipeline form {{'text': ..., 'text_pair': ...}} "
                               f"with string values, got {describe(inputs)}: {_EXPECTED}.")
    if isinstance(inputs, tuple) and _one(inputs) is None:
        raise FastFormersError(f"the input is {describe(inputs)}, not text: a tuple is one (text, text) pair; "
                               f"{_EXPECTED}.")
    return check_items(inputs, _one, "text", _EXPECTED)
