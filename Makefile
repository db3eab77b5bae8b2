# The two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make run` needs only the package and its runtime dependencies: its own stamp, satisfied by a full
# install too (`make test` installs everything, so a later `make run` starts at once).
RUNTIME_STAMP := $(VENV)/.runtime-installed
VECTORS ?= ../shared/vectors

.PHONY: run demo test test-fast bench soak lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python scripts/jmespath_compliance.py $(VENV)/share/jmespath-compliance
	touch $(STAMP) $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
	    touch $(RUNTIME_STAMP); \
	else \
	    echo "== runtime setup: python3-venv, .venv, Affidavit and its runtime dependencies (no test extras)"; \
	    bash scripts/system-deps.sh --runtime && \
	    $(PYTHON) -m venv $(VENV) && \
	    $(BIN)/python -m pip install --progress-bar on --upgrade pip && \
	    $(BIN)/python -m pip install --progress-bar on -e . && \
	    touch $(RUNTIME_STAMP); \
	fi

# The service in the foreground: SQLite and the signing key in ./var (kept), Intel's root as the only trust
# anchor, collateral from Intel PCS through the cache, HTTP on loopback. Flags: `affidavit serve --help`.
run: $(RUNTIME_STAMP)
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

# pytest-xdist worker processes for `make test` and `make test-fast`: 0 runs in this process. Two workers
# on the 2-core machine: 531 s against 782 s in one process at load average 4-5 (much of the suite waits
# on servers, outages and timeouts, and the other worker uses that time; each worker starts its own
# session servers and PostgreSQL). A module's tests stay on one worker (--dist loadscope), so
# module-scoped servers start once.
PYTEST_WORKERS ?= 2
PYTEST_XDIST := -n $(PYTEST_WORKERS) $(if $(filter-out 0,$(PYTEST_WORKERS)),--dist loadscope)

# The whole suite with the coverage of the library (in-process code; servers in subprocesses are not traced;
# pytest-cov combines the workers' data).
test: lint
	$(BIN)/pytest -q $(PYTEST_XDIST) --cov=affidavit --cov-report=
	@$(BIN)/coverage report --format=total | xargs printf 'coverage of src/affidavit: %s%%\n'

# The suite without the slow system tests (live servers in subprocesses, swtpm, PostgreSQL, exhaustive walks),
# property tests at the "fast" hypothesis profile's example count (tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench demo
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-fast} $(BIN)/pytest -q $(PYTEST_XDIST) -m "not slow"

bench: $(STAMP)
	@for b in bench/*.py; do [ $$b = bench/soak.py ] && continue; echo "== $$b"; $(BIN)/python $$b || exit 1; done

soak: $(STAMP)  # 10 minutes of mixed traffic (bench/soak.py --minutes N for another length)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) var .pytest_cache
