# The two commands of the README: `make demo` and `make test`. Both do all set-up themselves.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build demo test bench clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	@bash scripts/demo.sh $(BUILD_DIR)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j 1 --timeout 900

bench: build
	@bash bench/run_all.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR)
