"""The remote step entrypoint: one step run again in a new `python3 -m zorch`
process against the store, with the command the deployment gives remote flavors."""
import json
import os
import subprocess
import sys
import textwrap
import unittest

from support import HERE, HomeTestCase, python_env

import zorch
from entry_fixture import entry


class EntrypointTest(HomeTestCase):
    def start_run(self):
        run = entry(bias=100)
        self.assertEqual(run.status, "completed")
        return run

    def step_command(self, run, step):
        dep = run.deployment
        return [a.replace("{step}", step) for a in dep["entrypoint"]["function"]]

    def run_step(self, argv, **env):
        return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env=python_env(**env))

    def test_the_deployment_names_python_m_zorch_as_the_function_entrypoint(self):
        run = self.start_run()
        cmd = run.deployment["entrypoint"]["function"]
        self.assertEqual(cmd[:5], [sys.executable, "-m", "zorch", "--zorch-target",
                                   "entry_fixture:entry"])
        self.assertEqual(cmd[5:7], ["--zorch-path", HERE])
        self.assertEqual(cmd[7:9], ["--zorch-step", "{step}"])
        self.assertEqual(entry.entrypoint_command(), cmd[:7])

    def test_a_step_runs_again_in_a_new_process(self):
        run = self.start_run()
        digest = run.steps["total"].outputs["sum"].digest
        r = self.run_step(self.step_command(run, "total"))
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        again = self.client.get_run(run.id)
        s = again.steps["total"]
        self.assertEqual(s.status, "completed")
        self.assertEqual(s.attempts, 2)  # the step record of the second process
        self.assertEqual(s.outputs["sum"].digest, digest)
        self.assertEqual(again.load("total", "sum"), 106)  # the run's param, not the default
        pids = [line for line in s.logs.splitlines() if line.startswith("summing in process")]
        self.assertEqual(len(pids), 2)
        self.assertNotEqual(pids[0], pids[1])
        self.assertNotIn(str(os.getpid()), pids[1])

    def test_a_python_exception_in_the_step_process_fails_it_with_the_traceback(self):
        run = self.start_run()
        r = self.run_step(self.step_command(run, "broken"), ZT_BREAK="1")
        self.assertEqual(r.returncode, 1, r.stderr)
        again = self.client.get_run(run.id)
        s = again.steps["broken"]
        self.assertEqual(s.status, "failed")
        self.assertIn("ValueError: broken on purpose", s.error)
        self.assertIn("Traceback (most recent call last):", s.logs)
        self.assertIn('raise ValueError("broken on purpose in the step process")', s.logs)

    def test_a_program_whose_pipeline_differs_is_refused(self):
        run = self.start_run()
        r = self.run_step(self.step_command(run, "total"), ZT_ALTER="1")
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("step 'total' differs", r.stderr)
        self.assertIn("settings", r.stderr)

    def test_usage_errors_exit_2_with_the_reason(self):
        run = self.start_run()
        cmd = self.step_command(run, "total")
        r = self.run_step([sys.executable, "-m", "zorch", "--zorch-target", "entry_fixture:entry"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--zorch-step is missing", r.stderr)
        bad = list(cmd)
        bad[4] = "entry_fixture:nothing"
        r = self.run_step(bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("has no 'nothing'", r.stderr)
        bad[4] = "entry_fixture:make"
        r = self.run_step(bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a @pipeline", r.stderr)
        bad = list(cmd)
        bad[bad.index("--zorch-step") + 1] = "nope"
        r = self.run_step(bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("has no step 'nope'", r.stderr)

    def test_a_pipeline_in_a_script_runs_its_steps_without_its_main_block(self):
        script = os.path.join(self.home, "app.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent('''
                import sys
                from zorch import pipeline, step

                @step
                def double(x: int) -> int:
                    return 2 * x

                @pipeline
                def app(x: int = 4):
                    double(x)

                if __name__ == "__main__":
                    run = app()
                    print(run.id)
            '''))
        r = subprocess.run([sys.executable, script], capture_output=True, text=True,
                           timeout=120, env=python_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        run_id = r.stdout.strip().splitlines()[-1]
        run = self.client.get_run(run_id)
        cmd = self.step_command(run, "double")
        self.assertEqual(cmd[3:5], ["--zorch-target", f"{script}:app"])
        r = self.run_step(cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.client.runs()), 1)  # the main block did not run again
        again = self.client.get_run(run_id)
        self.assertEqual(again.steps["double"].attempts, 2)
        self.assertEqual(again.load("double"), 8)


    def test_a_script_class_pickles_under_main_in_both_processes(self):
        script = os.path.join(self.home, "shapes.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent('''
                import zorch
                from zorch import pipeline, step

                class Box:
                    def __init__(self, w, h):
                        self.w, self.h = w, h

                zorch.allow_pickle(Box)

                @step
                def make_box() -> Box:
                    return Box(3, 4)

                @step
                def area(b: Box) -> int:
                    return b.w * b.h

                @pipeline
                def shapes():
                    area(make_box())

                if __name__ == "__main__":
                    import sys
                    if len(sys.argv) > 1:  # load an output of a run, as the client does
                        print(zorch.get_client().get_run(sys.argv[1]).load("make_box").h)
                    else:
                        print(shapes().id)
            '''))
        r = subprocess.run([sys.executable, script], capture_output=True, text=True,
                           timeout=120, env=python_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        run = self.client.get_run(r.stdout.strip().splitlines()[-1])
        self.assertEqual(run._py_meta("make_box")["outputs"]["output"]["type"], "__main__.Box")
        for step_ in ("area", "make_box"):  # unpickles a __main__.Box, pickles one
            r = self.run_step(self.step_command(run, step_))
            self.assertEqual(r.returncode, 0, r.stderr)
        again = self.client.get_run(run.id)
        self.assertEqual(again.load("area"), 12)
        self.assertEqual(again.steps["make_box"].attempts, 2)
        # the Box pickled by the step process loads in the script
        r = subprocess.run([sys.executable, script, run.id], capture_output=True, text=True,
                           timeout=120, env=python_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "4")


if __name__ == "__main__":
    unittest.main()
