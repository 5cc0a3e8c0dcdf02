"""Failures: a Python exception fails its step, with the traceback in the step log."""
import threading
import unittest

from support import HomeTestCase

import zorch
from zorch import Retry, get_step_context, pipeline, step


class Boom(Exception):
    pass


@step
def ok_source() -> int:
    return 41


@step
def explode(x: int) -> int:
    print("about to fail with", x)
    raise Boom(f"cannot handle {x}")


@step
def after_explode(y: int) -> int:
    return y


@step
def independent() -> str:
    return "still ran"


@pipeline
def failing():
    after_explode(explode(ok_source()))
    independent()


attempts = []


@step(retry=Retry(max_retries=2, delay=0))
def flaky() -> int:
    attempts.append(get_step_context().attempt)
    if get_step_context().attempt < 2:
        raise RuntimeError("first attempt fails")
    return len(attempts)


@pipeline
def retried():
    flaky()


class FailureTest(HomeTestCase):
    def test_an_exception_fails_the_step_and_its_traceback_is_in_the_log(self):
        with self.assertRaises(zorch.StepFailed) as cm:
            failing()
        err = cm.exception
        self.assertEqual(err.code, -12)
        self.assertIn("explode", err.message)  # zorch's message names the failed step
        run = err.run
        self.assertIsInstance(run, zorch.Run)
        self.assertEqual(run.status, "failed")
        self.assertEqual(self.statuses(run), {"ok_source": "completed", "explode": "failed",
                                              "after_explode": "skipped",
                                              "independent": "completed"})
        step_ = run.steps["explode"]
        self.assertIn("Boom: cannot handle 41", step_.error)
        log = step_.logs
        self.assertIn("Traceback (most recent call last):", log)
        self.assertIn('in explode', log)
        self.assertIn('raise Boom(f"cannot handle {x}")', log)
        self.assertIn("test_failures.Boom: cannot handle 41", log)
        self.assertIn("about to fail with 41", log)  # print() goes to the step log
        self.assertEqual(run.load("independent"), "still ran")

    def test_raise_on_failure_false_returns_the_failed_run(self):
        run = failing.with_options(raise_on_failure=False)()
        self.assertEqual(run.status, "failed")
        self.assertEqual(run.steps["explode"].status, "failed")

    def test_a_failed_step_runs_again_and_succeeds_with_retries(self):
        attempts.clear()
        run = retried()
        self.assertEqual(run.steps["flaky"].status, "completed")
        self.assertEqual(run.steps["flaky"].attempts, 2)
        self.assertEqual(attempts, [1, 2])
        self.assertIn("first attempt fails", run.steps["flaky"].logs)

    def test_system_exit_and_wrong_output_counts_fail_only_the_step(self):
        @step
        def quits() -> int:
            raise SystemExit(3)

        @step
        def two() -> tuple[int, int]:
            return 1

        @pipeline
        def bad():
            quits()
            two()

        run = bad.with_options(raise_on_failure=False)()
        self.assertEqual(self.statuses(run), {"quits": "failed", "two": "failed"})
        self.assertIn("SystemExit: 3", run.steps["quits"].error)
        self.assertIn("declares 2 outputs (output_0, output_1) but returned a int",
                      run.steps["two"].error)
        self.assertTrue(threading.main_thread().is_alive())

    def test_libzorch_errors_carry_zorchs_message(self):
        with self.assertRaises(zorch.NotFoundError) as cm:
            self.client.get_run("no-such-run")
        self.assertIn("no-such-run", str(cm.exception))
        self.assertEqual(cm.exception.code, -2)
        with self.assertRaises(zorch.NotFoundError) as cm:
            self.client.activate_stack("nowhere")
        self.assertIn("nowhere", str(cm.exception))
        with self.assertRaises(zorch.InvalidError) as cm:
            self.client.register_component("orchestrator", "o", "local", {"no_such_key": 1})
        self.assertIn("no_such_key", cm.exception.message)
        with self.assertRaises(zorch.NotFoundError) as cm:
            failing.with_options(stack="absent")()
        self.assertIn("absent", str(cm.exception))

    def test_ctrl_c_while_waiting_cancels_the_run_and_raises(self):
        import os
        import signal
        import subprocess
        import sys
        import time
        from support import python_env
        marker = os.path.join(self.home, "started")
        script = os.path.join(self.home, "interrupted.py")
        with open(script, "w") as f:
            f.write(f"""
import time
from zorch import get_step_context, pipeline, step

@step
def long_step() -> int:
    open({marker!r}, "w").close()
    ctx = get_step_context()
    for _ in range(3000):
        if ctx.cancelled:
            return 0
        time.sleep(0.01)
    return 1

@pipeline
def interrupted():
    long_step()

interrupted()
""")
        proc = subprocess.Popen([sys.executable, script], env=python_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(300):
                if os.path.exists(marker) or proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.assertTrue(os.path.exists(marker), "the step never started")
            t = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertLess(time.monotonic() - t, 10)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("KeyboardInterrupt", err)
        runs = self.client.runs("interrupted")
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0].status, "stopped")

    def test_a_cancelled_step_context_and_timeouts(self):
        @step(timeout=0.3)
        def slow() -> int:
            import time
            ctx = get_step_context()
            for _ in range(200):
                if ctx.cancelled:
                    return -1
                time.sleep(0.01)
            return 1

        @pipeline
        def timed():
            slow()

        run = timed.with_options(raise_on_failure=False)()
        self.assertEqual(run.steps["slow"].status, "failed")
        self.assertIn("time", run.steps["slow"].error.lower())


if __name__ == "__main__":
    unittest.main()
