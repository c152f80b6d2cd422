#!/usr/bin/env bash
# The times the README quotes: its two commands in a fresh clone of this checkout's committed HEAD, in an
# empty temporary folder (no shared/ beside it), each step timed; then the fast subset. Run it with
# nothing else on the machine, and copy the figures into benchmarks/results/ci_timing.json
# (then `python benchmarks/figures.py` rewrites the README's sentence).
#
#     bash benchmarks/ci_timing.sh
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/velora" && cd "$work/velora" || exit 1
echo "commit $(git log -1 --format=%h)"
now() { date +%s.%N; }
t0=$(now); python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e . >/dev/null 2>&1; t1=$(now)
.venv/bin/velora demo >demo.log 2>&1; echo "velora demo exited $?"; t2=$(now)
.venv/bin/pip install -q -c constraints.txt -e ".[test]" >/dev/null 2>&1; t3=$(now)
.venv/bin/python -m pytest -q >tests.log 2>&1; echo "tests exited $?"; t4=$(now)
.venv/bin/python -m pytest -q -m "not slow" >fast.log 2>&1; echo "fast tests exited $?"; t5=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
t = [float(x) for x in sys.argv[1:]]
print(f"install {t[1] - t[0]:.0f} s, demo {t[2] - t[1]:.0f} s, test extras {t[3] - t[2]:.0f} s, "
      f"tests {t[4] - t[3]:.0f} s, fast subset {t[5] - t[4]:.0f} s")
PY
tail -1 tests.log
tail -1 fast.log
grep -A4 "^model " demo.log
