"""Where a measurement was taken: the machine description and its one-line rendering for Markdown reports."""
import pytest

from fastformers_hf.measurements import VECTOR_FLAGS, cpu_info, machine_description, machine_text


def test_machine_description_names_the_cpu_generation_flags_and_cores():
    m = machine_description()
    assert {"cpu", "vendor", "cpu_family", "cpu_model", "vector_flags", "cores", "logical_cores",
            "physical_cores", "python", "torch", "transformers"} <= set(m)
    assert set(m["vector_flags"]) <= set(VECTOR_FLAGS) and m["logical_cores"] == m["cores"]
    if cpu_info().get("cpu family"):  # x86 Linux: the numbers that tell one generation from another
        assert isinstance(m["cpu_family"], int) and isinstance(m["cpu_model"], int)
        assert set(m["vector_flags"]) == set(VECTOR_FLAGS) & set(cpu_info()["flags"].split())


@pytest.mark.parametrize("machine,expected", [
    ({"cpu": "AMD EPYC", "vendor": "AuthenticAMD", "cpu_family": 25, "cpu_model": 17,
      "vector_flags": ["avx2", "avx512_vnni"], "cores": 4, "logical_cores": 4, "physical_cores": 2, "torch": "2.5"},
     "AMD EPYC (AuthenticAMD, family 25, model 17), vector flags: avx2 avx512_vnni, 4 logical / 2 physical cores, "
     "torch 2.5"),
    ({"cpu": "Xeon", "vector_flags": [], "cores": 2}, "Xeon, vector flags: none, 2 cores"),
    ({"cpu": "Xeon", "cores": 8, "python": "3.11"}, "Xeon, 8 cores, python 3.11"),  # a record from before the flags
    (None, "not recorded"),
])
def test_machine_text(machine, expected):
    assert machine_text(machine) == expected
