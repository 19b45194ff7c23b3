# kubelab — the two commands: `sudo make demo` and `sudo make test` (see README.md).
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PACKAGES := controlplane noded netplugin proxy lab

.PHONY: deps test lint unit bench demo clean-venv

deps:
	@./lab/deps.sh

lint: deps
	$(VENV)/bin/ruff check $(PACKAGES) tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The whole suite: unit, contract, integration, privileged and end-to-end tests.
# Privileged and e2e tests run when this is run as root (CI runs it as root).
test: deps lint
	$(PYTEST) tests $(PYTEST_ARGS)

unit: deps
	$(PYTEST) tests/unit $(PYTEST_ARGS)

bench: deps
	$(PY) -m tests.bench $(BENCH_ARGS)
