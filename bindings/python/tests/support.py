"""Shared set-up of the binding's tests: a fresh zorch home per test case."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import zorch  # noqa: E402


class HomeTestCase(unittest.TestCase):
    """Each test gets its own ZORCH_HOME and default client."""

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="zorch-py-test-")
        self._old_home = os.environ.get("ZORCH_HOME")
        os.environ["ZORCH_HOME"] = self.home
        self.client = zorch.Client(self.home)
        zorch.set_client(self.client)

    def tearDown(self):
        zorch.set_client(None)
        self.client = None
        if self._old_home is None:
            os.environ.pop("ZORCH_HOME", None)
        else:
            os.environ["ZORCH_HOME"] = self._old_home
        import gc
        gc.collect()
        shutil.rmtree(self.home, ignore_errors=True)

    def statuses(self, run):
        return {name: s.status for name, s in run.steps.items()}

    def assert_broken_on_purpose(self, run):
        """entry_fixture's `broken` step, run with ZT_BREAK=1 in another process: it failed
        with its traceback in its log, and its sibling `total` completed."""
        self.assertEqual(run.steps["broken"].status, "failed")
        self.assertEqual(run.steps["total"].status, "completed")
        log = run.steps["broken"].logs
        self.assertIn("Traceback (most recent call last):", log)
        self.assertIn("ValueError: broken on purpose in the step process", log)


def python_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_ROOT, HERE] +
                                        [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def run_python(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), env=kw.pop("env", python_env()), **kw)
