# ingot.metal: developer and CI entry points.  `make help` lists the targets.
#
# Every target works from a clean checkout on a fresh Debian machine: `make deps` installs the
# Debian packages (bindep.txt), `make venv` the Python ones (tests/requirements-dev.txt) into .venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
# The interpreter that builds .venv, resolved before .venv/bin goes first on PATH (pyenv shims included).
BASE_PYTHON := $(shell $(PYTHON) -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)' 2>/dev/null)
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

VENV := $(REPO)/.venv
VENV_STAMP := $(VENV)/.installed-requirements
VENV_SITE := $(VENV)/lib/python$(PY_VERSION)/site-packages
BUILD := $(REPO)/.build
COLLECTION_LINK := $(BUILD)/ansible_collections/ingot/metal
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/ingot/metal
DIST := $(BUILD)/dist
EE_CONTEXT := $(BUILD)/ee
REQUIREMENTS := $(REPO)/tests/requirements-dev.txt $(REPO)/requirements.txt $(REPO)/provisioner/requirements.txt
# The provisioner service (provisioner/, src layout): its wheel goes into roles/provisioner/files (the collection
# tarball carries it, git ignores it), versioned by setup.py from galaxy.yml; the wheels of its pinned
# dependencies (this machine's Python and platform: Debian bookworm, Python 3.11) go into the wheelhouse, for
# hosts without PyPI (roles/provisioner: provisioner_wheelhouse_dir). SOURCE_DATE_EPOCH: the same sources give
# the same wheel, byte for byte (the lab caches its configured provisioner host by the role's content).
PROVISIONER := $(REPO)/provisioner
PROVISIONER_SOURCES := $(shell find $(PROVISIONER) -name build -prune -o -name '*.egg-info' -prune -o -name __pycache__ -prune -o -type f -print 2>/dev/null)
PROVISIONER_DIST := $(REPO)/roles/provisioner/files
PROVISIONER_WHEEL_STAMP := $(BUILD)/provisioner-wheel.stamp
PROVISIONER_WHEELHOUSE := $(BUILD)/provisioner-wheelhouse
# a wheel removed by hand (or by git clean) is built again though the stamp is there
PROVISIONER_WHEEL_GONE := $(if $(wildcard $(PROVISIONER_DIST)/ingot_provisioner-*-py3-none-any.whl),,provisioner-wheel-gone)
# The shell scripts of the tooling, checked by shellcheck in `make lint` (ansible-test checks *.sh).
SHELL_SCRIPTS := $(REPO)/.ci/run $(filter-out %.py,$(wildcard $(REPO)/hack/*))

# Extra pytest arguments (make unit PYTEST_ARGS='-x --timeout=60'); the suites' configuration is pytest.ini.
PYTEST_ARGS ?=
# ansible-test sanity arguments (make sanity SANITY_ARGS='--test pylint').
SANITY_ARGS ?=
# The roles whose Molecule scenario `make molecule` runs (empty: every roles/*/molecule/default).
MOLECULE_ROLES ?=

# The environment of every recipe (and of the tests, the demo and the benchmarks they run).
export PATH := $(VENV)/bin:$(subst $(VENV)/bin:,,$(PATH))
export INGOT_REPO := $(REPO)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD):$(VENV_SITE)/ansible_collections
export INGOT_RUNNER_DIR := $(REPO)/.runner
export PIP_DISABLE_PIP_VERSION_CHECK := 1

TEST_STEPS := deps venv collection sanity lint unit lab-tests provisioner-tests browser-tests integration molecule e2e bench-short

.PHONY: help deps venv collection sanity lint changelog-lint ee unit lab-tests provisioner-tests browser-tests integration molecule e2e bench bench-short demo test clean distclean

help: ## list the targets
	@echo "ingot.metal make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 18

deps: ## install the missing Debian packages of bindep.txt (apt-get; root or sudo)
	@PYTHON=$(PYTHON) $(REPO)/hack/install-deb-deps

venv: $(VENV_STAMP) ## create .venv and install tests/requirements-dev.txt (again only when it changed)

