"""Threads: many Python steps at once on zorch's worker threads, runs from
several Python threads, and a main thread that keeps running while it waits."""
import threading
import time
import unittest

from support import HomeTestCase

import zorch
from zorch import pipeline, step

_lock = threading.Lock()
_active = 0
_peak = 0
_threads = set()


@step
def nap(i: int, seconds: float) -> int:
    global _active, _peak
    with _lock:
        _active += 1
        _peak = max(_peak, _active)
        _threads.add(threading.get_ident())
    time.sleep(seconds)  # releases the GIL: other steps run meanwhile
    with _lock:
        _active -= 1
    return i * i


@step
def spin(i: int) -> int:
    total = 0
    for k in range(20000):  # holds the GIL in slices
        total += (k * i) % 7
    return total


@step
def gather(**parts: int) -> int:
    return sum(parts.values())


N = 64


@pipeline
def fan(seconds: float = 0.2):
    parts = {f"p{i}": nap(i, seconds) for i in range(N)}
    gather(**parts)


@pipeline
def busy():
    gather(**{f"s{i}": spin(i) for i in range(32)})


def expected_spin(i):
    return sum((k * i) % 7 for k in range(20000))


class ThreadTest(HomeTestCase):
    def test_many_python_steps_run_in_parallel_on_zorch_threads(self):
        global _peak
        _peak = 0
        _threads.clear()
        t0 = time.monotonic()
        run = fan.with_options(max_parallel=8)()
        wall = time.monotonic() - t0
        self.assertEqual(run.status, "completed")
        self.assertEqual(len(run.steps), N + 1)
        self.assertEqual(run.load("gather"), sum(i * i for i in range(N)))
        self.assertEqual(run.load("nap_7"), 36)
        self.assertGreaterEqual(_peak, 4, "steps did not overlap")
        self.assertLessEqual(_peak, 8, "more steps at once than max_parallel")
        self.assertGreaterEqual(len(_threads), 4)
        self.assertNotIn(threading.main_thread().ident, _threads)
        # 64 x 0.2 s one at a time would take 12.8 s
        self.assertLess(wall, 6.0, f"took {wall:.1f} s")
        print(f"\n{N} sleeping steps, max_parallel 8: {wall:.2f} s, peak {_peak} at once")

    def test_gil_bound_steps_finish_without_deadlock(self):
        run = busy.with_options(max_parallel=16)()
        self.assertEqual(run.load("gather"), sum(expected_spin(i) for i in range(32)))

    def test_runs_started_from_several_python_threads(self):
        results, errors = {}, []

        def one(k):
            try:
                r = fan.with_options(run_name=f"thread-{k}", no_cache=True,
                                     max_parallel=4)(seconds=0.01 * (k + 1))
                results[k] = (r.status, r.load("gather"))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(results, {k: ("completed", sum(i * i for i in range(N)))
                                   for k in range(4)})
        self.assertEqual(len(self.client.runs("fan")), 4)

    def test_the_waiting_thread_releases_the_gil(self):
        ticks = [0]
        stop = threading.Event()

        def ticker():
            while not stop.is_set():
                ticks[0] += 1
                time.sleep(0.005)

        t = threading.Thread(target=ticker)
        t.start()
        try:
            fan.with_options(max_parallel=8, no_cache=True)(seconds=0.1)
        finally:
            stop.set()
            t.join()
        self.assertGreater(ticks[0], 20)


if __name__ == "__main__":
    unittest.main()
