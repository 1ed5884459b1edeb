# The README's two commands: `make demo` and `make test`. Both build .venv/ on first use.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: demo test bench eval system-deps clean

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(VENV_STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: $(VENV_STAMP)
	$(PY) -m core.demo

test: $(VENV_STAMP) system-deps
	$(PY) -m pytest -q

bench: $(VENV_STAMP)
	$(PY) -m core.bench

clean:
	rm -rf .venv demo-out

bench-obs: $(VENV_STAMP)
	$(PY) -m tests.obs_harness

.PHONY: bench-obs
