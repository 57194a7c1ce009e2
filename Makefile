# The two commands of the README: `make demo` and `make test`. Both do all set-up themselves.
# `make test`: ctest, then every libFuzzer target for FUZZ_SECONDS (default 20) s each
# (scripts/fuzz.sh; FUZZ_SECONDS=0 skips that). `make fuzz`: the long run, 600 s each.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build demo test fuzz bench clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j 1 --timeout 900
	@bash scripts/fuzz.sh

fuzz: setup
	@bash scripts/fuzz.sh --long

bench: build
	@bash bench/run_all.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) build-fuzz
