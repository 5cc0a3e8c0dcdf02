"""The same Python pipeline on the local_docker flavor: every step in its own
container (a private Podman API service), through `python3 -m zorch`, in the
image local_docker builds from the host (no mounts of /usr or the source)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
        # No mounts: the image local_docker builds from the host holds what
        # `python3 -m zorch` needs (Pipeline.image_paths(): the interpreter,
        # its standard library, libzorch, this package, the tests' modules).
        # The environment says where this uninstalled tree keeps them.
        env = {"ZORCH_LIBRARY": os.environ["ZORCH_LIBRARY"],
               "PYTHONPATH": os.environ["PYTHONPATH"], "PYTHONDONTWRITEBYTECODE": "1",
               "ZORCH_PLUGIN_SYSTEM_PATH": ""}
        image_add = []
        for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):  # the sanitized build
            if os.environ.get(k):
                env[k] = os.environ[k]
        # the sanitizer runtimes it preloads go into the image too
        image_add += [p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
        env.update(extra_env)
        self.client.register_component("orchestrator", "pod", "local_docker",
                                       {"docker_host": self.docker_host, "environment": env,
                                        "image_add": image_add}, replace=True)
        self.client.register_stack("pod", "pod", replace=True)

    def test_a_python_pipeline_runs_each_step_in_a_container(self):
        self.register()
        t0 = time.monotonic()
        run = entry.with_options(stack="pod")(bias=5)
        took = time.monotonic() - t0
        self.assertEqual(run.stack, "pod")
        self.assertEqual(self.statuses(run), {"make": "completed", "total": "completed",
                                              "broken": "completed"})
        self.assertEqual(run.load("total", "sum"), 11)
        self.assertEqual(run.load("make", "data"), [1, 2, 3])
        # the step process was a container's first process
        self.assertIn("summing in process 1\n", run.steps["total"].logs)
        self.assertEqual(run.metadata("orchestrator"), "local_docker")
        # ... in an image built from the host, with no mount of the host's files
        self.assertIn("image_add", json.dumps(self.client.describe_flavor("local_docker")))
        paths = entry.image_paths()
        self.assertIn(os.path.dirname(zorch.__file__), paths)
        # the pipeline's module, not its whole directory
        self.assertIn(os.path.abspath(sys.modules[entry.__module__].__file__), paths)
        self.assertNotIn(os.path.dirname(os.path.abspath(__file__)), paths)
        sizes = [i["Size"] for i in self._engine("/v1.41/images/json")
                 if any(t.startswith("localhost/zorch-entry:") for t in i.get("RepoTags") or [])]
        self.assertEqual(len(sizes), 1, "the image built from the host is in the engine")
        print(f"\nmeasured: first run (image build + 3 step containers) {took:.1f} s; "
              f"image {sizes[0] / 1e6:.1f} MB; {len(paths)} image_paths", file=sys.stderr)
        again = entry.with_options(stack="pod")(bias=5)
        self.assertEqual(set(self.statuses(again).values()), {"cached"})
        # the same pipeline and the same cache on the local flavor
        local = entry(bias=5)
        self.assertEqual(set(self.statuses(local).values()), {"cached"})

    def _engine(self, path):
        out = subprocess.run(["curl", "-sf", "--unix-socket", self.docker_host[len("unix://"):],
                              "http://d" + path], capture_output=True, text=True, timeout=30,
                             env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_an_exception_in_a_container_fails_the_step_with_its_traceback(self):
        self.register(ZT_BREAK="1")
        run = entry.with_options(stack="pod", raise_on_failure=False, no_cache=True)(bias=1)
        self.assert_broken_on_purpose(run)


if __name__ == "__main__":
    unittest.main()
