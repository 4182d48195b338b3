# servingd: every entry point lives here. `make run` and `make test` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check
TF_PACKAGE ?= tensorflow-cpu
CONSTRAINTS := requirements/constraints.txt
APT_PACKAGES := python3-venv pkg-config libsystemd-dev gcc python3-dev
STAMP := $(VENV)/.installed
DEMO_DIR := build/demo_models
PYTEST := $(PY) -m pytest
# `make deb`: the Debian package (debian/, docs/packaging.md). Its build needs no .venv.
DEB_APT_PACKAGES := debhelper dh-virtualenv python3-venv python3-dev libsystemd-dev pkg-config \
	pandoc zstd lintian piuparts debootstrap systemd-container
# DIST=bookworm|trixie builds (and checks, and e2e-tests) the package for that release inside a
# debootstrap'd tree of it; without DIST, `make deb` builds here for this machine's release.
HOST_DIST := $(shell . /etc/os-release && echo $$VERSION_CODENAME)
DEB_DIST = $(or $(DIST),$(HOST_DIST))
DEB_DIR = build/deb/$(DEB_DIST)
# Left behind by the purge of systemd itself (a dependency piuparts installs and purges with
# us): its own tmpfiles.d create these at install time; no file of servingd's is among them.
# trixie's systemd also links /etc/default/locale and /etc/vconsole.conf, and its apt leaves
# debconf's template extraction directory (tmp.ci).
PIUPARTS_IGNORES := --ignore=/root/.ssh/ --ignore=/var/cache/private/ \
	--ignore=/var/lib/private/ --ignore=/var/log/private/ \
	--ignore=/var/lib/systemd/coredump/ --ignore=/var/lib/systemd/pstore/ \
	--ignore=/etc/default/locale --ignore=/etc/vconsole.conf --ignore=/var/cache/debconf/tmp.ci/

.PHONY: venv run test test-fast lint unit integration bench bench-quick bench-gpu soak deb deb-check e2e clean protos

venv: $(STAMP)

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	./scripts/apt-deps.sh $(APT_PACKAGES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) $(TF_PACKAGE) -r requirements/runtime.txt -r requirements/dev.txt
	$(PIP) install -q --no-deps -c $(CONSTRAINTS) -r requirements/nodeps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# The demo model is exported by the project's own script (no download).
$(DEMO_DIR)/half_plus_two/1/saved_model.pb: $(STAMP) src/servingd/tools/export_models.py
	rm -rf $(DEMO_DIR)/half_plus_two/1
	$(PY) -m servingd.tools.export_models half_plus_two $(DEMO_DIR)/half_plus_two/1

GRPC_PORT ?= 8500
REST_PORT ?= 8501

run: venv $(DEMO_DIR)/half_plus_two/1/saved_model.pb
	exec $(VENV)/bin/servingd --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) --grpc_bind_address=127.0.0.1 \
		--rest_api_bind_address=127.0.0.1 \
		--model_name=half_plus_two --model_base_path=$(abspath $(DEMO_DIR)/half_plus_two)

lint: venv
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy

# Everything: lint, the .deb (the e2e tests install it in a real systemd), the whole suite.
test: lint deb
	$(PYTEST) -q -ra

test-fast: venv
	$(PYTEST) -q -x -m "not slow and not e2e"

# make bench BENCH_ARGS="--duration 8 --skip-mlserver": see python -m tests.bench.run --help
# h2load is the load generator; nghttpd (a C HTTP/2 server) measures h2load's own ceiling.
BENCH_APT_PACKAGES := nghttp2-client nghttp2-server
BENCH_ARGS ?=
bench: venv
	./scripts/apt-deps.sh $(BENCH_APT_PACKAGES)
	$(PY) -m tests.bench.run $(BENCH_ARGS)

# A smoke run of make bench (about 2 minutes): one round, one pair per target, 1 s points.
bench-quick: venv
	./scripts/apt-deps.sh $(BENCH_APT_PACKAGES)
	$(PY) -m tests.bench.run --quick $(BENCH_ARGS)

# MobileNetV2 and ResNet-50 on a GPU, servingd against in-process; "skipped: no GPU" without
# one. BENCH_GPU_PYTHON=/path/to/python: an interpreter whose TensorFlow is built for CUDA.
bench-gpu: venv
	./scripts/apt-deps.sh $(BENCH_APT_PACKAGES)
	./scripts/bench-gpu.sh $(BENCH_ARGS)

# The reliability runs at full counts (50 swaps, 100 load/unload cycles, 60 s overload,
# 300 fuzz examples per REST operation, 10x the property-test inputs; about 15 minutes),
# then the table in docs/reliability.md from their figure lines.
soak: venv
	rm -f build/reliability/figures.log
	SERVINGD_SOAK=1 $(PYTEST) -q -ra -p no:cacheprovider --timeout=1800 tests/reliability \
		tests/unit/test_json_tensors_properties.py tests/unit/test_codecs.py
	$(PY) -m tests.reliability.report

# The generated module is committed (the deb build and a fresh clone need no protoc);
# tests/unit/test_protos.py fails when it no longer matches its .proto.
# src/servingd/wire: TF Serving's and TensorFlow's messages from protos/tf_serving_wire.binpb
# (refresh that file from the pinned wheels with scripts/wire_descriptors.py).
protos: venv
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src \
		protos/servingd/compat/tf_serving_config.proto
	$(PY) scripts/wire_protos.py

# TF_PACKAGE=tensorflow builds the GPU variant; DEB_COMPRESSION=xz|zstd|gzip overrides the choice.
deb:
	./scripts/apt-deps.sh $(DEB_APT_PACKAGES)
	TF_PACKAGE=$(TF_PACKAGE) $(foreach v,DIST DEB_COMPRESSION DEB_COMPRESSION_LEVEL,\
		$(if $($(v)),$(v)=$($(v)))) ./scripts/build-deb.sh

# lintian (no errors, no warnings beyond debian/servingd.lintian-overrides) and piuparts
# (install, remove, purge in a clean chroot of the package's release, its built-in mirror).
# Minutes of lintian on the venv's files: not part of `make deb`.
deb-check:
	lintian --fail-on error,warning $(DEB_DIR)/servingd_*.deb
	piuparts -d $(DEB_DIST) $(PIUPARTS_IGNORES) $(DEB_DIR)/servingd_*.deb

# The package in a real systemd (systemd-nspawn): install, serve, reload, restart, upgrade, purge.
e2e: venv
	test -n "$$(ls $(DEB_DIR)/servingd_*.deb 2>/dev/null)" || $(MAKE) deb
	SERVINGD_DIST=$(DEB_DIST) $(PYTEST) -q -ra -m e2e tests/e2e

clean:
	rm -rf build .pytest_cache .mypy_cache
