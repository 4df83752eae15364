# Thin wrapper over CMake presets: install missing Debian packages, configure, build,
# then run the main job (demo) or the whole test suite (check).
#   make demo                 build and run the main job
#   make check                build and run every test (ctest)
#   make check PRESET=asan    the same under AddressSanitizer + UBSan (also: debug)
#   make check PRESET=fuzz    clang + libFuzzer: every test, and each fuzz target for 20 s
PRESET ?= release
BUILD := build/$(PRESET)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
export PATH := /usr/local/cuda/bin:$(PATH)

# Debian packages ember builds against (CUDA comes from /usr/local/cuda when present).
DEB_PACKAGES := cmake make gcc g++ pkg-config libopenblas-openmp-dev liblmdb-dev libopenmpi-dev openmpi-bin zlib1g-dev \
                libdnnl-dev
# The fuzz preset (make check PRESET=fuzz) builds with clang and links libFuzzer from
# clang's runtime library; clang's OpenMP is libomp.
ifeq ($(PRESET),fuzz)
DEB_PACKAGES += clang libclang-rt-dev libomp-dev
endif

.PHONY: all deps configure build demo check test clean

all: build

deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "deps: not a Debian system; make sure these are installed: $(DEB_PACKAGES)"; exit 0; fi; \
	missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "deps: missing Debian packages; install them with:"; \
	  echo "  sudo apt-get install -y$$missing"; \
	fi

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build --preset $(PRESET) -j $(JOBS)

demo: build
	./$(BUILD)/tools/ember train

check: build
	ctest --preset $(PRESET) -j $(JOBS)

test: check

clean:
	rm -rf build
