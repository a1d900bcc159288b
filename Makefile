# The two commands that do everything on a fresh machine:
#   make run    installs what is missing, then serves the archive from ./safepacs-data
#               (first run: creates it, loads a synthetic demo set, prints the sign-in token)
#   make test   installs what is missing, then runs the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests use as real peers: DCMTK (storescu, findscu, dcmdump ...),
# dicom3tools (dciodvfy), Tesseract with English and Simplified Chinese (pixel cleaning),
# CJK fonts (synthetic burned-in text), PostgreSQL 15 (the archive's index tested for real).
# libisal2 (Intel ISA-L): optional, computes split storage's erasure code ~30x faster.
APT_PACKAGES := dcmtk dicom3tools tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim \
                fonts-noto-cjk fonts-wqy-zenhei postgresql libisal2
APT_FILES    := /usr/bin/dcmdump /usr/bin/dciodvfy /usr/bin/storescu \
                /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata \
                /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc /usr/lib/postgresql/15/bin/initdb

.PHONY: run test install bytecode system-deps s3rver lint bench clean

run: install bytecode system-deps
	$(BIN)/safepacs serve --data-dir safepacs-data

test: install bytecode system-deps s3rver
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

install: $(STAMP)

# An editable install leaves the package uncompiled, and where PYTHONDONTWRITEBYTECODE is set
# every command compiles it again: 40 ms of each start-up.  Compiled here, as pip does for
# a regular install; a file changed later is compiled in memory until the next make.
bytecode: install
	$(BIN)/python -m compileall -q src

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

# s3rver (npm), the real S3-compatible server the archive's S3 store is tested against;
# the test fixture installs it the same way when missing.
s3rver: .cache/node/node_modules/.bin/s3rver

.cache/node/node_modules/.bin/s3rver:
	mkdir -p .cache/node && npm install --no-audit --no-fund --prefix .cache/node s3rver@3.7.1

lint: install
	$(BIN)/ruff check src tests benchmarks tools

bench: install bytecode
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/deid_throughput.py

clean:
	rm -rf $(VENV) demo .pytest_cache
