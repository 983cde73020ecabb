# Two entry points, both self-contained on a fresh machine:
#   make run   - set up the virtual environment and run the appliance
#   make test  - set up the virtual environment and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test fuzz-soak venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard appliance/*/*.c)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

# The whole appliance against the simulated exchange (Ctrl-C or `appliance down` stops it).
run: $(STAMP)
	$(VENV)/bin/appliance up --sim

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Hours, not minutes: a million fuzz cases per family of tests/fuzz (make test runs a few thousand
# per target). FUZZ_SEED=random explores new inputs; a failure prints the command that replays it.
fuzz-soak: $(STAMP)
	FUZZ_SOAK=1000000 FUZZ_KEEP_GOING=1 nice -n 19 $(PY) -m pytest -q -s tests/fuzz

clean:
	rm -rf $(VENV) build *.egg-info appliance/*/*.so
