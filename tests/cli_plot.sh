#!/usr/bin/env bash
# ember plot with gnuplot present: a valid PNG at -o, and at the default name beside
# the input, with stdout holding only the path written. Exits 77 (ctest: skipped)
# when gnuplot is not installed. Usage: cli_plot.sh EMBER_BINARY METRICS.jsonl
set -euo pipefail
ember=$1 metrics=$2
command -v gnuplot >/dev/null || { echo "gnuplot not on PATH: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

is_png() { # the 8-byte PNG signature: 89 50 4E 47 0D 0A 1A 0A
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
        { echo "FAIL: $1 is not a PNG"; exit 1; }
}

# Every panel has data; -o and --title.
out=$("$ember" plot "$metrics" -o "$tmp/all.png" --title "run 'one' (test_1)")
[ "$out" = "$tmp/all.png" ] || { echo "FAIL: stdout '$out', expected the path"; exit 1; }
is_png "$tmp/all.png"

# Default output beside the input; no AUC and no hit rate ("no data" panels), a blank line.
printf '{"step":1,"loss":0.69,"samples_per_s":1000}\n\n{"step":2,"loss":0.68,"samples_per_s":1100}\n' \
    >"$tmp/run.jsonl"
out=$("$ember" plot "$tmp/run.jsonl")
[ "$out" = "$tmp/run.png" ] || { echo "FAIL: stdout '$out', expected $tmp/run.png"; exit 1; }
is_png "$tmp/run.png"
[ -z "$(find "$tmp" -name '*.png.*')" ] || { echo "FAIL: temporary files left behind"; exit 1; }
echo "ember plot: PNG files written and checked"
