"""Materializers: built-in ones, pickle only on opt-in, user-registered ones."""
import json
import os
import pathlib
import tempfile
import unittest
from typing import Annotated, Dict, Tuple

from support import HomeTestCase

import zorch
from zorch import Materializer, pipeline, register_materializer, step


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class PointMaterializer(Materializer):
    id = "test.point"

    def save_bytes(self, value):
        return f"{value.x},{value.y}".encode()

    def load_bytes(self, data, type_):
        x, y = data.decode().split(",")
        return Point(int(x), int(y))


class Table:
    def __init__(self, rows):
        self.rows = rows


class TableDirMaterializer(Materializer):
    """A directory artifact: one file per row."""

    id = "test.table-dir"

    def save(self, value, path):
        os.mkdir(path)
        for i, row in enumerate(value.rows):
            with open(os.path.join(path, f"{i:04d}.txt"), "w") as f:
                f.write(row)

    def load(self, path, type_):
        return Table([open(os.path.join(path, n)).read() for n in sorted(os.listdir(path))])


register_materializer(Point, PointMaterializer)
register_materializer(Table, TableDirMaterializer)


class Model:  # pickled only after allow_pickle(Model)
    def __init__(self, weights):
        self.weights = weights


class Secret:
    pass


class MaterializerTest(HomeTestCase):
    def test_builtins_store_plain_artifacts(self):
        @step
        def produce() -> Tuple[Annotated[bytes, "raw"], Annotated[str, "text"],
                               Annotated[Dict[str, list], "doc"], Annotated[tuple, "pair"],
                               Annotated[float, "num"], Annotated[bool, "flag"]]:
            return b"\x00\x01binary", "h\u00e9llo", {"b": [1, 2], "a": None}, (1, "x"), 0.25, True

        @step
        def consume(raw: bytes, text: str, doc: dict, pair: tuple, num: float,
                    flag: bool) -> str:
            return repr((raw, text, doc, pair, num, flag))

        @pipeline
        def builtins():
            consume(*produce())

        run = builtins()
        self.assertEqual(run.read_output("produce", "raw"), b"\x00\x01binary")
        self.assertEqual(run.read_output("produce", "text"), "h\u00e9llo".encode())
        # JSON with sorted keys: equal values give the same artifact
        self.assertEqual(run.read_output("produce", "doc"), b'{"a":null,"b":[1,2]}')
        self.assertEqual(run.load("produce", "pair"), (1, "x"))
        self.assertEqual(run.load("consume"),
                         repr((b"\x00\x01binary", "h\u00e9llo", {"a": None, "b": [1, 2]},
                               (1, "x"), 0.25, True)))

    def test_files_and_directories_travel_as_paths(self):
        src = tempfile.mkdtemp(dir=self.home)
        with open(os.path.join(src, "a.txt"), "w") as f:
            f.write("alpha")
        os.mkdir(os.path.join(src, "sub"))
        with open(os.path.join(src, "sub", "b.txt"), "w") as f:
            f.write("beta")

        @step
        def make_dir(where: str) -> Annotated[pathlib.Path, "folder"]:
            return pathlib.Path(where)

        @step
        def make_file(folder: pathlib.Path) -> pathlib.Path:
            out = pathlib.Path(tempfile.mkdtemp()) / "joined.txt"
            out.write_text((folder / "a.txt").read_text() + (folder / "sub" / "b.txt").read_text())
            return out

        @step
        def read_file(p: pathlib.Path) -> str:
            return p.read_text()

        @pipeline
        def files(where: str = src):
            read_file(make_file(make_dir(where)))

        run = files()
        self.assertEqual(run.steps["make_dir"].outputs["folder"].kind, "dir")
        folder = run.load("make_dir", "folder")
        self.assertIsInstance(folder, pathlib.Path)
        self.assertEqual((folder / "sub" / "b.txt").read_text(), "beta")
        self.assertNotEqual(str(folder), src)  # a copy in the store
        self.assertEqual(run.load("read_file"), "alphabeta")
        self.assertEqual(run.read_output("make_file"), b"alphabeta")

    def test_pickle_only_for_types_the_program_allowed(self):
        @step
        def train() -> Annotated[Model, "model"]:
            return Model([0.5, 1.5])

        with self.assertRaises(zorch.MaterializerError) as cm:
            @pipeline
            def not_allowed():
                train()

            not_allowed()
        self.assertIn("allow_pickle(Model)", str(cm.exception))
        self.assertIn("register_materializer", str(cm.exception))

        zorch.allow_pickle(Model)

        @step
        def train2() -> Annotated[Model, "model"]:
            return Model([0.5, 1.5])

        @step
        def use(model: Model) -> float:
            return sum(model.weights)

        @pipeline
        def allowed():
            use(train2())

        run = allowed()
        self.assertEqual(run.load("use"), 2.0)
        model = run.load("train2", "model")
        self.assertIsInstance(model, Model)
        self.assertEqual(model.weights, [0.5, 1.5])
        self.assertEqual(run._py_meta("train2")["outputs"]["model"],
                         {"materializer": "pickle", "type": f"{__name__}.Model"})

    def test_a_pickled_value_of_another_type_is_refused(self):
        @step
        def sneaky() -> Annotated[Secret, "s"]:
            return Secret()

        with self.assertRaises(zorch.MaterializerError):
            @pipeline
            def p():
                sneaky()

            p()
        # a materializer forced onto a step still refuses a type nobody allowed
        forced = sneaky.with_options(output_materializers=zorch.PickleMaterializer)

        @pipeline
        def q():
            forced()

        run = q.with_options(raise_on_failure=False)()
        self.assertEqual(run.steps["sneaky"].status, "failed")
        self.assertIn("not allowed to be pickled", run.steps["sneaky"].error)

    def test_user_materializers_for_files_and_directories(self):
        @step
        def where() -> Point:
            return Point(3, 4)

        @step
        def tabulate(p: Point) -> Table:
            return Table([f"x={p.x}", f"y={p.y}"])

        @step
        def count(t: Table) -> int:
            return len(t.rows)

        @pipeline
        def user():
            count(tabulate(where()))

        run = user()
        self.assertEqual(run.read_output("where"), b"3,4")
        self.assertEqual(run.steps["tabulate"].outputs["output"].kind, "dir")
        table = run.load("tabulate")
        self.assertEqual(table.rows, ["x=3", "y=4"])
        self.assertEqual(run.load("count"), 2)
        p = run.load("where")
        self.assertEqual((p.x, p.y), (3, 4))

    def test_outputs_without_annotation_record_their_materializer(self):
        @step
        def untyped(kind: str):
            return {"json": {"k": 1}, "str": "text", "bytes": b"\xff"}[kind]

        @step
        def echo(v) -> str:
            return repr(v)

        @pipeline
        def auto(kind: str = "json"):
            echo(untyped(kind))

        for kind, value in (("json", {"k": 1}), ("str", "text"), ("bytes", b"\xff")):
            run = auto(kind=kind)
            self.assertEqual(run.load("untyped"), value)
            self.assertEqual(run.load("echo"), repr(value))
            self.assertTrue(run.read_output("untyped").startswith(b"zorch-auto "))

    def test_outputs_of_other_steps_load_as_bytes_or_with_a_type(self):
        @step
        def text() -> str:
            return '{"n": 5}'

        @pipeline
        def p():
            text()

        run = p()
        self.assertEqual(run.load("text", type=dict), {"n": 5})
        self.assertEqual(run.load("text", type=bytes), b'{"n": 5}')

    def test_unknown_types_and_ids_are_refused_with_the_fix(self):
        with self.assertRaises(zorch.MaterializerError) as cm:
            zorch.materializers.for_type(Secret)
        self.assertIn("register_materializer(Secret", str(cm.exception))
        with self.assertRaises(zorch.MaterializerError) as cm:
            zorch.materializers.by_id("nope")
        self.assertIn("'nope'", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
