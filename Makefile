# Two commands on a fresh machine:
#   make run    set everything up and open the app on the built-in demo workspace
#   make test   set everything up and run the whole test suite headless
#   make package        build dist/RadSynth{Reader,Studio}-<version>-linux-x86_64.tar.gz (packaging/README.md)
#   make package-check  build them, unpack each into an empty folder and run it without the project's Python
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_WORKSPACE ?= $(HOME)/.local/share/RadSynth Studio/demo-workspace

.PHONY: setup run test bench package package-check clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m app --workspace "$(DEMO_WORKSPACE)"

test: setup
	QT_QPA_PLATFORM=offscreen RADSYNTH_THREADS=2 $(PY) -m pytest -q -p no:cacheprovider

package: setup
	@bash packaging/build.sh

VERSION = $(shell python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")

package-check: package
	$(PY) packaging/check.py dist/RadSynthReader-$(VERSION)-linux-x86_64.tar.gz dist/RadSynthStudio-$(VERSION)-linux-x86_64.tar.gz

# The anchors install next to the project's torch, never over it: the installed torch is pinned in the same
# pip call (a 2.13.0+cpu build stays that build), so pip refuses an anchor that would replace it.
bench: setup
	$(PY) -m pip install -q -e ".[bench]" "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
