#!/usr/bin/env bash
# The library as a dependency, end to end: installs a built tree into a fresh temporary
# prefix, then, only against what was installed:
#   - the libraries: no global symbol but rh_* (.a and .so), every function of the header
#     exported, a SONAME, no libmimalloc needed at link time;
#   - tests/embed/collide.c (defines conn_close, h1_input_execute, app_router_match, llhttp_init; checks
#     that its malloc is libc's) built with pkg-config (shared, and static), run;
#   - every examples/*.c (or examples/NAME/ with its .c files: one program; a file
#     examples/NAME/pkgs names the extra pkg-config modules it needs) and every ```c block of
#     README.md built with pkg-config and run briefly: an example that handles --self-test
#     (serve on port 0, ask itself, exit 0) runs that way, in its folder; one that does not
#     must still be running after 1 s;
#   - the same through find_package(ringhttp CONFIG) + ringhttp::ringhttp (and _static);
#   - configuring with -DRH_TESTS=OFF -DRH_BENCH=OFF (what `make install` does) leaves no
#     test or benchmark target.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
passed=0
failed=0

check() { # check NAME COMMAND...: runs it, counts, shows its output on failure
    local name=$1
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        echo "$out" | sed 's/^/    /' | tail -40
    fi
}

cmake --install "$build_dir" --prefix "$prefix" >/dev/null || { echo "install failed"; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
export LD_LIBRARY_PATH="$prefix/lib"
lib=$prefix/lib
cc_flags=(-std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter) # the project's own warnings

installed_files() {
    for f in include/ringhttp.h lib/libringhttp.a lib/libringhttp.so lib/pkgconfig/ringhttp.pc \
        lib/cmake/ringhttp/ringhttpConfig.cmake bin/ringhttp; do
        test -e "$prefix/$f" || { echo "missing $f"; return 1; }
    done
}
check "installed: library, header, pkg-config, CMake package, binary" installed_files

only_rh_symbols() { # only_rh_symbols NM_ARGS...
    local bad
    bad=$(nm "$@" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ && $2 != "U" && $2 != "W" && $3 !~ /^rh_/')
    [ -z "$bad" ] || { echo "global symbols without rh_:"; echo "$bad" | head -20; return 1; }
    nm "$@" | awk '$3 ~ /^rh_/' | grep -q . || { echo "no rh_ symbol at all"; return 1; }
}
check "nm libringhttp.a: only rh_ globals" only_rh_symbols -g --defined-only "$lib/libringhttp.a"
check "nm -D libringhttp.so: only rh_ globals" only_rh_symbols -D --defined-only "$lib/libringhttp.so"

# Every function the header declares is exported (a public function defined in a file that
# does not include ringhttp.h would be hidden).
header_functions() {
    printf '#include <ringhttp.h>\n' | cc -E -P -I "$prefix/include" -x c - |
        python3 -c 'import re,sys; print("\n".join(sorted(set(re.findall(r"\b(rh_\w+)\s*\((?!\s*\*)", sys.stdin.read())))))'
}
all_exported() { # all_exported NM_ARGS...
    local missing
    missing=$(comm -23 <(header_functions) <(nm "$@" | awk '{print $3}' | sort -u))
    [ -z "$missing" ] || { echo "declared but not exported:"; echo "$missing"; return 1; }
}
check "libringhttp.so exports every function of ringhttp.h" all_exported -D --defined-only "$lib/libringhttp.so"
check "libringhttp.a defines every function of ringhttp.h" all_exported -g --defined-only "$lib/libringhttp.a"

has_soname() { readelf -d "$lib/libringhttp.so" | grep -E 'SONAME.*\[libringhttp\.so\.[0-9]'; }
check "libringhttp.so has a SONAME" has_soname
no_mimalloc_needed() { ! readelf -d "$lib/libringhttp.so" | grep -i 'NEEDED.*mimalloc'; }
check "libringhttp.so does not link libmimalloc (no malloc override)" no_mimalloc_needed

# Programs to build: collide, the examples, the README's C blocks; one folder each.
programs=$work/programs
mkdir -p "$programs/collide"
cp "$source_dir/tests/embed/collide.c" "$programs/collide/"
for ex in "$source_dir"/examples/*; do
    name=example_$(basename "$ex" .c)
    if [ -d "$ex" ]; then
        mkdir -p "$programs/$name" && cp -r "$ex"/. "$programs/$name/"
    elif [ "${ex%.c}" != "$ex" ]; then
        mkdir -p "$programs/$name" && cp "$ex" "$programs/$name/"
    fi
done
python3 - "$source_dir/README.md" "$programs" <<'EOF'
import os, re, sys
blocks = re.findall(r"^```c\n(.*?)^```", open(sys.argv[1]).read(), re.S | re.M)
for i, code in enumerate(blocks, 1):
    os.makedirs(f"{sys.argv[2]}/readme_{i}")
    open(f"{sys.argv[2]}/readme_{i}/snippet.c", "w").write(code)
EOF

build_pkgconfig() { # build_pkgconfig DIR OUT [--static]
    local dir=$1 out=$2 deps=""
    [ -f "$dir/pkgs" ] && deps=$(cat "$dir/pkgs")
    if [ "${3:-}" = --static ]; then
        cc "${cc_flags[@]}" -o "$out" "$dir"/*.c $(pkg-config --cflags ringhttp $deps) \
            -Wl,-Bstatic $(pkg-config --static --libs ringhttp) -Wl,-Bdynamic \
            ${deps:+$(pkg-config --libs $deps)}
    else
        cc "${cc_flags[@]}" -o "$out" "$dir"/*.c $(pkg-config --cflags --libs ringhttp $deps)
    fi
}

run_briefly() { # run_briefly BINARY DIR: in DIR, --self-test if it has one, else 1 s alive
    local bin=$1
    if grep -q -- '--self-test' "$2"/*.c; then
        (cd "$2" && timeout 20 "$bin" --self-test)
    else
        (cd "$2" && timeout 1 "$bin")
        local rc=$?
        [ $rc -eq 124 ] || [ $rc -eq 0 ]
    fi
}

collide_run() { "$1" | tee /dev/stderr | grep -q 'collide: ok'; }
links_to() { # links_to BINARY static|shared
    if [ "$2" = shared ]; then readelf -d "$1" | grep -q 'NEEDED.*libringhttp\.so'
    else ! readelf -d "$1" | grep -q 'NEEDED.*libringhttp'; fi
}

bins=$work/bin
mkdir -p "$bins"
for dir in "$programs"/*; do
    name=$(basename "$dir")
    case $name in
    readme_*)
        check "pkg-config: README block ${name#readme_} compiles" \
            build_pkgconfig "$dir" "$bins/$name" ;;
    collide)
        check "pkg-config --libs: collide links" build_pkgconfig "$dir" "$bins/collide"
        check "pkg-config --libs: collide uses libringhttp.so" links_to "$bins/collide" shared
        check "pkg-config --libs: collide runs, malloc is libc's" collide_run "$bins/collide"
        check "pkg-config --static: collide links" \
            build_pkgconfig "$dir" "$bins/collide_static" --static
        check "pkg-config --static: collide uses libringhttp.a" links_to "$bins/collide_static" static
        check "pkg-config --static: collide runs, malloc is libc's" collide_run "$bins/collide_static" ;;
    *)
        check "pkg-config: $name builds" build_pkgconfig "$dir" "$bins/$name"
        check "pkg-config: $name runs" run_briefly "$bins/$name" "$dir" ;;
    esac
done

# The same through CMake's package.
cmake_build=$work/consumer
cmake_consumer() {
    cmake -S "$source_dir/tests/embed/consumer" -B "$cmake_build" -DCMAKE_PREFIX_PATH="$prefix" \
        -DRH_PROGRAMS_DIR="$programs" -DRH_STATIC_PROGRAMS=collide -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$cmake_build" -j2
}
check "find_package(ringhttp CONFIG): every program builds" cmake_consumer
check "ringhttp::ringhttp: collide uses libringhttp.so" links_to "$cmake_build/collide" shared
check "ringhttp::ringhttp: collide runs, malloc is libc's" collide_run "$cmake_build/collide"
check "ringhttp::ringhttp_static: collide uses libringhttp.a" links_to "$cmake_build/collide_static" static
check "ringhttp::ringhttp_static: collide runs, malloc is libc's" \
    collide_run "$cmake_build/collide_static"
for dir in "$programs"/example_*; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    check "ringhttp::ringhttp: $name runs" run_briefly "$cmake_build/$name" "$dir"
done

# `make install` configures with tests and benchmarks off: none of their targets exists.
no_test_targets() {
    cmake -S "$source_dir" -B "$work/notests" -DRH_TESTS=OFF -DRH_BENCH=OFF >/dev/null || return 1
    local targets
    targets=$(cmake --build "$work/notests" --target help)
    echo "$targets" | grep -q ringhttp_bin || { echo "no ringhttp_bin target"; return 1; }
    ! echo "$targets" | grep -E 'test_|parse_throughput|pool_roundtrip'
}
check "-DRH_TESTS=OFF -DRH_BENCH=OFF: no test or benchmark target" no_test_targets

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
