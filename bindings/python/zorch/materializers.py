"""Materializers: how Python values become artifacts and back.

An artifact in zorch is a file or a directory, stored by content hash.  A
materializer turns a value of some types into one and reads it back.  The
one used for a step output is chosen when the pipeline is built, from the
output's type annotation (or ``output_materializers=`` on the step), and it
is recorded in the run's deployment so that a consumer step, the remote
entrypoint and the client all read the artifact back the same way.

Built in:

=============  =========================  ==============================
id             types                      artifact
=============  =========================  ==============================
``bytes``      bytes, bytearray           the bytes themselves
``str``        str                        UTF-8 text
``json``       dict, list, tuple, int,    JSON text (keys sorted, so equal
               float, bool, None          values give equal artifacts)
``path``       pathlib.Path               a copy of the file or directory;
                                          read back as a Path to it
``pickle``     only types passed to       pickle protocol 4
               ``allow_pickle()``
``auto``       an output with no type     a one-line header naming one of
               annotation (``Any``)       the above, then its bytes
=============  =========================  ==============================

Pickle is never chosen on its own: unpickling runs code, so a type is
pickled (and unpickled) only after ``allow_pickle(T)``.  A user type gets its
own materializer with ``register_materializer(T, M)``.
"""
from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import threading
import typing

from .errors import MaterializerError

_lock = threading.RLock()


def type_name(t) -> str:
    if t is None or t is type(None):
        return "None"
    if isinstance(t, type):
        return f"{t.__module__}.{t.__qualname__}"
    return repr(t)


class Materializer:
    """Base class.  Override either ``save_bytes``/``load_bytes`` (the value
    is one file; zorch writes it without a temporary copy) or
    ``save``/``load`` (the value is written to, and read from, a path: a file
    or a directory).  ``id`` names the materializer in run records: keep it
    stable, and register the materializer under the same id in any program
    that reads its artifacts."""

    id: str = ""
    types: tuple = ()

    def save_bytes(self, value) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def load_bytes(self, data: bytes, type_):  # pragma: no cover - overridden
        raise NotImplementedError

    def save(self, value, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.save_bytes(value))

    def load(self, path: str, type_):
        with open(path, "rb") as f:
            return self.load_bytes(f.read(), type_)

    @classmethod
    def uses_bytes(cls) -> bool:
        return cls.save_bytes is not Materializer.save_bytes

    @classmethod
    def reads_bytes(cls) -> bool:
        return cls.load_bytes is not Materializer.load_bytes and cls.load is Materializer.load


class BytesMaterializer(Materializer):
    id = "bytes"
    types = (bytes, bytearray)

    def save_bytes(self, value):
        return bytes(value)

    def load_bytes(self, data, type_):
        return bytearray(data) if type_ is bytearray else data


class StrMaterializer(Materializer):
    id = "str"
    types = (str,)

    def save_bytes(self, value):
        return value.encode("utf-8")

    def load_bytes(self, data, type_):
        return data.decode("utf-8")


def _restore_tuples(value, t):
    """JSON has no tuple: give back a tuple where the annotation asks for one."""
    origin = typing.get_origin(t) or t
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(t)
        if args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(_restore_tuples(v, a) for v, a in zip(value, args))
        inner = args[0] if args else None
        return tuple(_restore_tuples(v, inner) for v in value)
    return value


class JSONMaterializer(Materializer):
    id = "json"
    types = (dict, list, tuple, int, float, bool, type(None))

    def save_bytes(self, value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"),
                              allow_nan=True).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise MaterializerError(f"value of type {type_name(type(value))} is not JSON: {e}") \
                from e

    def load_bytes(self, data, type_):
        return _restore_tuples(json.loads(data.decode("utf-8")), type_)


class PathMaterializer(Materializer):
    """A file or directory.  Saving copies it into the store (the original
    stays); loading gives a ``pathlib.Path`` to the read-only artifact."""

    id = "path"
    types = (pathlib.PurePath,)

    def save(self, value, path):  # used by the client only; steps copy in C
        src = os.fspath(value)
        if os.path.isdir(src):
            shutil.copytree(src, path)
        else:
            shutil.copyfile(src, path)

    def load(self, path, type_):
        return pathlib.Path(path)


