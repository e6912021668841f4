# Two commands set up everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-transformers4 lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch is pinned to the local CPU build first so nothing drags in a CUDA torch.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash examples/demo.sh

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q

# The suite installs transformers 5; users on v4 hold PreTrainedTokenizerFast objects and older `tokenizers`.
# This layers transformers 4.57 (with the tokenizers and huggingface_hub it requires, and a `datasets` and httpx
# that import with that hub, for its Trainer) over .venv and runs the tests of tokenizers, tokenizer objects and
# the code that takes them, the HF Trainer adapter included (about 2 minutes).
TF4 := .venv-transformers4
TF4_TESTS := tests/tokenizer tests/epochraft tests/pipeline/test_labels.py tests/recipe/test_recipe_tokenizer_object.py \
	tests/loader/test_hf_loss.py tests/test_train.py tests/test_train_hf.py
test-transformers4: $(STAMP)
	test -x $(TF4)/bin/python || $(PYTHON) -m venv $(TF4)
	$(TF4)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/tokenmill-base.pth', 'w').write(sys.argv[1])" \
		"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	$(TF4)/bin/python -m pip install -q --no-deps transformers==4.57.1 tokenizers==0.22.1 huggingface_hub==0.36.0 \
		datasets==4.4.1 httpx==0.28.1 httpcore==1.0.9
	$(TF4)/bin/python -c "import tokenizers, transformers as t; assert t.__version__.startswith('4.'); \
		print('transformers', t.__version__, 'tokenizers', tokenizers.__version__)"
	PYTHONPATH=src $(TF4)/bin/python -m pytest -q $(TF4_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

clean:
	rm -rf demo-out bench-out .pytest_cache .ruff_cache
