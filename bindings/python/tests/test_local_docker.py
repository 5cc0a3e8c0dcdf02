"""The same Python pipeline on the local_docker flavor: every step in its own
container (a private Podman API service), through `python3 -m zorch`."""
import os
import shutil
import subprocess
import tempfile
import unittest

from support import HomeTestCase

import zorch
from entry_fixture import entry

CI = os.environ.get("CI") == "true"
SRC = os.environ.get("ZORCH_TEST_SRCDIR", "")
BUILD = os.environ.get("ZORCH_TEST_BUILDDIR", "")
SERVICE = os.path.join(SRC, "tests", "podman", "podman-service.sh")


def _service(action, directory):
    # podman and curl run without the sanitizer runtimes the ASan build's
    # tests preload into Python
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    return subprocess.run([SERVICE, action, directory], capture_output=True, text=True,
                          timeout=120, env=env)


class LocalDockerTest(HomeTestCase):
    @classmethod
    def setUpClass(cls):
        if not SRC or not os.path.isfile(SERVICE):
            raise unittest.SkipTest("run by meson test (ZORCH_TEST_SRCDIR)")
        cls.pod = tempfile.mkdtemp(prefix="zorch-py-podman-")
        try:
            r = _service("start", cls.pod)
        except BaseException:
            cls.tearDownClass()  # not called when setUpClass fails
            raise
        if r.returncode != 0:
            cls.tearDownClass()
            if r.returncode == 77 and not CI:
                raise unittest.SkipTest("podman is not installed")
            raise RuntimeError(f"the podman service did not start: {r.stderr}")
        cls.docker_host = r.stdout.strip().split("=", 1)[1]

    @classmethod
    def tearDownClass(cls):
        _service("stop", cls.pod)
        shutil.rmtree(cls.pod, ignore_errors=True)

    def register(self, **extra_env):
        # The default image holds the interpreter binary and its libraries;
        # Python's library, this package and libzorch come in read-only mounts.
        mounts = ["/usr:/usr:ro", f"{SRC}:{SRC}:ro"]
        if not os.path.realpath(BUILD).startswith(os.path.realpath(SRC) + os.sep):
            mounts.append(f"{BUILD}:{BUILD}:ro")
        env = {"ZORCH_LIBRARY": os.environ["ZORCH_LIBRARY"],
               "PYTHONPATH": os.environ["PYTHONPATH"], "PYTHONDONTWRITEBYTECODE": "1",
               "ZORCH_PLUGIN_SYSTEM_PATH": ""}
        for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):  # the sanitized build
            if os.environ.get(k):
                env[k] = os.environ[k]
        env.update(extra_env)
        self.client.register_component("orchestrator", "pod", "local_docker",
                                       {"docker_host": self.docker_host, "mounts": mounts,
                                        "environment": env}, replace=True)
        self.client.register_stack("pod", "pod", replace=True)

    def test_a_python_pipeline_runs_each_step_in_a_container(self):
        self.register()
        run = entry.with_options(stack="pod")(bias=5)
        self.assertEqual(run.stack, "pod")
        self.assertEqual(self.statuses(run), {"make": "completed", "total": "completed",
                                              "broken": "completed"})
        self.assertEqual(run.load("total", "sum"), 11)
        self.assertEqual(run.load("make", "data"), [1, 2, 3])
        # the step process was a container's first process
        self.assertIn("summing in process 1\n", run.steps["total"].logs)
        self.assertEqual(run.metadata("orchestrator"), "local_docker")
        again = entry.with_options(stack="pod")(bias=5)
        self.assertEqual(set(self.statuses(again).values()), {"cached"})
        # the same pipeline and the same cache on the local flavor
        local = entry(bias=5)
        self.assertEqual(set(self.statuses(local).values()), {"cached"})

    def test_an_exception_in_a_container_fails_the_step_with_its_traceback(self):
        self.register(ZT_BREAK="1")
        run = entry.with_options(stack="pod", raise_on_failure=False, no_cache=True)(bias=1)
        self.assertEqual(run.steps["broken"].status, "failed")
        self.assertEqual(run.steps["total"].status, "completed")
        log = run.steps["broken"].logs
        self.assertIn("Traceback (most recent call last):", log)
        self.assertIn("ValueError: broken on purpose in the step process", log)


if __name__ == "__main__":
    unittest.main()
