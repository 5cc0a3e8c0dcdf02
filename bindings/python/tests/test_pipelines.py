"""Decorators: wiring, typed and multiple outputs, params, settings, the run object."""
import json
import os
import unittest
from typing import Annotated, Dict, List, Tuple

from support import HomeTestCase

import zorch
from zorch import Resources, Retry, pipeline, step


@step
def numbers(n: int) -> Annotated[List[int], "values"]:
    return list(range(1, n + 1))


@step
def stats(values: list) -> Tuple[Annotated[int, "total"], Annotated[float, "mean"]]:
    return sum(values), sum(values) / len(values)


@step
def unnamed_pair(values: list) -> Tuple[int, int]:
    return min(values), max(values)


@step
def describe(total: int, mean: float, lo: int, hi: int, label: str = "x") -> str:
    return f"{label}: total={total} mean={mean} range={lo}..{hi}"


@pipeline
def arithmetic(n: int = 4, label: str = "nums"):
    values = numbers(n)
    total, mean = stats(values)
    lo, hi = unnamed_pair(values)
    describe(total, mean, lo, hi, label=label)


class WiringTest(HomeTestCase):
    def test_outputs_wire_to_inputs_and_the_run_reports_every_step(self):
        run = arithmetic()
        self.assertIsInstance(run, zorch.Run)
        self.assertEqual(run.status, "completed")
        self.assertEqual(list(run.steps), ["numbers", "stats", "unnamed_pair", "describe"])
        self.assertEqual(set(self.statuses(run).values()), {"completed"})
        self.assertEqual(run.load("numbers", "values"), [1, 2, 3, 4])
        self.assertEqual(run.load("stats", "total"), 10)
        self.assertEqual(run.load("stats", "mean"), 2.5)
        # Tuple[int, int] without names: output_0, output_1 (as in ZenML)
        self.assertEqual(sorted(run.steps["unnamed_pair"].outputs), ["output_0", "output_1"])
        self.assertEqual(run.load("unnamed_pair", "output_1"), 4)
        self.assertEqual(run.load("describe"), "nums: total=10 mean=2.5 range=1..4")
        # the wiring is zorch's own: the deployment says which output feeds which input
        steps = {s["name"]: s for s in run.deployment["steps"]}
        self.assertEqual(steps["describe"]["inputs"]["lo"], {"step": "unnamed_pair",
                                                             "output": "output_0"})
        self.assertEqual(steps["stats"]["inputs"]["values"], {"step": "numbers",
                                                              "output": "values"})

    def test_pipeline_params_from_the_call_reach_the_steps(self):
        run = arithmetic(n=10, label="ten")
        self.assertEqual(run.load("stats", "total"), 55)
        self.assertEqual(run.load("describe"), "ten: total=55 mean=5.5 range=1..10")
        self.assertEqual(run.deployment["params"], {"n": 10, "label": "ten"})
        with self.assertRaises(TypeError) as cm:
            arithmetic(m=3)
        self.assertIn("arithmetic", str(cm.exception))

    def test_a_changed_param_reruns_only_the_steps_that_read_it(self):
        arithmetic(n=4, label="a")
        run = arithmetic(n=4, label="b")
        self.assertEqual(self.statuses(run), {"numbers": "cached", "stats": "cached",
                                              "unnamed_pair": "cached", "describe": "completed"})
        self.assertEqual(run.load("describe"), "b: total=10 mean=2.5 range=1..4")

    def test_a_step_context_argument_is_given_the_running_step(self):
        @step
        def who(ctx: zorch.StepContext, suffix: str) -> str:
            ctx.log("logged through the context")
            return f"{ctx.step_name}/{ctx.attempt}/{ctx.run_id}/{suffix}"

        @pipeline
        def p():
            who(suffix="s")

        run = p()
        self.assertEqual(run.load("who"), f"who/1/{run.id}/s")
        self.assertIn("logged through the context", run.steps["who"].logs)
        with self.assertRaises(TypeError) as cm:
            @pipeline
            def q():
                who()

            q()
        self.assertIn("'suffix' is missing", str(cm.exception))

    def test_calling_a_step_outside_a_pipeline_calls_the_function(self):
        self.assertEqual(stats([1, 2, 3]), (6, 2.0))

    def test_the_same_step_twice_gets_distinct_names_or_ids(self):
        @pipeline
        def twice():
            a = numbers(2)
            b = numbers(3, id="three")
            stats(a)
            stats(b)
            numbers(5)

        run = twice()
        self.assertEqual(set(run.steps), {"numbers", "three", "numbers_2", "stats", "stats_2"})
        self.assertEqual(run.load("stats_2", "total"), 6)
        self.assertEqual(run.load("numbers_2"), [1, 2, 3, 4, 5])

    def test_thousands_of_calls_of_one_step_build_in_linear_time(self):
        import time

        @pipeline
        def wide():
            for i in range(5000):
                numbers(1)

        t = time.monotonic()
        built = wide.build()
        took = time.monotonic() - t
        del built
        self.assertLess(took, 2.5, f"5000 calls took {took:.2f} s to build")

    def test_after_orders_steps_without_data(self):
        order = []

        @step
        def first() -> None:
            order.append("first")

        @step
        def second() -> None:
            order.append("second")

        @pipeline
        def ordered():
            f = first()
            second(after=first)
            del f

        ordered.with_options(no_cache=True)()
        self.assertEqual(order, ["first", "second"])
        # no outputs: a step annotated -> None has none
        dep = {s["name"]: s for s in zorch.get_client().get_run(
            zorch.get_client().runs()[0].id).deployment["steps"]}
        self.assertEqual(dep["second"]["after"], ["first"])
        self.assertNotIn("outputs", dep["first"])


