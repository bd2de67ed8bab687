#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Usage: promtool_check.sh PROGRAM ARGS...
# Runs PROGRAM, feeds its Prometheus text to `promtool check metrics`
# (Debian's prometheus package), which parses it as Prometheus does and
# lints names, units and HELP. Exit 77 (skip) without promtool.
command -v promtool >/dev/null 2>&1 || { echo "promtool is not installed"; exit 77; }
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
"$@" >"$out" || { echo "$1 failed"; exit 1; }
report=$(promtool check metrics <"$out" 2>&1)
status=$?
# promtool exits 0 even for some lint findings; any finding fails the test.
if [ $status -ne 0 ] || [ -n "$report" ]; then
	echo "promtool check metrics: exit $status"
	echo "$report"
	exit 1
fi
echo "promtool check metrics ok: $(grep -c '^kvbm_' "$out") samples"
