"""The client: runs, steps, logs, outputs, metadata, flavors and stacks."""
import unittest

from support import HomeTestCase

import zorch
from zorch import pipeline, step


@step
def greet(who: str) -> str:
    print(f"greeting {who}")
    return f"hello, {who}"


@step
def shout(text: str) -> str:
    return text.upper()


@pipeline
def hello(who: str = "world"):
    shout(greet(who))


@pipeline
def other():
    greet("x")


class ClientTest(HomeTestCase):
    def test_list_runs_and_get_a_run_by_id_or_name(self):
        first = hello.with_options(run_name="first")()
        second = hello(who="zorch")
        other()
        runs = self.client.runs()
        self.assertEqual(len(runs), 3)
        self.assertEqual(runs[0].pipeline, "other")  # newest first
        self.assertEqual({r.id for r in runs[1:]}, {first.id, second.id})
        self.assertEqual([r.id for r in self.client.runs("hello")], [second.id, first.id])
        self.assertTrue(all(r.status == "completed" for r in runs))
        self.assertTrue(all(r.finished_at >= r.started_at > 0 for r in runs))
        by_name = self.client.get_run("first")
        self.assertEqual(by_name.id, first.id)
        by_id = runs[1].open()
        self.assertEqual(by_id.name, second.name)
        self.assertEqual(by_id.pipeline_name, "hello")
        self.assertEqual(by_id.stack, "default")

    def test_a_run_loaded_from_the_store_gives_steps_logs_and_values(self):
        run = hello(who="store")
        del run
        import gc
        gc.collect()
        # a second client, as another program would open the same home
        with zorch.Client(self.home) as c:
            loaded = c.runs()[0].open()
            self.assertEqual(loaded.status, "completed")
            self.assertEqual({n: s.status for n, s in loaded.steps.items()},
                             {"greet": "completed", "shout": "completed"})
            s = loaded.step("shout")
            self.assertEqual(s.attempts, 1)
            self.assertEqual(len(s.cache_key), 64)
            out = s.outputs["output"]
            self.assertEqual((out.kind, out.size), ("file", len("HELLO, STORE")))
            self.assertEqual(len(out.digest), 64)
            self.assertEqual(s.load(), "HELLO, STORE")
            self.assertEqual(loaded.load("greet"), "hello, store")
            self.assertIn("greeting store", loaded.steps["greet"].logs)
            self.assertEqual(loaded.metadata("orchestrator"), "local")  # the flavor
            self.assertEqual(loaded.metadata("orchestrator_run_id"), loaded.id)
            self.assertIsNone(loaded.orchestrator_url)  # the local flavor has no UI
            with self.assertRaises(zorch.NotFoundError):
                loaded.step("nope")
            del loaded, s

    def test_flavors_and_stacks(self):
        flavors = self.client.flavors()
        self.assertIn(("orchestrator", "local"), {(f["type"], f["name"]) for f in flavors})
        orchestrators = self.client.flavors("orchestrator")
        self.assertIn("local", [f["name"] for f in orchestrators])
        self.assertEqual({f["type"] for f in orchestrators}, {"orchestrator"})
        self.assertIn("config_schema", self.client.describe_flavor("local"))
        self.assertEqual(self.client.flavor_problems(), [])
        with self.assertRaises(zorch.NotFoundError):
            self.client.describe_flavor("no_such_flavor")
        self.assertEqual(self.client.active_stack, "default")
        self.client.register_component("orchestrator", "serial", "local", {"max_parallel": 1})
        self.client.register_stack("one-at-a-time", "serial")
        names = {s["name"]: s for s in self.client.stacks()}
        self.assertEqual(set(names), {"default", "one-at-a-time"})
        self.assertTrue(names["default"]["active"])
        self.assertEqual(self.client.describe_stack("one-at-a-time")["orchestrator"]["config"],
                         {"max_parallel": 1})
        # choose a stack for one run, then make it the active one
        run = hello.with_options(stack="one-at-a-time")()
        self.assertEqual(run.stack, "one-at-a-time")
        self.assertEqual(run.metadata("orchestrator"), "local")
        self.client.activate_stack("one-at-a-time")
        self.assertEqual(self.client.active_stack, "one-at-a-time")
        run = hello(who="active")
        self.assertEqual(run.stack, "one-at-a-time")
        with self.assertRaises(zorch.ExistsError):
            self.client.register_stack("one-at-a-time", "serial")
        with self.assertRaises(zorch.ZorchError) as cm:
            self.client.delete_stack("one-at-a-time")  # the active stack
        self.assertIn("active", cm.exception.message)
        self.client.activate_stack("default")
        self.client.delete_stack("one-at-a-time")
        self.client.delete_component("orchestrator", "serial")
        self.assertEqual([c["name"] for c in self.client.components("orchestrator")],
                         ["default"])

    def test_home_and_version(self):
        self.assertEqual(self.client.home, self.home)
        self.assertRegex(zorch.version(), r"^\d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
