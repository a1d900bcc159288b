# The two commands that do everything on a fresh machine:
#   make run    installs what is missing, then runs the main job (the de-identification demo)
#   make test   installs what is missing, then runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests use as real peers: DCMTK (dcmdump) and dicom3tools (dciodvfy).
APT_PACKAGES := dcmtk dicom3tools
APT_TOOLS    := dcmdump dciodvfy

.PHONY: run test install system-deps lint bench clean

run: install
	$(BIN)/safepacs demo demo

test: install system-deps
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps:
	@missing=0; for t in $(APT_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(APT_PACKAGES) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "please install: sudo apt-get install $(APT_PACKAGES)"; exit 1; \
	  fi; \
	fi

lint: install
	$(BIN)/ruff check src tests benchmarks tools

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/deid_throughput.py

clean:
	rm -rf $(VENV) demo .pytest_cache
