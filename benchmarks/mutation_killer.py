"""For each mutant named, the first test that fails with it active; run by benchmarks/mutation.py
(`recheck`) in a mutmut scratch copy (cwd: its mutants/ folder, PYTHONPATH=src).

    python mutation_killer.py --timeout 300 --tests tests/a.py tests/b.py -- KEY [KEY ...]

Starting an interpreter and importing torch, Lightning and timm costs more than most modules' tests
take to run, so this process imports them once and forks one child per mutant (as mutmut's own
forkserver does); each child switches its mutant on and runs the tests with `pytest.main`, stopping
at the first failure. Code that runs on import therefore runs unmutated, as in mutmut's run: a
mutant of it is killed by the test that later calls the function. Prints one JSON line per mutant:
{"key": ..., "killed_by": [first failing test id] or [] or ["timeout: ..."]}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

PRELOAD = ("numpy", "torch", "lightning", "timm", "pytest", "velora")


def child(key: str, tests: list[str], write_fd: int) -> None:
    """In the forked child: run the tests with `key` active; send the first failing test id."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.environ["MUTANT_UNDER_TEST"] = key
    import pytest

    failed: list[str] = []

    class FirstFailure:
        def pytest_runtest_logreport(self, report):  # setup, call or teardown
            if report.failed and not failed:
                failed.append(report.nodeid)

        def pytest_collectreport(self, report):  # a test file that no longer imports
            if report.failed and not failed:
                failed.append(f"collecting {report.nodeid}")

    args = ["-m", "not slow", "-p", "no:cacheprovider", "-q", "--tb=no", "-x", *tests]
    pytest.main(args, plugins=[FirstFailure()])
    os.write(write_fd, json.dumps(failed).encode())
    os.close(write_fd)
    os._exit(0)


def first_failure(key: str, tests: list[str], timeout: float) -> list[str]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            child(key, tests, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # a loop the mutant made endless: mutmut saw it time out too
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return [f"timeout: the tests of {', '.join(tests)} do not finish within {timeout:.0f} s"]
        time.sleep(0.05)
    with os.fdopen(read_fd, "rb") as pipe:
        sent = pipe.read()
    if not sent:  # the child died before reporting (a crash the mutant caused counts as a kill)
        return [f"the test process ended with status {status} before its tests finished"]
    return json.loads(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--tests", nargs="+", required=True)
    parser.add_argument("keys", nargs="+")
    args = parser.parse_args()
    for module in PRELOAD:
        __import__(module)
    for key in args.keys:
        print(json.dumps({"key": key, "killed_by": first_failure(key, args.tests, args.timeout)}), flush=True)


if __name__ == "__main__":
    main()
