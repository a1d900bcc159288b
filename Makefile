# The two commands that do everything on a fresh machine:
#   make run    installs what is missing, then runs the main job (the de-identification demo)
#   make test   installs what is missing, then runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests use as real peers: DCMTK (storescu, findscu, dcmdump ...),
# dicom3tools (dciodvfy), Tesseract with English and Simplified Chinese (pixel cleaning),
# CJK fonts (synthetic burned-in text), PostgreSQL 15 (the archive's index tested for real).
APT_PACKAGES := dcmtk dicom3tools tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim \
                fonts-noto-cjk fonts-wqy-zenhei postgresql
APT_FILES    := /usr/bin/dcmdump /usr/bin/dciodvfy /usr/bin/storescu \
                /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata \
                /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc /usr/lib/postgresql/15/bin/initdb

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
	@missing=0; for f in $(APT_FILES); do test -e $$f || missing=1; done; \
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
