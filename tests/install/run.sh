#!/usr/bin/env bash
# Install ember into a scratch prefix, then build and run a consumer through
# find_package(ember) and through pkg-config. Usage: run.sh BUILD_DIR SOURCE_DIR
# EMBER_CONSUMER_FLAGS: compiler flags the consumers need too (a sanitized ember).
set -euo pipefail
build=$1 src=$2
flags_extra=${EMBER_CONSUMER_FLAGS:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS="$flags_extra" -DCMAKE_EXE_LINKER_FLAGS="$flags_extra" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/cmake/consumer"
"$tmp/cmake/consumer_static"
# examples/ as a user builds them: standalone, against the installed package.
cmake -S "$src/examples" -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_FLAGS="$flags_extra -Werror" -DCMAKE_EXE_LINKER_FLAGS="$flags_extra" >/dev/null
cmake --build "$tmp/examples" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/examples/recommender" --steps 20 --batch 64 | grep "^eval: .* AUC "
libdir=$(dirname "$(find "$tmp/prefix" -name ember.pc | head -n 1)")
flags=$(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs ember)
cc -std=c11 $flags_extra "$src/tests/install/consumer.c" $flags -Wl,-rpath,"$libdir/.." -o "$tmp/pc_consumer"
"$tmp/pc_consumer"
echo "install: find_package (shared, static), pkg-config and examples/ consumers ran"
