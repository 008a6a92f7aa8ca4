# The two commands of the README, and the tools around them.
#   make demo   set up .venv and run the embedded default sweep (demo.yaml) on a local Ray
#   make test   set up .venv and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint format bench clean

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/jola-ray sweep demo

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(VENV)/.installed
	$(PY) -m benchmarks.run --device cpu

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
