"""Caching across runs and processes, keyed by each step's code version."""
import json
import os
import tempfile
import textwrap
import unittest

from support import HomeTestCase, run_python

import zorch
from zorch import pipeline, step

calls = []


@step
def source(n: int) -> list:
    calls.append("source")
    return list(range(n))


@step
def square(xs: list) -> list:
    calls.append("square")
    return [x * x for x in xs]


@pipeline
def squares(n: int = 5):
    square(source(n))


PROGRAM = '''
import json, sys
from zorch import step, pipeline

@step
def prepare(n: int) -> list:
    return list(range(n))

@step
def model(xs: list) -> int:
    return {BODY}

@pipeline
def cached_pipeline(n: int = 4):
    model(prepare(n))

if __name__ == "__main__":
    run = cached_pipeline()
    print(json.dumps({{"status": {{k: s.status for k, s in run.steps.items()}},
                      "value": run.load("model"),
                      "version": [s["version"] for s in run.deployment["steps"]]}}))
'''


class CacheTest(HomeTestCase):
    def setUp(self):
        super().setUp()
        calls.clear()

    def test_a_second_run_is_served_from_the_cache(self):
        first = squares()
        self.assertEqual(self.statuses(first), {"source": "completed", "square": "completed"})
        self.assertEqual(calls, ["source", "square"])
        second = squares()
        self.assertEqual(self.statuses(second), {"source": "cached", "square": "cached"})
        self.assertEqual(calls, ["source", "square"])  # no function ran again
        self.assertEqual(second.load("square"), [0, 1, 4, 9, 16])
        for name in ("source", "square"):
            self.assertEqual(first.steps[name].cache_key, second.steps[name].cache_key)
            self.assertEqual(first.steps[name].outputs, second.steps[name].outputs)

    def test_other_params_miss_and_disabling_cache_runs_again(self):
        squares()
        run = squares(n=3)
        self.assertEqual(self.statuses(run), {"source": "completed", "square": "completed"})
        off = squares.with_options(enable_cache=False)()
        self.assertEqual(self.statuses(off), {"source": "completed", "square": "completed"})

    def write_program(self, body):
        path = os.path.join(self.dir, "prog.py")
        with open(path, "w") as f:
            f.write(PROGRAM.format(BODY=body))
        return path

    def run_program(self, path):
        r = run_python([path], env=dict(os.environ, **{
            "PYTHONPATH": os.pathsep.join(p for p in [os.environ.get("PYTHONPATH"),
                                                     os.path.dirname(os.path.dirname(
                                                         os.path.abspath(zorch.__file__)))]
                                          if p)}))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def test_the_cache_works_across_processes_and_a_changed_body_misses_it(self):
        self.dir = tempfile.mkdtemp(dir=self.home)
        prog = self.write_program("sum(xs)")
        first = self.run_program(prog)
        self.assertEqual(first["status"], {"prepare": "completed", "model": "completed"})
        self.assertEqual(first["value"], 6)
        again = self.run_program(prog)  # a new process: same code, same key
        self.assertEqual(again["status"], {"prepare": "cached", "model": "cached"})
        self.assertEqual(again["version"], first["version"])
        self.assertTrue(all(v.startswith("py-src:") for v in first["version"]))
        changed = self.run_program(self.write_program("sum(xs) * 10"))
        self.assertEqual(changed["status"], {"prepare": "cached", "model": "completed"})
        self.assertEqual(changed["value"], 60)
        self.assertEqual(changed["version"][0], first["version"][0])
        self.assertNotEqual(changed["version"][1], first["version"][1])
        # going back to the first body finds the first result again
        back = self.run_program(self.write_program("sum(xs)"))
        self.assertEqual(back["status"], {"prepare": "cached", "model": "cached"})

    def test_code_version_follows_the_source(self):
        def f(x):
            return x + 1

        def g(x):
            return x + 1

        def h(x):
            return x + 2

        self.assertTrue(zorch.code_version(f).startswith("py-src:"))
        self.assertNotEqual(zorch.code_version(f), zorch.code_version(h))
        # the source text (including the name) is the identity
        self.assertNotEqual(zorch.code_version(f), zorch.code_version(g))
        self.assertEqual(zorch.code_version(f), zorch.code_version(f))
        ns = {}
        exec("def k(x):\n    return x * 3\n", ns)  # no source file: the bytecode counts
        self.assertTrue(zorch.code_version(ns["k"]).startswith("py-code:"))
        exec("def k(x):\n    return x * 4\n", ns2 := {})
        self.assertNotEqual(zorch.code_version(ns["k"]), zorch.code_version(ns2["k"]))

    def test_settings_in_the_decorator_are_not_code(self):
        def body(x):
            return x

        a = zorch.code_version(body)

        @step(retry=3, timeout=10)
        def body(x):
            return x

        self.assertEqual(zorch.code_version(body.func), a)

    def test_an_explicit_version_replaces_the_derived_one(self):
        @step(version="v7")
        def pinned() -> int:
            return 1

        @pipeline
        def p():
            pinned()

        run = p()
        self.assertEqual(run.deployment["steps"][0]["version"], "v7")


if __name__ == "__main__":
    unittest.main()
