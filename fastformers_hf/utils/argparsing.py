"""``HfArgumentParser`` without importing the ``transformers`` package, so that ``--help`` and argument errors are fast.

``transformers/hf_argparser.py`` needs only the standard library and PyYAML, but ``import transformers.hf_argparser``
(or ``from transformers import HfArgumentParser``) first runs ``transformers/__init__.py``, whose dependency check
imports torch: about 3 s here (``python -X importtime -c "import transformers.hf_argparser"``: 2.3 s of it under
``transformers.utils`` -> ``torch``), before a single flag is parsed. So this module loads that same file on its own,
under a private module name, without executing the package. It is the very code of ``transformers.HfArgumentParser``
(no copy to keep in sync: same flags, both ``--dry_run`` and ``--dry-run`` spellings, same errors). If transformers is
already imported, or a future version gives that file package-relative imports (loading it alone then fails), the
ordinary import is used instead: correct, only slow.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_STANDALONE = "fastformers_hf.utils._transformers_hf_argparser"


def _load():
    if "transformers" not in sys.modules:
        try:
            package = importlib.util.find_spec("transformers")  # locates the package; does not execute it
            spec = importlib.util.spec_from_file_location(_STANDALONE, Path(package.origin).parent / "hf_argparser.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[_STANDALONE] = module  # dataclasses/typing resolve names through sys.modules
            spec.loader.exec_module(module)
            return module.HfArgumentParser
        except Exception:  # layout changed: fall back to the real (slow) import below
            sys.modules.pop(_STANDALONE, None)
    from transformers import HfArgumentParser

    return HfArgumentParser


HfArgumentParser = _load()

__all__ = ["HfArgumentParser"]
