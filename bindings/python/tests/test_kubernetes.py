"""The same Python pipeline on the kubernetes flavor: one Pod per step, on the
Kubernetes API simulator whose Pods run in a private Podman service."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from support import HomeTestCase

from entry_fixture import entry

CI = os.environ.get("CI") == "true"
SRC = os.environ.get("ZORCH_TEST_SRCDIR", "")
BUILD = os.environ.get("ZORCH_TEST_BUILDDIR", "")
ZORCH = os.environ.get("ZORCH_COMMAND", "")
SERVICE = os.path.join(SRC, "tests", "podman", "podman-service.sh")
SIM_PATH = os.path.join(SRC, "tests", "sim")  # the simulator is the package k8s in it
IMAGE = "zorch-py-k8s-test"


def _plain_env(**extra):
    """Podman, the simulator and the image build run without the sanitizer
    runtimes that the ASan build's tests preload into Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    env.update(extra)
    return env


class KubernetesTest(HomeTestCase):
    @classmethod
    def setUpClass(cls):
        if not SRC or not os.path.isdir(os.path.join(SIM_PATH, "k8s")):
            raise unittest.SkipTest("run by meson test (ZORCH_TEST_SRCDIR)")
        missing = [t for t in ("podman", "runc", "openssl", "curl") if not shutil.which(t)]
        if missing:
            if CI:
                raise RuntimeError(f"{', '.join(missing)} missing (scripts/setup installs them)")
            raise unittest.SkipTest(f"{', '.join(missing)} missing")
        cls.dir = tempfile.mkdtemp(prefix="zorch-py-k8s-")
        cls.sim = None
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()  # not called when setUpClass fails
            raise

    @classmethod
    def _start(cls):
        r = subprocess.run([SERVICE, "start", os.path.join(cls.dir, "podman")],
                           capture_output=True, text=True, timeout=120, env=_plain_env())
        if r.returncode != 0:
            raise RuntimeError(f"the podman service did not start: {r.stderr}")
        docker_host = r.stdout.strip().split("=", 1)[1]
        sim_dir = os.path.join(cls.dir, "sim")
        cls.sim_log = open(os.path.join(cls.dir, "sim.log"), "w")
        cls.sim = subprocess.Popen(["/usr/bin/python3", "-m", "k8s", "--dir", sim_dir,
                                    "--podman-socket", docker_host[len("unix://"):]],
                                   stdout=cls.sim_log, stderr=subprocess.STDOUT,
                                   env=_plain_env(PYTHONPATH=SIM_PATH))
        for _ in range(300):
            if os.path.exists(os.path.join(sim_dir, "ready")) or cls.sim.poll() is not None:
                break
            time.sleep(0.1)
        if not os.path.exists(os.path.join(sim_dir, "ready")):
            with open(os.path.join(cls.dir, "sim.log")) as f:
                raise RuntimeError(f"the Kubernetes simulator did not start: {f.read()}")
        cls.kubeconfig = os.path.join(sim_dir, "kubeconfig")
        # the Pods' image: what `python3 -m zorch` needs (entry.image_paths():
        # the interpreter, its standard library, libzorch, this package, the
        # tests' modules) and the sanitizer runtimes the ASan build preloads
        # (zorch image build); no hostPath volumes of /usr or the source tree
        add = entry.image_paths() + [
            p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
        argv = [ZORCH, "image", "build", IMAGE, "--program", os.path.realpath(sys.executable)]
        for p in add:
            argv += ["--add", p]
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=300, env=_plain_env(DOCKER_HOST=docker_host))
        if r.returncode != 0:
            raise RuntimeError(f"zorch image build failed: {r.stdout}{r.stderr}")

    @classmethod
    def tearDownClass(cls):
        if cls.sim is not None:
            cls.sim.terminate()
            try:
                cls.sim.wait(30)
            except subprocess.TimeoutExpired:
                cls.sim.kill()
                cls.sim.wait()
            cls.sim_log.close()
        subprocess.run([SERVICE, "stop", os.path.join(cls.dir, "podman")], capture_output=True,
                       timeout=120, env=_plain_env())
        shutil.rmtree(cls.dir, ignore_errors=True)

    def register(self, **extra_env):
        env = {"ZORCH_LIBRARY": os.environ["ZORCH_LIBRARY"],
               "PYTHONPATH": os.environ["PYTHONPATH"], "PYTHONDONTWRITEBYTECODE": "1",
               "ZORCH_PLUGIN_SYSTEM_PATH": ""}
        for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):  # the sanitized build
            if os.environ.get(k):
                env[k] = os.environ[k]
        env.update(extra_env)
        self.client.register_component(
            "orchestrator", "k8s", "kubernetes",
            {"kubeconfig": self.kubeconfig, "image": f"{IMAGE}:latest", "mode": "client",
             "pending_timeout": 60,
             "pod_settings": {"env": env}},
            replace=True)
        self.client.register_stack("k8s", "k8s", replace=True)

    def test_a_python_pipeline_runs_each_step_in_a_pod(self):
        self.register()
        run = entry.with_options(stack="k8s")(bias=5)
        self.assertEqual(run.stack, "k8s")
        self.assertEqual(self.statuses(run), {"make": "completed", "total": "completed",
                                              "broken": "completed"})
        self.assertEqual(run.load("total", "sum"), 11)
        self.assertIn("summing in process 1\n", run.steps["total"].logs)  # a container's pid 1
        self.assertEqual(run.metadata("orchestrator"), "kubernetes")
        again = entry.with_options(stack="k8s")(bias=5)
        self.assertEqual(set(self.statuses(again).values()), {"cached"})

    def test_an_exception_in_a_pod_fails_the_step_with_its_traceback(self):
        self.register(ZT_BREAK="1")
        run = entry.with_options(stack="k8s", raise_on_failure=False, no_cache=True)(bias=2)
        self.assert_broken_on_purpose(run)


if __name__ == "__main__":
    unittest.main()
