# Aliases for the two README commands (plus lab). The environment is a local .venv built from
# pyproject.toml, created on first use; nothing is installed globally.
VENV ?= .venv
PY := $(VENV)/bin/python
SPEC ?= params/example.yaml

.PHONY: run test lab env clean-env

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $$(scripts/find-python312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

env: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/mmm run $(SPEC) $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/pytest -q $(ARGS)

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
