"""Installing the package offline: pip from a source copy, and meson install."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from support import PKG_ROOT

CI = os.environ.get("CI") == "true"

SMOKE = r'''
import sys, tempfile, zorch
from zorch import step, pipeline
print(zorch.__file__)

@step
def hi(who: str) -> str:
    return "hi " + who

@pipeline
def smoke(who: str = "there"):
    hi(who)

zorch.set_client(zorch.Client(tempfile.mkdtemp()))
print(smoke(who="installed").load("hi"))
'''


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZORCH_LIBRARY")}
    env.update(extra)
    return env


class InstallTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="zorch-py-install-")
        self.lib = os.environ["ZORCH_LIBRARY"]

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def smoke(self, site, **env):
        r = subprocess.run([sys.executable, "-c", SMOKE], capture_output=True, text=True,
                           timeout=120, cwd=self.tmp, env=clean_env(PYTHONPATH=site, **env))
        self.assertEqual(r.returncode, 0, r.stderr)
        where, out = r.stdout.strip().splitlines()[-2:]
        self.assertTrue(where.startswith(site), f"imported {where}, not from {site}")
        self.assertEqual(out, "hi installed")

    def test_pip_installs_the_package_without_network(self):
        r = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
        if r.returncode != 0:
            if CI:
                self.fail("pip is missing: install python3-pip (scripts/setup)")
            self.skipTest("pip is not installed (python3-pip)")
        src = os.path.join(self.tmp, "src")
        shutil.copytree(PKG_ROOT, src, ignore=shutil.ignore_patterns(
            "__pycache__", "tests", "build", "*.egg-info"))
        site = os.path.join(self.tmp, "site")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index",
                            "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check",
                            "--target", site, src], capture_output=True, text=True, timeout=300,
                           env=clean_env(PIP_NO_INDEX="1"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(os.path.isfile(os.path.join(site, "zorch", "__main__.py")))
        self.assertFalse(glob.glob(os.path.join(site, "zorch", "_config.py")))
        self.smoke(site, ZORCH_LIBRARY=self.lib)
        # the usual loader path finds libzorch.so.1 without ZORCH_LIBRARY
        self.smoke(site, LD_LIBRARY_PATH=os.path.dirname(self.lib))
        r = subprocess.run([sys.executable, "-m", "zorch", "--help"], capture_output=True,
                           text=True, env=clean_env(PYTHONPATH=site))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--zorch-target", r.stdout)

    def test_a_missing_library_is_reported_with_the_fix(self):
        r = subprocess.run([sys.executable, "-c", "import zorch; zorch.Client()"],
                           capture_output=True, text=True,
                           env=clean_env(PYTHONPATH=PKG_ROOT,
                                         ZORCH_LIBRARY=os.path.join(self.tmp, "nope.so")))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFound", r.stderr)
        self.assertIn("ZORCH_LIBRARY", r.stderr)

    def test_meson_installs_the_package_into_the_python_site_directory(self):
        build = os.environ.get("ZORCH_TEST_BUILDDIR")
        site_dir = os.environ.get("ZORCH_TEST_PY_INSTALL_DIR")
        meson = shutil.which("meson")
        if not (build and site_dir and meson):
            self.fail("run by meson test: ZORCH_TEST_BUILDDIR, ZORCH_TEST_PY_INSTALL_DIR and "
                      "meson are needed")
        dest = os.path.join(self.tmp, "dest")
        r = subprocess.run([meson, "install", "-C", build, "--no-rebuild", "--quiet",
                            "--destdir", dest, "--tags", "python-runtime"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        site = dest + site_dir
        pkg = os.path.join(site, "zorch")
        for name in ("__init__.py", "__main__.py", "_lib.py", "client.py", "errors.py",
                     "materializers.py", "pipelines.py", "_config.py"):
            self.assertTrue(os.path.isfile(os.path.join(pkg, name)), name)
        ns = {}
        with open(os.path.join(pkg, "_config.py")) as f:
            exec(f.read(), ns)
        self.assertEqual(ns["LIBDIR"], os.environ["ZORCH_TEST_LIBDIR"])
        # the installed copy works (libzorch from this build)
        self.smoke(site, ZORCH_LIBRARY=self.lib)


if __name__ == "__main__":
    unittest.main()