class PickleMaterializer(Materializer):
    """Pickle, for the types a program opted in with ``allow_pickle()``."""

    id = "pickle"

    def save_bytes(self, value):
        if not pickle_allowed(type(value)):
            raise MaterializerError(
                f"{type_name(type(value))} is not allowed to be pickled: call "
                f"zorch.allow_pickle({type(value).__qualname__}) to opt in")
        return pickle.dumps(value, protocol=4)

    def load_bytes(self, data, type_):
        # Unpickling runs code: zorch loads a pickle only where the producing
        # step's output type was allowed (the client checks the type recorded
        # in the run), so allow_pickle(T) also says "I trust this store".
        return pickle.loads(data)


_AUTO_MAGIC = b"zorch-auto "


class AutoMaterializer(Materializer):
    """For outputs without a type annotation: picks a materializer from the
    value's type when the step returns, and records which in a first line
    ``zorch-auto <id>\\n`` so that readers know how to load the rest."""

    id = "auto"

    def save_bytes(self, value):
        m = for_type(type(value), runtime=True)
        if m.id in ("auto", "path") or not m.uses_bytes():
            raise MaterializerError(
                f"an output without a type annotation cannot hold a {type_name(type(value))}: "
                f"annotate the return type so that materializer '{m.id}' is used")
        return _AUTO_MAGIC + m.id.encode() + b"\n" + m.save_bytes(value)

    def load_bytes(self, data, type_):
        if not data.startswith(_AUTO_MAGIC):
            raise MaterializerError("artifact has no 'zorch-auto' header: it was not written "
                                    "by the auto materializer")
        nl = data.index(b"\n")
        mid = data[len(_AUTO_MAGIC):nl].decode()
        return by_id(mid).load_bytes(data[nl + 1:], type_)


# ---- the registry ----------------------------------------------------------

_by_type: dict = {}
_by_id: dict = {}
_pickle_types: set = set()


def register_materializer(t: type, materializer, *, replace: bool = False) -> None:
    """Use ``materializer`` (an instance or a class) for values of type ``t``
    and its subclasses."""
    if isinstance(materializer, type):
        materializer = materializer()
    if not isinstance(materializer, Materializer):
        raise TypeError("a materializer must subclass zorch.Materializer")
    if not materializer.id:
        materializer.id = type_name(type(materializer))
    with _lock:
        old = _by_id.get(materializer.id)
        if old is not None and type(old) is not type(materializer) and not replace:
            raise ValueError(f"materializer id '{materializer.id}' is taken by "
                             f"{type_name(type(old))}")
        _by_id[materializer.id] = materializer
        if t is not None:
            _by_type[t] = materializer


def allow_pickle(*types: type) -> None:
    """Opt in: values of these types (and their subclasses) are stored with pickle."""
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"allow_pickle takes classes, not {t!r}")
        with _lock:
            _pickle_types.add(t)
            _by_type.setdefault(t, _by_id["pickle"])


def pickle_allowed(t: type) -> bool:
    with _lock:
        return any(issubclass(t, a) for a in _pickle_types)


def by_id(mid: str) -> Materializer:
    with _lock:
        m = _by_id.get(mid)
    if m is None:
        raise MaterializerError(f"no materializer '{mid}' is registered in this program: "
                                "register it with zorch.register_materializer() before "
                                "loading the artifact")
    return m


def _is_jsonable_hint(t) -> bool:
    origin = typing.get_origin(t)
    if origin is typing.Union:
        return all(_is_jsonable_hint(a) for a in typing.get_args(t))
    if origin in (dict, list, tuple):
        return True
    if origin is typing.Literal:
        return True
    return False


def for_type(t, *, runtime: bool = False) -> Materializer:
    """The materializer for values of type ``t`` (an annotation)."""
    if t is typing.Any:
        return _by_id["auto"]
    if typing.get_origin(t) is typing.Annotated:
        t = typing.get_args(t)[0]
    if not isinstance(t, type):
        if _is_jsonable_hint(t):
            return _by_id["json"]
        origin = typing.get_origin(t)
        if isinstance(origin, type):
            t = origin
        else:
            raise MaterializerError(f"no materializer for the type annotation {t!r}")
    with _lock:
        for k in t.__mro__:
            m = _by_type.get(k)
            if m is not None:
                return m
    raise MaterializerError(
        f"no materializer for {type_name(t)}: register one with "
        f"zorch.register_materializer({t.__qualname__}, MyMaterializer), or opt in to pickle "
        f"with zorch.allow_pickle({t.__qualname__})")


for _m in (BytesMaterializer(), StrMaterializer(), JSONMaterializer(), PathMaterializer(),
           PickleMaterializer(), AutoMaterializer()):
    _by_id[_m.id] = _m
    for _t in _m.types:
        _by_type[_t] = _m
