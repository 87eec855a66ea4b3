#!/usr/bin/env bash
# Instructions per thread of `mxc compile` (callgrind), for comparisons that
# the VM's timing noise cannot blur: the flat model (bench/gen-flat.awk) and
# the ring (bench/ring.mx) at N nodes. Threads: mx-parse (the parser, the
# flat model's critical path), mx-compile (evaluation, check, lower and half
# of the write), mx-lex (the second half of the lexing), the rest.
# Needs valgrind. Usage: bench/instructions.sh [N] [MXC]  (default 10000,
# the release build); a 10k model takes about 10 s under callgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
mxc=${2:-}
if [ -z "$mxc" ]; then
    cargo build --release -q -p mxc
    mxc=${CARGO_TARGET_DIR:-target}/release/mxc
fi
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v N="$n" -f bench/gen-flat.awk > "$tmp/flat.mx"

count() { # label model args...
    local label=$1
    shift
    valgrind --tool=callgrind --separate-threads=yes --compress-strings=no \
        --callgrind-out-file="$tmp/cg.out" "$mxc" compile "$@" -o "$tmp/out.json" \
        2>"$tmp/vg.err" || { cat "$tmp/vg.err" >&2; exit 1; }
    for f in "$tmp"/cg.out-*; do
        local total name
        total=$(sed -n 's/^summary: *//p' "$f")
        # callgrind numbers threads: each is named by a function only it runs.
        if grep -q "^fn=mx_compiler::ahead::parse$" "$f"; then name=mx-parse
        elif grep -q "^fn=mx_compiler::compile_here$" "$f"; then name=mx-compile
        elif grep -q "^fn=(below main)$" "$f"; then name=main
        elif grep -q "^fn=mx_compiler::lexer::skip_string$" "$f"; then name=mx-lex
        else name="other (${f##*-})"; fi
        printf '| %s | %s | %s | %s |\n' "$label" "$n" "$name" "$total"
        rm -f "$f"
    done
}

echo "| model | N | thread | instructions |"
echo "|---|---:|---|---:|"
count flat "$tmp/flat.mx"
count ring bench/ring.mx --set "N=$n"
