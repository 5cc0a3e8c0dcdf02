#!/usr/bin/python3
"""Run one test module of the Python binding and print a Check-style summary
line ("Checks: N, Failures: F, Errors: E") that scripts/test counts.

Under CI (CI=true) a skipped test counts as a failure: whatever a test
needs must be there."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

name = sys.argv[1]
suite = unittest.defaultTestLoader.loadTestsFromName(name)
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
ci = os.environ.get("CI") == "true"
failures = len(result.failures) + len(result.unexpectedSuccesses)
errors = len(result.errors)
if ci:
    errors += len(result.skipped)
checks = result.testsRun - (0 if ci else len(result.skipped))
print(f"100%: Checks: {checks}, Failures: {failures}, Errors: {errors}")
sys.stdout.flush()
sys.exit(0 if failures == 0 and errors == 0 and result.testsRun > 0 else 1)
