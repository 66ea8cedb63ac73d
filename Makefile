# Two entry points for a fresh clone: `make demo` (the main job on the built-in data) and
# `make test`. Both create .venv and install musadv into it; PyTorch is pinned to the local
# CPU build (torch==2.13.0) so no multi-GB CUDA build is downloaded.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/musadv make-data demo-out/data
	$(BIN)/musadv prepare demo-out/data --seed 0 --out demo-out/cache

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf $(VENV) demo-out
