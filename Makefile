# The two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VECTORS ?= ../shared/vectors

.PHONY: run demo test test-fast bench lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# The service in the foreground: SQLite and the signing key in ./var (kept), Intel's root as the only trust
# anchor, collateral from Intel PCS through the cache, HTTP on loopback. Flags: `affidavit serve --help`.
run: $(STAMP)
	$(BIN)/affidavit serve --data-dir var --host 127.0.0.1 --port 8080

# The attestation workflow end to end, narrated (docs/demo.md): a throwaway service, a simulated SGX
# enclave, swtpm with a real boot log, the relying party, and refusals. Stops everything it started;
# exit status 0 only if every step gave its expected outcome. Vectors: AFFIDAVIT_VECTORS or $(VECTORS).
demo: $(STAMP)
	AFFIDAVIT_VECTORS="$${AFFIDAVIT_VECTORS:-$(VECTORS)}" $(BIN)/python -m demo.tour

# ruff, the layers contract (import-linter, pyproject [tool.importlinter]) and mypy (strict on the core).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench demo
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# The whole suite with the coverage of the library (in-process code; servers in subprocesses are not traced).
test: lint
	$(BIN)/pytest -q --cov=affidavit --cov-report=
	@$(BIN)/coverage report --format=total | xargs printf 'coverage of src/affidavit: %s%%\n'

# The suite without the slow system tests (live servers in subprocesses, swtpm, PostgreSQL, exhaustive walks).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench demo
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
