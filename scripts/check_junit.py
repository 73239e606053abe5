#!/usr/bin/env python3
"""Fail CI when a test was skipped, or when browser/PostgreSQL tests did not run."""

import sys
import xml.etree.ElementTree as ET


def main(paths):
    problems = []
    ran = {"e2e": 0, "postgres": 0}
    for path in paths:
        cases = ET.parse(path).getroot().iter("testcase")  # noqa: S314 - our own pytest output
        for case in cases:
            name = f"{case.get('classname')}.{case.get('name')}"
            if case.find("skipped") is not None:
                problems.append(f"{path}: skipped {name}")
                continue
            if ".e2e." in name or name.startswith("tests.e2e"):
                ran["e2e"] += 1
            if "_pg" in name or "postgres" in name:
                ran["postgres"] += 1
    for kind, count in ran.items():
        if not count:
            problems.append(f"no {kind} test ran")
    for line in problems:
        print("CI check:", line)
    print(f"CI check: {ran['e2e']} browser test runs, {ran['postgres']} PostgreSQL-only test runs.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
