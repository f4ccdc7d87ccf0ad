#!/usr/bin/env bash
# Installs the library, header and pkg-config file into a temporary prefix, then builds
# examples/hello.c out of tree against them and runs its self-test.
set -euo pipefail
build_dir=$1
source_dir=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
test -f "$prefix/include/ringhttp.h"
cc -std=c11 -Wall -Wextra -Werror -o "$prefix/hello" "$source_dir/examples/hello.c" \
    $(pkg-config --cflags --libs --static ringhttp)
out=$("$prefix/hello" --self-test)
echo "$out" | grep -q "hello, embedder"
echo "$out" | grep -qi "X-Example: hello.c"
echo "1 passed, 0 failed"
