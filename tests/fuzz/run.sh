#!/bin/sh
# run.sh BINARY DICT CORPUS - runs one libFuzzer target for a short time
# (FUZZ_SECONDS, 20 by default) from a scratch copy of its seed corpus, with
# its dictionary, so that the corpus in the tree is never written to. A
# crash, leak, timeout or sanitizer report fails the run; the input that
# caused it is kept as fuzz-artifacts/<target>-crash-... in the build
# directory. Prints libFuzzer's final figures and "N passed, N failed".
set -u
bin=$1 dict=$2 corpus=$3
secs=${FUZZ_SECONDS:-20}
name=$(basename "$bin")
art=${SIFT_BUILDDIR:-.}/fuzz-artifacts
mkdir -p "$art" || exit 2
work=$(mktemp -d "${TMPDIR:-/tmp}/sift-$name-XXXXXX") || exit 2
trap 'rm -rf "$work" "$work.log"' EXIT INT TERM
cp -R "$corpus/." "$work/" || exit 2
seeds=$(ls "$work" | wc -l)
"$bin" -dict="$dict" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$art/$name-" "$work" > "$work.log" 2>&1
rc=$?
grep -E '^#[0-9]+.*DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$work.log"
echo "$name: $seeds seeds, corpus now $(ls "$work" | wc -l) inputs, exit $rc"
if [ $rc = 0 ]; then
	rm -f "$work.log"
	echo "1 passed, 0 failed"
	exit 0
fi
tail -60 "$work.log"
rm -f "$work.log"
echo "0 passed, 1 failed"
exit 1
