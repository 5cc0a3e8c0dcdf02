#!/usr/bin/python3
"""zorch bench -- the dask side (run with Debian's /usr/bin/python3 and python3-dask).

    dask_bench.py fan N                 1 -> N -> 1 tasks, each subprocess.run(['true']),
                                        dask.threaded.get with 2 workers
    dask_bench.py dag FILE threaded     the gen-dag graph of no-op tasks, threaded.get, 2 workers
    dask_bench.py dag FILE sync         the same with dask.get_sync (1 thread)

Timed inside the interpreter: building the task dict (build_s) and the get()
call (run_s); interpreter start-up, `import dask` and reading the edge-list
file are not timed.  Prints one JSON line.
"""
import itertools
import json
import subprocess
import sys
import time

import dask
import dask.local
import dask.threaded

WORKERS = 2


def run_true(*_deps):
    subprocess.run(["true"], check=True)
    return next(COUNTER)


def noop(*_deps):
    return next(COUNTER)


COUNTER = itertools.count()


def load_dag(path):
    with open(path) as f:
        head = f.readline().split()
        if len(head) != 4 or head[0] != "zdag1":
            raise SystemExit("dask_bench: %s is not a gen-dag file" % path)
        n, edges, checksum = int(head[1]), int(head[2]), int(head[3])
        deps = []
        for i, line in enumerate(f):
            parts = line.split()
            k = int(parts[0])
            d = [int(x) for x in parts[1:1 + k]]
            if len(d) != k or any(x >= i for x in d):
                raise SystemExit("dask_bench: bad line %d in %s" % (i + 2, path))
            deps.append(d)
    if len(deps) != n:
        raise SystemExit("dask_bench: %s has %d nodes, header says %d" % (path, len(deps), n))
    got_edges = sum(len(d) for d in deps)
    got_sum = sum(i * 1000003 + x + 1 for i, d in enumerate(deps) for x in d) % (1 << 64)
    if got_edges != edges or got_sum != checksum:
        raise SystemExit("dask_bench: %s does not match its header" % path)
    return deps, edges, checksum


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    mode = argv[1]
    out = {"tool": "dask", "dask_version": dask.__version__}
    if mode == "fan":
        n = int(argv[2])
        t0 = time.perf_counter()
        dsk = {"src": (run_true,)}
        fkeys = []
        for i in range(n):
            k = "f%d" % i
            dsk[k] = (run_true, "src")
            fkeys.append(k)
        dsk["sink"] = (run_true,) + tuple(fkeys)
        t1 = time.perf_counter()
        dask.threaded.get(dsk, ["sink"], num_workers=WORKERS)
        t2 = time.perf_counter()
        out.update(mode="fan-threaded", steps=n + 2)
    elif mode == "dag":
        deps, edges, checksum = load_dag(argv[2])
        sched = argv[3] if len(argv) > 3 else "threaded"
        t0 = time.perf_counter()
        dsk = {}
        keys = []
        for i, d in enumerate(deps):
            k = "s%d" % i
            dsk[k] = (noop,) + tuple("s%d" % x for x in d)
            keys.append(k)
        t1 = time.perf_counter()
        if sched == "threaded":
            dask.threaded.get(dsk, keys, num_workers=WORKERS)
        elif sched == "sync":
            dask.local.get_sync(dsk, keys)
        else:
            raise SystemExit("dask_bench: scheduler must be threaded or sync")
        t2 = time.perf_counter()
        out.update(mode="dag-" + sched, steps=len(deps), edges=edges, checksum=checksum)
    else:
        raise SystemExit(__doc__)
    out.update(ran=next(COUNTER), build_s=t1 - t0, run_s=t2 - t1, wall_s=t2 - t0)
    print(json.dumps(out))
    return 0 if out["ran"] == out["steps"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
