"""Every shape x model type x head we save loads in the other major version of transformers with equal outputs:
saved under this environment's transformers, loaded under the .venv5 one (transformers 5.x), and the other way
round. Skipped where that environment does not exist (CI builds it)."""
from __future__ import annotations

import pytest

from fastformers_hf.benchmarks.cross_version import CASES, TOLERANCE, cross_version_table
from fastformers_hf.compat import is_transformers_5
from fastformers_hf.testing import VENV5_PYTHON, VENV5_SETUP


@pytest.mark.skipif(is_transformers_5(), reason="run from the transformers 4 environment: it drives both directions")
@pytest.mark.skipif(not VENV5_PYTHON.exists(), reason=f"no transformers 5 environment at {VENV5_PYTHON.parent.parent} "
                                                      f"({VENV5_SETUP})")
def test_folders_load_across_major_versions_with_equal_outputs(tmp_path):
    report = cross_version_table(str(VENV5_PYTHON), tmp_path)
    rows = report["rows"]
    assert len(rows) == 2 * len(CASES)
    versions = {(r["saved_with"][0], r["loaded_with"][0]) for r in rows}
    assert versions == {("4", "5"), ("5", "4")}
    failed = [r for r in rows if not r["loads"]]
    assert not failed, failed[:3]
    assert max(r["max_abs_diff"] for r in rows) <= TOLERANCE
    # the shapes transformers 5 cannot describe in a config go through the saved modeling file
    assert {r["how"] for r in rows if r["shape"] != "unpruned"} == {"trust_remote_code=True"}
    assert {r["how"] for r in rows if r["shape"] == "unpruned"} == {"native"}