$(VENV_STAMP): $(REQUIREMENTS)
	@test -n "$(BASE_PYTHON)" || { echo "$(PYTHON) not found: run make deps" >&2; exit 1; }
	@if [ ! -x $(VENV)/bin/python ] || ! $(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(PY_VERSION)".split("."))))'; then \
	  echo "creating $(VENV) with $(BASE_PYTHON)"; rm -rf $(VENV); $(BASE_PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --quiet --upgrade-strategy only-if-needed -r $(REPO)/tests/requirements-dev.txt
	@touch $@

.PHONY: provisioner-wheel-gone
provisioner-wheel-gone: ;

provisioner-dist: $(PROVISIONER_WHEEL_STAMP) $(PROVISIONER_WHEELHOUSE)/.complete ## the provisioner's wheel (roles/provisioner/files) and wheelhouse (.build)

# (the venv order-only: it is shared, and a stamp touched by another checkout's `make venv` changes nothing here)
$(PROVISIONER_WHEEL_STAMP): $(PROVISIONER_SOURCES) $(REPO)/galaxy.yml $(PROVISIONER_WHEEL_GONE) | $(VENV_STAMP)
	@mkdir -p $(BUILD) $(PROVISIONER_DIST) && rm -f $(PROVISIONER_DIST)/ingot_provisioner-*
	@# in the source tree (pip builds in place): build/ and the egg-info go again, the wheel stays
	cd $(PROVISIONER) && SOURCE_DATE_EPOCH=315532800 python -m pip wheel --quiet --no-deps --no-build-isolation \
	  --wheel-dir $(PROVISIONER_DIST) . && rm -rf build src/*.egg-info
	cp $(PROVISIONER)/requirements.txt $(PROVISIONER_DIST)/ingot_provisioner-requirements.txt
	@version=$$(python -c 'import sys; sys.path.insert(0, "$(PROVISIONER)/src"); from ingot_provisioner import _version; print(_version.galaxy_version("$(REPO)/galaxy.yml"))'); \
	  test -f $(PROVISIONER_DIST)/ingot_provisioner-$$version-py3-none-any.whl \
	  || { echo "no ingot_provisioner-$$version-py3-none-any.whl (galaxy.yml version $$version) in $(PROVISIONER_DIST)" >&2; exit 1; }
	@touch $@

$(PROVISIONER_WHEELHOUSE)/.complete: $(PROVISIONER)/requirements.txt | $(VENV_STAMP)
	@rm -rf $(PROVISIONER_WHEELHOUSE)
	python -m pip download --quiet --only-binary=:all: --dest $(PROVISIONER_WHEELHOUSE) -r $(PROVISIONER)/requirements.txt
	@touch $@

collection: venv provisioner-dist ## make ingot.metal importable: .build/ansible_collections/ingot/metal -> repo root
	@mkdir -p $(dir $(COLLECTION_LINK))
	@[ "$$(readlink $(COLLECTION_LINK) 2>/dev/null)" = "../../.." ] || ln -sfn ../../.. $(COLLECTION_LINK)
	@ansible-galaxy collection list ingot.metal 2>/dev/null | grep -q '^ingot\.metal ' \
	  || { echo "ingot.metal is not found through ANSIBLE_COLLECTIONS_PATH=$(ANSIBLE_COLLECTIONS_PATH)" >&2; exit 1; }
	@echo "ingot.metal: $(COLLECTION_LINK) -> $(REPO)"

sanity: venv ## ansible-test sanity --venv on a copy at .build/sanity/ansible_collections/ingot/metal
	@python $(REPO)/hack/ansible-test-pip-bootstrap.py >/dev/null
	@$(REPO)/hack/sync-tree $(SANITY_ROOT)
	@# its own (empty) git repository: ansible-test lists content with git, and the enclosing repo ignores .build
	@[ -d $(SANITY_ROOT)/.git ] || git -C $(SANITY_ROOT) init -q
	cd $(SANITY_ROOT) && ansible-test sanity --venv --python $(PY_VERSION) --color no $(SANITY_ARGS)

lint: venv collection ## ansible-lint, shellcheck, antsibull-changelog lint, ansible-builder create
	ansible-lint --offline
	shellcheck $(SHELL_SCRIPTS)
	$(MAKE) changelog-lint
	$(MAKE) ee

changelog-lint: venv ## antsibull-changelog lint (fragments and changelog.yaml)
	antsibull-changelog lint

ee: venv provisioner-dist ## build the collection into .build/dist and the EE build context into .build/ee
	@rm -rf $(DIST) $(EE_CONTEXT)
	ansible-galaxy collection build --output-path $(DIST) $(REPO)
	ansible-builder create --file $(REPO)/execution-environment.yml --context $(EE_CONTEXT) --output-filename Containerfile
	@test -s $(EE_CONTEXT)/Containerfile && ls $(EE_CONTEXT)/_build/collections/ingot-metal-*.tar.gz >/dev/null
	@echo "EE build context: $(EE_CONTEXT) (ansible-builder build -f execution-environment.yml where a registry is reachable)"

unit: venv collection ## pytest tests/unit
	@$(REPO)/hack/run-pytest tests/unit $(PYTEST_ARGS)

lab-tests: venv collection ## pytest tests/lab (the virtual BMC lab)
	@INGOT_LAB_ANSIBLE=1 $(REPO)/hack/run-pytest tests/lab $(PYTEST_ARGS)

provisioner-tests: venv collection ## pytest tests/provisioner (the provisioner service, its agent, races, crashes)
	@$(REPO)/hack/run-pytest tests/provisioner $(PYTEST_ARGS)

browser-tests: venv collection ## pytest tests/browser (the provisioner's web view in headless Chromium, Selenium)
	@$(REPO)/hack/run-pytest tests/browser $(PYTEST_ARGS)

integration: venv collection ## pytest tests/integration
	@$(REPO)/hack/run-pytest tests/integration $(PYTEST_ARGS)

molecule: venv collection ## molecule test of roles/*/molecule/default (hack/run-molecule; MOLECULE_ROLES='ssh_keys' narrows; root, Docker)
	@$(REPO)/hack/run-molecule $(MOLECULE_ROLES)

e2e: venv collection ## pytest tests/e2e (the lab rack: Docker nodes PXE-booting through their vBMCs; root, Docker)
	@$(REPO)/hack/run-pytest tests/e2e $(PYTEST_ARGS)

# The benchmarks: every tests/bench/bench_*.py and tests/provisioner/bench_*.py. Each exits 1 when it misses its
# target (the figure it prints beside its ratio); `--short` proves it works (every arm runs once, the ratio is
# printed) without judging the ratio, which a busy 2-core CI machine cannot hold.
# Run as scripts, they import the lab's package and the suites' helpers through PYTHONPATH (pytest.ini's
# pythonpath does it for the test suites).
BENCHES = tests/bench/bench_*.py tests/provisioner/bench_*.py
BENCH_PATH := $(REPO)/lab:$(REPO)/tests/integration:$(REPO)/tests/provisioner:$(REPO)/provisioner/src
BENCH_RUN = export PYTHONPATH=$(BENCH_PATH); shopt -s nullglob; benches=($(BENCHES)); failed=(); \
	if [ $${\#benches[@]} -eq 0 ]; then echo "bench: no benchmark found ($(BENCHES))" >&2; exit 1; fi; \
	for b in "$${benches[@]}"; do echo "== $$b $(1)"; python "$$b" $(1) || failed+=("$$b"); done; \
	if [ $${\#failed[@]} -ne 0 ]; then echo "bench: missed its target or failed: $${failed[*]}" >&2; exit 1; fi

bench: venv collection ## every benchmark in full; fails when one misses its target and says which
	@$(call BENCH_RUN,)

bench-short: venv collection ## every benchmark in its --short form: proves each runs and prints its ratio, not judged
	@$(call BENCH_RUN,--short)

demo: deps venv collection ## the main job: python demo/demo.py (the lab's package ingot_lab on PYTHONPATH)
	@PYTHONPATH=$(REPO)/lab python $(REPO)/demo/demo.py

test: ## every step in order, failing fast: $(TEST_STEPS)
	@for step in $(TEST_STEPS); do \
	  echo "==== make $$step"; start=$$(date +%s); \
	  $(MAKE) $$step || { echo "==== make $$step FAILED after $$(( $$(date +%s) - start ))s" >&2; exit 1; }; \
	  echo "==== make $$step: ok in $$(( $$(date +%s) - start ))s"; \
	done

clean: ## remove build output, test output and caches (keeps .venv and the lab's .lab)
	rm -rf $(BUILD) $(PROVISIONER_DIST)/ingot_provisioner-* $(REPO)/.runner $(REPO)/tests/output $(REPO)/.pytest_cache $(REPO)/.ansible
	find $(REPO) -path $(VENV) -prune -o -path $(REPO)/.lab -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv
	rm -rf $(VENV)
