# containers-storage: build, test, benchmark.
#
#   make binary    build ./containers-storage (release)
#   make test      the whole test suite (unit, property, CLI, crash, dataset)
#   make dataset   build the Debian image tars the dataset tests and bench use
#   make bench     the end-to-end benchmark; writes docs/benchmarks.md
#   make lint      cargo fmt --check and clippy with warnings as errors
#   make vagrant-test  the same suite, privileged tests included, in a VM
#                  (VAGRANT_PROVIDER=libvirt by default, or virtualbox)

CARGO ?= cargo
DATASET ?= $(CURDIR)/target/dataset
DATASET_SCRIPT ?= $(CURDIR)/../shared/datasets/make-debian-images.sh
export CS_DEBIAN_TARS ?= $(DATASET)/tars

.PHONY: all binary deps test lint dataset bench micro-bench vagrant-test clean

all: binary

binary:
	$(CARGO) build --release --locked
	cp target/release/containers-storage ./containers-storage

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

deps:
	bash scripts/install-deps.sh

# The dataset tests skip (saying why) when the dataset cannot be built
# here (it needs root and debootstrap).
test: deps lint
	-@$(MAKE) --no-print-directory dataset
	@if command -v cargo-nextest >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --no-fail-fast; \
	else \
	  $(CARGO) test --locked --no-fail-fast; \
	fi

dataset:
	@if [ -f "$(CS_DEBIAN_TARS)/trixie-slim.diff.tar" ]; then \
	  echo "dataset: $(CS_DEBIAN_TARS) is ready"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	  echo "dataset: building it needs root (debootstrap); dataset tests will skip" >&2; exit 1; \
	else \
	  bash "$(DATASET_SCRIPT)" "$(DATASET)"; \
	fi

bench: binary dataset
	$(CARGO) bench --locked --bench e2e -- --write docs/benchmarks.md

micro-bench:
	$(CARGO) bench --locked --bench micro

VAGRANT_PROVIDER ?= libvirt
vagrant-test:
	cd vagrant && VAGRANT_PROVIDER=$(VAGRANT_PROVIDER) vagrant up --provider=$(VAGRANT_PROVIDER) --no-provision
	cd vagrant && vagrant rsync && vagrant provision; status=$$?; \
	  vagrant halt; \
	  if [ $$status -eq 0 ]; then echo "vagrant-test: PASSED"; else echo "vagrant-test: FAILED" >&2; fi; \
	  exit $$status

clean:
	$(CARGO) clean
	rm -f ./containers-storage
