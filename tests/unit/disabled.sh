#!/bin/sh
# make check when configured with --disable-unit-tests: the Criterion unit tests were not built.
# Exit 77 so the summary shows them as SKIP instead of leaving them out without a word.
echo "unit tests disabled by configure --disable-unit-tests: apt-get install libcriterion-dev" \
	"and configure without it to run them" >&2
exit 77
