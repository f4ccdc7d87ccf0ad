# Thin wrapper around CMake. The two commands a new user needs:
#   make run    install what is missing, build (Release), serve on http://127.0.0.1:8080/
#   make test   install what is missing, build, run every test (plus ASan+UBSan and TSan)
BUILD ?= build
JOBS ?= $(shell nproc)
PORT ?= 8080
ARGS ?=
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 300

.PHONY: all deps build run test test-release test-sanitize test-tsan bench fuzz install clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	@echo "ringhttp: serving on http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	@./$(BUILD)/ringhttp --port $(PORT) --root site $(ARGS)

test: test-release test-sanitize test-tsan

test-release: build
	@cd $(BUILD) && ctest --output-on-failure -j2

# The same suite with AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRH_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2

# The threaded modules' unit tests under ThreadSanitizer.
test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DRH_TSAN=ON >/dev/null
	@cmake --build build-tsan -j$(JOBS)
	@cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ctest --output-on-failure -L unit -j2

bench: build
	@scripts/install-deps --bench
	@bench/run --build $(BUILD) --micro $(ARGS)

# libFuzzer on the connection state machine and parser (clang, build-fuzz): replays the
# seeds and regressions, fuzzes for FUZZ_SECONDS, prints the run counts. See tests/fuzz/.
fuzz: deps
	@tests/fuzz/run build-fuzz $(FUZZ_SECONDS)

# Builds only the libraries and the binary (no tests, no benchmarks) in its own directory,
# then installs them with the header, pkg-config and CMake files under PREFIX.
install: deps
	@cmake -S . -B build-install -DCMAKE_BUILD_TYPE=Release -DRH_TESTS=OFF -DRH_BENCH=OFF \
	    $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-install -j$(JOBS)
	@cmake --install build-install $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf build build-asan build-tsan build-fuzz build-install
