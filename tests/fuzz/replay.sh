#!/usr/bin/env bash
# make check: replay every fuzz corpus through its target (no libFuzzer needed).
set -u
srcdir=${srcdir:-.}
passed=0
failed=0
for target in wire policy; do
	files=("$srcdir"/tests/fuzz/corpus/$target/*)
	if out=$(./tests/fuzz/replay_$target "${files[@]}" 2>&1); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
	echo "fuzz_$target: $out"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
