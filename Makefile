# containers-storage: build, test, benchmark.
#
#   make binary      build ./containers-storage (release)
#   make test        the whole test suite (unit, property, CLI, crash, dataset)
#   make dataset     build the Debian image dataset the dataset tests and the
#                    bench use (scripts/make-dataset.sh: root, Debian's mirrors)
#   make bench       the end-to-end benchmark, the Go containers-storage beside
#                    ours where installed; writes target/bench/benchmarks.md
#                    and its charts
#   make bench-docs  copy that report and its charts to docs/ (running the
#                    bench first if there is none)
#   make micro-bench the criterion benchmarks of the import stages
#   make lint        cargo fmt --check and clippy with warnings as errors
#   make vagrant-test  the same suite, privileged tests included, in a VM
#                    (VAGRANT_PROVIDER=libvirt by default, or virtualbox)
#
# CS_DEBIAN_TARS, if set, names a dataset built elsewhere (its tars/).

CARGO ?= cargo
DATASET ?= $(CURDIR)/target/dataset
BENCH_OUT ?= $(CURDIR)/target/bench

.PHONY: all binary deps test lint dataset bench bench-deps bench-docs micro-bench vagrant-test clean

all: binary

binary:
	$(CARGO) build --release --locked
	cp target/release/containers-storage ./containers-storage

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

deps:
	bash scripts/install-deps.sh

dataset:
	bash scripts/make-dataset.sh "$(DATASET)"

# The dataset is built where it can be (root, Debian's mirrors); where it
# cannot, the script says why and the dataset tests skip, saying why too.
test: deps lint
	@if [ -n "$$CS_DEBIAN_TARS" ]; then \
	  echo "make test: the Debian dataset from CS_DEBIAN_TARS=$$CS_DEBIAN_TARS"; \
	elif bash scripts/make-dataset.sh "$(DATASET)"; then \
	  export CS_DEBIAN_TARS="$(DATASET)/tars"; \
	else \
	  echo "make test: carrying on without the Debian dataset: its tests skip" >&2; \
	fi; \
	if command -v cargo-nextest >/dev/null 2>&1; then \
	  $(CARGO) nextest run --locked --no-fail-fast; \
	else \
	  $(CARGO) test --locked --no-fail-fast; \
	fi

# The Go containers-storage (Debian's package) for the bench's side-by-side
# columns; the bench leaves them out, saying so, where it is missing.
bench-deps:
	@if [ -x /usr/bin/containers-storage ]; then :; \
	elif [ "$$(id -u)" -ne 0 ]; then \
	  echo "bench: the Go containers-storage is not installed (apt-get install containers-storage, as root); its columns are left out" >&2; \
	elif ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containers-storage >/dev/null; }; then \
	  echo "bench: could not install the Go containers-storage with apt-get; its columns are left out" >&2; \
	fi

bench: binary bench-deps
	@if [ -n "$$CS_DEBIAN_TARS" ]; then :; \
	elif bash scripts/make-dataset.sh "$(DATASET)"; then \
	  export CS_DEBIAN_TARS="$(DATASET)/tars"; \
	else \
	  echo "make bench: the benchmark runs on the Debian dataset, which could not be built (see above)" >&2; exit 1; \
	fi; \
	$(CARGO) bench --locked --bench e2e -- --out "$(BENCH_OUT)"

bench-docs:
	@[ -f "$(BENCH_OUT)/benchmarks.md" ] || $(MAKE) --no-print-directory bench
	cp "$(BENCH_OUT)"/benchmarks.md "$(BENCH_OUT)"/benchmarks-*.svg docs/

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