class SettingsTest(HomeTestCase):
    def test_step_settings_become_zorch_step_settings(self):
        @step(retry=Retry(max_retries=3, delay=0.5, backoff=2), timeout=30,
              resources=Resources(cpu=1.5, memory="2GiB", gpu=1, gpu_type="nvidia-t4"),
              image="python:3.11-slim", environment={"OMP_NUM_THREADS": "2"},
              settings={"kubernetes": {"node_selector": {"pool": "gpu"}}}, enable_cache=False)
        def heavy() -> int:
            return 1

        @step
        def light(x: int) -> int:
            return x + 1

        @pipeline(retry=1, environment={"STAGE": "test"})
        def configured():
            light(heavy())

        run = configured()
        steps = {s["name"]: s for s in run.deployment["steps"]}
        st = steps["heavy"]["settings"]
        self.assertEqual(st["retries"], {"max": 3, "delay": 0.5, "backoff": 2.0})
        self.assertEqual(st["timeout"], 30.0)
        self.assertEqual(st["resources"]["cpu"], 1.5)
        self.assertEqual(st["resources"]["memory"], 2 * 1024 ** 3)
        self.assertEqual(st["resources"]["gpu"], 1)
        self.assertEqual(st["image"], "python:3.11-slim")
        self.assertEqual(st["env"]["OMP_NUM_THREADS"], "2")
        self.assertEqual(st["flavor"]["kubernetes"], {"node_selector": {"pool": "gpu"}})
        self.assertIs(st["cache"], False)
        # a step may run in the image built from the host (light names no
        # image): the pipeline lists what `python3 -m zorch` needs in it
        add = run.deployment["defaults"]["settings"]["flavor"]["local_docker"]["image_add"]
        self.assertEqual(add, configured.image_paths())
        self.assertIn(os.path.dirname(zorch.__file__), add)
        # pipeline-wide settings are the defaults of steps that set none
        d = run.deployment["defaults"]["settings"]
        self.assertEqual(d["retries"]["max"], 1)
        self.assertEqual(d["env"], {"STAGE": "test"})
        self.assertIsNone(run.steps["heavy"].cache_key)  # caching off for that step
        run2 = configured()
        self.assertEqual(self.statuses(run2), {"heavy": "completed", "light": "cached"})

    def test_with_options_copies_a_step_with_other_settings(self):
        @step
        def base() -> int:
            return 3

        changed = base.with_options(name="renamed", timeout=5)

        @pipeline
        def p():
            changed()

        run = p()
        self.assertEqual(list(run.steps), ["renamed"])
        self.assertEqual(run.deployment["steps"][0]["settings"]["timeout"], 5.0)

    def test_bad_settings_and_names_are_refused_with_the_reason(self):
        def f() -> int:
            return 1

        with self.assertRaises(TypeError) as cm:
            zorch.step(retry="often")(f)
        self.assertIn("retry", str(cm.exception))
        with self.assertRaises(zorch.InvalidError) as cm:
            zorch.step(resources=Resources(memory="lots"))(f)
        self.assertIn("memory 'lots'", str(cm.exception))
        with self.assertRaises(zorch.InvalidError) as cm:
            zorch.step(name="9lives")(f)
        self.assertIn("9lives", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            zorch.step(colour="blue")(f)
        self.assertIn("colour", str(cm.exception))

    def test_zorch_validation_errors_surface_with_zorchs_message(self):
        @step
        def lone() -> int:
            return 1

        @pipeline
        def dangling():
            lone(after="missing")

        with self.assertRaises(zorch.InvalidError) as cm:
            dangling()
        self.assertIn("missing", cm.exception.message)
        self.assertEqual(cm.exception.code, -3)

    def test_placeholders_cannot_be_used_as_values_in_the_pipeline_function(self):
        @pipeline
        def arith(n: int = 2):
            numbers(n + 1)

        with self.assertRaises(TypeError) as cm:
            arith()
        self.assertIn("pipeline parameter 'n'", str(cm.exception))

    def test_a_non_json_literal_argument_is_refused(self):
        @pipeline
        def bad():
            stats(object())

        with self.assertRaises(TypeError) as cm:
            bad()
        self.assertIn("neither a step output", str(cm.exception))


class RunOptionsTest(HomeTestCase):
    def test_run_name_and_start_then_wait(self):
        run = arithmetic.with_options(run_name="named-run").start(n=3)
        run.wait()
        self.assertEqual(run.name, "named-run")
        self.assertEqual(run.status, "completed")
        self.assertEqual(run.load("stats", "total"), 6)
        self.assertEqual(zorch.get_client().get_run("named-run").id, run.id)

    def test_no_cache_runs_every_step(self):
        arithmetic()
        run = arithmetic.with_options(no_cache=True)()
        self.assertEqual(set(self.statuses(run).values()), {"completed"})


if __name__ == "__main__":
    unittest.main()
