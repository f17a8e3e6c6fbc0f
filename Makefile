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

# Jupyter refuses to run as root without --allow-root (the usual case in a container), and a container
# has no browser and is reached through a published port, so there it listens on all interfaces
# (token-protected; the URL with the token is printed). Override: make lab LAB_IP=127.0.0.1 LAB_PORT=8899.
LAB_IP ?=
LAB_PORT ?= 8888
lab: $(VENV)/.installed
	@flags="--port=$(LAB_PORT)"; ip="$(LAB_IP)"; \
	if [ "$$(id -u)" = 0 ]; then flags="$$flags --allow-root"; fi; \
	if [ "$$(id -u)" = 0 ] || [ -f /.dockerenv ] || [ -f /run/.containerenv ]; then \
	  flags="$$flags --no-browser"; ip="$${ip:-0.0.0.0}"; \
	fi; \
	flags="$$flags --ip=$${ip:-127.0.0.1}"; \
	echo "$(VENV)/bin/jupyter lab notebooks/ $$flags $(ARGS)"; \
	exec $(VENV)/bin/jupyter lab notebooks/ $$flags $(ARGS)

clean-env:
	rm -rf $(VENV)
