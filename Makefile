# captionkit: `make run` and `make test` set everything up in .venv/ and then do their job.
# Timings below are for a 2-core machine with the package registries reachable.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# PyTorch: the CPU wheel pinned by version (a bare `torch` would pull a multi-GB CUDA build). See DEVELOPERS.md.
TORCH  ?= torch==2.13.0
# Debian packages the tests and examples use (installed with apt-get when root).
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng chromium  # Java (METEOR, the PTB reference) comes with the machine image

.PHONY: help setup run test proofs bench lint clean-outputs distclean

help:
	@echo "make run    - set up .venv (first time ~2 min), make the example media, describe + write posts for examples/posts.csv, compare two systems"
	@echo "make test   - set up .venv (first time on a machine: + ~7 min to build llama-cpp-python once), then run the tests (~3 min)"
	@echo "make proofs - train each trainer from a random small model on synthetic data; writes docs/proofs.md (<= 10 min each)"
	@echo "make bench  - captionkit vs the plain transformers loop on random-weight models of the real configs (~15 min; models built once); writes docs/benchmarks.md"
	@echo "make lint   - ruff over src/ and tests/"

$(BIN)/python:
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> installing $(TORCH) (CPU build), then captionkit (editable) with all extras into $(VENV)"
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	@scripts/system-deps.sh $(APT_PACKAGES)

setup: $(VENV)/.installed system-deps
	@test -x $(BIN)/captionkit && echo "==> $(BIN)/captionkit is ready"

run: setup
	@echo "==> making the example media (examples/media/, skipped when present)"
	$(BIN)/python examples/make_examples.py
	@echo "==> captionkit run examples/posts.csv --out out/examples (resumes if run before; offline the URL row fails and is recorded)"
	$(BIN)/captionkit run examples/posts.csv --out out/examples --formats csv,parquet,xlsx --retries 1
	@echo "==> results: out/examples/results.{jsonl,csv,parquet,xlsx}; summary:"
	@cat out/examples/summary.md
	@echo "==> a second system: the same descriptions written as Instagram captions (captionkit write)"
	$(BIN)/captionkit write out/examples --out out/examples-instagram --platform instagram --no-progress
	@echo "==> comparing both systems' posts with the tweets' real text (captionkit eval; report in out/examples-report/)"
	$(BIN)/captionkit eval -p x=out/examples -p instagram=out/examples-instagram --field posts -r out/examples \
		--metrics coco,sacrebleu,posts --platform x --out out/examples-report

# llama-cpp-python[server] for the real-server tests of the OpenAI-compatible writer: the wheel is built once
# (4-7 min on 2 cores) into ~/.cache/captionkit-build and reused by every clone; later installs take ~2 s.
# If the build fails, those tests skip with the reason.
$(VENV)/.llama-cpp: scripts/llama-cpp-wheel.sh $(VENV)/.installed
	@if scripts/llama-cpp-wheel.sh $(VENV); then touch $@; \
	else echo "note: llama-cpp-python not installed; the real-server writer tests will skip"; fi

test: setup $(VENV)/.llama-cpp
	@echo "==> running the tests (pytest; ~8 minutes on 2 cores)"
	$(BIN)/python -m pytest -q

proofs: setup
	@echo "==> learning proofs: each trainer from a random small model on \`captionkit synth\` data (<= 10 min each)"
	$(BIN)/python -m captionkit.training.proofs --out out/proofs --docs docs/proofs.md

lint: setup
	$(BIN)/ruff check src tests

clean-outputs:
	rm -rf out/ examples/media/

distclean: clean-outputs
	rm -rf $(VENV)

bench: setup
	@echo "==> captionkit bench: the real configurations with random weights, saved once in ~/.cache/captionkit/bench (~15 min on 2 cores)"
	$(BIN)/captionkit bench --write-docs docs/benchmarks.md
