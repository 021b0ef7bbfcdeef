#!/bin/bash
# Run every cmocka unit test program given as an argument, then the pytest
# integration suite, and finish with one line of totals:
#   tests: N passed, N failed, N skipped
# Exit status 0 only when nothing failed and something ran.
set -u
PYTHON=${PYTHON:-/usr/bin/python3}
passed=0 failed=0 skipped=0 status=0

for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -E '^\[ *(PASSED|FAILED|  ERROR|SKIPPED) *\]|^\[==' || true
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' | tail -n1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" -ne 0 ]; then
		status=1
		[ -z "$f" ] && failed=$((failed + 1)) && echo "$t: exited with status $rc"
		printf '%s\n' "$out" | tail -n 40
	fi
done

log=$(mktemp)
"$PYTHON" -m pytest -q -rfEs tests/integration 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error|errors|deselected)[^=]* in [0-9.]+s' "$log" | tail -n1)
rm -f "$log"
n() { printf '%s\n' "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
passed=$((passed + $(n passed)))
failed=$((failed + $(n failed) + $(n error)))
skipped=$((skipped + $(n skipped)))
if [ "$rc" -ne 0 ]; then
	status=1
	[ "$rc" -eq 5 ] && echo "pytest collected no tests"
fi
[ "$passed" -eq 0 ] && status=1

echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
