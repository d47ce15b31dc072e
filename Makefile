# Two commands from a fresh clone:
#   make run    the main job: train the default STFTNet on the embedded digits data (offline)
#   make test   lint + the whole test suite
# Both create .venv themselves and pin torch==2.13.0 through constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# glibc returns large blocks to the OS after every step by default; these settings keep
# them (see docs/architecture.md, "Allocator"). The CLI also sets them itself via mallopt.
export MALLOC_MMAP_MAX_ = 0
export MALLOC_TRIM_THRESHOLD_ = 100000000000
export MALLOC_TOP_PAD_ = 1073741824

.PHONY: run test lint format bench mutate clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dwstft train --model stftnet_b8_f128 --dataset digits --epochs 15 --recipe fast \
		--output runs/quickstart-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: $(STAMP)
	$(BIN)/dwstft bench layer
	$(BIN)/dwstft bench models

# Mutation testing of the core modules (pyproject.toml [tool.mutmut]); hours on 2 cores, not
# in CI. `mutmut results` lists the survivors; docs/testing.md holds the triage.
mutate: $(STAMP)
	$(BIN)/pip install -q -c constraints.txt mutmut
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache mutants
