# farmhand — `make demo` runs a sample campaign; `make test` runs every test.
PYTHON ?= python3
# Test worker processes: the live tests mostly wait on servers and agents (0.3-0.6 of a core).
TEST_WORKERS ?= 4
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench mutants clean

# Quiet: one line instead of pip's pages; pip's errors still show, and fail the target.
$(STAMP): pyproject.toml
	@echo "make: installing farmhand and its test tools into $(VENV) (first run only)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

demo: $(STAMP)
	@$(BIN)/farmhand demo

# The tests start hundreds of server and agent processes: each compiled every module again
# where PYTHONDONTWRITEBYTECODE is set (it is on the CI machines), ~90 ms a start.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@$(BIN)/python -m compileall -q agent server > /dev/null
	$(BIN)/pytest -q -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Known bugs put back one at a time: each must make its tests fail (tests/mutants/).
mutants: $(STAMP)
	$(BIN)/python -m tests.mutants

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

bench: $(VENV)/.bench
	$(BIN)/python -m bench.claims
	$(BIN)/python -m bench.replicas
	$(BIN)/python -m bench.idle
	$(BIN)/python -m bench.overview
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.noop
	$(BIN)/python -m bench.startup
