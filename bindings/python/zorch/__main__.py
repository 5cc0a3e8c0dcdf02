"""The step entrypoint of Python pipelines: ``python3 -m zorch``.

Remote flavors (containers, Pods, VMs) run one step of a run as

    python3 -m zorch --zorch-target MODULE_OR_FILE:PIPELINE [--zorch-path DIR]
        --zorch-step NAME --zorch-store URI --zorch-run ID

which is the command a Python pipeline writes into its deployments
(``Pipeline.entrypoint_command()`` plus what zorch appends).  This imports
the program's module (or runs its file under the name ``__zorch_main__``,
so that its ``if __name__ == "__main__":`` block stays idle), finds the
pipeline, and hands over to zorch_main(), which rebuilds the pipeline,
checks it against the deployment, runs the step against the artifact store
and exits with the step's status (0 completed, 1 failed, 2 usage or
deployment error, 3 pipeline mismatch).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

USAGE = ("usage: python3 -m zorch --zorch-target MODULE_OR_FILE:PIPELINE [--zorch-path DIR]... "
         "--zorch-step NAME --zorch-store URI --zorch-run ID")


def _fail(msg: str, code: int = 2):
    sys.stderr.write(f"zorch: {msg}\n")
    sys.stderr.flush()
    sys.exit(code)


def _resolve(target: str):
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        _fail(f"--zorch-target '{target}' is not MODULE:PIPELINE or FILE:PIPELINE")
    try:
        if where.endswith(".py") or os.sep in where:
            if not os.path.isfile(where):
                _fail(f"--zorch-target: no file '{where}' (the step's image or machine must "
                      "have the program at the same path)")
            spec = importlib.util.spec_from_file_location("__zorch_main__", where)
            mod = importlib.util.module_from_spec(spec)
            sys.modules["__zorch_main__"] = mod
            sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
            spec.loader.exec_module(mod)
            # The program ran the script as __main__: its classes are
            # __main__.X in type names and in pickles.  Give them the same
            # names here (multiprocessing's spawn does the like).
            sys.modules["__main__"] = mod
            for value in list(vars(mod).values()):
                if getattr(value, "__module__", None) == "__zorch_main__" and \
                        isinstance(value, type):
                    value.__module__ = "__main__"
        else:
            mod = importlib.import_module(where)
    except SystemExit:
        raise
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        _fail(f"cannot load '{where}' for --zorch-target '{target}'")
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            _fail(f"'{where}' has no '{attr}'")
    return obj


def main(argv: list[str]) -> int:
    targets, paths, rest = [], [], [argv[0]]
    i = 1
    while i < len(argv):
        if argv[i] in ("--zorch-target", "--zorch-path"):
            if i + 1 >= len(argv):
                _fail(f"{argv[i]} needs a value\n{USAGE}")
            (targets if argv[i] == "--zorch-target" else paths).append(argv[i + 1])
            i += 2
            continue
        if argv[i] in ("-h", "--help"):
            print(__doc__.strip() + "\n\n" + USAGE)
            return 0
        rest.append(argv[i])
        i += 1
    if len(targets) != 1:
        _fail(f"give exactly one --zorch-target\n{USAGE}")
    if "--zorch-step" not in rest:
        _fail(f"--zorch-step is missing: this command runs one step of a run\n{USAGE}")
    for p in reversed(paths):
        sys.path.insert(0, p)
    from zorch._lib import BUILD_CB, argv_array, lib
    from zorch.pipelines import Pipeline, _install_streams

    pipe = _resolve(targets[0])
    if not isinstance(pipe, Pipeline):
        _fail(f"'{targets[0]}' is a {type(pipe).__name__}, not a @pipeline")
    _install_streams()
    keep = []

    @BUILD_CB
    def build(out, name, payload):
        try:
            want = name.decode()
            if want != pipe.name:
                sys.stderr.write(f"zorch: the deployment is of pipeline '{want}', but "
                                 f"'{targets[0]}' is pipeline '{pipe.name}'\n")
                return -2
            built = pipe.build()
            keep.append(built)  # its step payloads must outlive the step
            out[0] = built.release()
            return 0
        except BaseException:  # noqa: BLE001 - nothing may escape into C
            traceback.print_exc()
            return -15

    sys.stdout.flush()
    sys.stderr.flush()
    # zorch_main() runs the step and exits the process with its status.
    lib().main(len(rest), argv_array(rest), build, None)
    _fail("zorch_main() returned without running the step", 2)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
