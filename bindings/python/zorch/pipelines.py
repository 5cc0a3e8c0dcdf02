"""The ``@step`` and ``@pipeline`` decorators, and running Python steps.

A pipeline function is called once, when the pipeline is built: calling a
step inside it does not run the step but adds it to the pipeline, and
returns placeholders for its outputs that later calls take as inputs
(this is how ZenML pipelines are written).  The pipeline is then a zorch
pipeline of *function steps*, each a ctypes callback into this module, that
runs on the active stack like any other.
"""
from __future__ import annotations

import ast
import ctypes
import hashlib
import inspect
import io
import itertools
import json
import os
import pathlib
import re
import sys
import textwrap
import threading
import traceback
import types
import typing
from ctypes import byref, c_char_p, c_size_t, c_void_p
from dataclasses import dataclass, field

from . import materializers as _mat
from ._lib import BUILD_CB, STEP_FN, RunOptions, argv_array, lib
from .client import Client, Run, get_client
from .errors import InvalidError, MaterializerError, StepFailed, ZorchError, check

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
META_PARAM = "zorch-python"

# ---- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Resources:
    """What a step needs: ``cpu`` cores, ``memory`` (bytes, or "512Mi", "2GiB",
    "1G"), ``gpu`` count and ``gpu_type``.  The local flavor ignores them;
    remote flavors turn them into requests."""

    cpu: float | None = None
    memory: int | str | None = None
    gpu: int = 0
    gpu_type: str | None = None


@dataclass(frozen=True)
class Retry:
    """Retry a failed step ``max_retries`` more times, waiting
    ``delay * backoff**(attempt-1)`` seconds before each (ZenML's StepRetryConfig)."""

    max_retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0


StepRetryConfig = Retry

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
          "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2,
          "mib": 1024**2, "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4}


def parse_memory(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidError(-3, f"memory {value!r} is not a size: give bytes or a number with "
                           "a unit (512Mi, 2GiB, 1G, 100MB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


_SETTING_KEYS = {"enable_cache", "cache", "retry", "retries", "timeout", "resources", "image",
                 "environment", "settings", "version"}


def _norm_settings(where: str, kw: dict) -> dict:
    out = {}
    for k, v in kw.items():
        if k not in _SETTING_KEYS:
            raise TypeError(f"{where}: unknown setting '{k}' (known: "
                            f"{', '.join(sorted(_SETTING_KEYS))})")
        if v is None:
            continue
        if k in ("enable_cache", "cache"):
            out["cache"] = bool(v)
        elif k in ("retry", "retries"):
            if isinstance(v, int) and not isinstance(v, bool):
                v = Retry(max_retries=v)
            elif isinstance(v, dict):
                v = Retry(**v)
            elif not isinstance(v, Retry):
                raise TypeError(f"{where}: retry must be an int, a dict or zorch.Retry")
            out["retry"] = v
        elif k == "timeout":
            out["timeout"] = float(v)
        elif k == "resources":
            if isinstance(v, dict):
                v = Resources(**v)
            elif not isinstance(v, Resources):
                raise TypeError(f"{where}: resources must be a dict or zorch.Resources")
            if v.memory is not None:
                parse_memory(v.memory)  # refuse a bad size now, not when the run starts
            out["resources"] = v
        elif k == "image":
            out["image"] = str(v)
        elif k == "environment":
            out["environment"] = {str(a): str(b) for a, b in dict(v).items()}
        elif k == "settings":
            flavors = {}
            for flavor, conf in dict(v).items():
                if not isinstance(conf, dict):
                    raise TypeError(f"{where}: settings['{flavor}'] must be a dict (the "
                                    "flavor's settings as a JSON object)")
                flavors[str(flavor)] = conf
            out["settings"] = flavors
        elif k == "version":
            out["version"] = str(v)
    return out


def _apply_settings(sp, st: dict) -> None:
    L = lib()
    if "cache" in st:
        check(L.step_set_cache(sp, int(st["cache"])))
    if "retry" in st:
        r = st["retry"]
        check(L.step_set_retry(sp, int(r.max_retries), float(r.delay), float(r.backoff)))
    if "timeout" in st:
        check(L.step_set_timeout(sp, st["timeout"]))
    if "resources" in st:
        r = st["resources"]
        if r.cpu is not None or r.memory is not None:
            check(L.step_set_resources(sp, float(r.cpu or 0),
                                       parse_memory(r.memory) if r.memory is not None else 0))
        if r.gpu:
            check(L.step_set_gpu(sp, int(r.gpu), r.gpu_type.encode() if r.gpu_type else None))
    if "image" in st:
        check(L.step_set_image(sp, st["image"].encode()))
    for k, v in sorted(st.get("environment", {}).items()):
        check(L.step_set_env(sp, k.encode(), v.encode()))
    for flavor, conf in sorted(st.get("settings", {}).items()):
        check(L.step_set_flavor_settings(sp, flavor.encode(), json.dumps(conf).encode()))
    if "version" in st:
        check(L.step_set_version(sp, st["version"].encode()))


# ---- outputs and code versions ------------------------------------------------------


@dataclass
class OutputSpec:
    name: str
    type: typing.Any
    materializer: _mat.Materializer


def _annotated_name(t):
    if typing.get_origin(t) is typing.Annotated:
        for meta in typing.get_args(t)[1:]:
            if isinstance(meta, str):
                return meta
            name = getattr(meta, "name", None)  # ZenML's ArtifactConfig(name=...)
            if isinstance(name, str):
                return name
    return None


def _unannotated(t):
    return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t


def _output_specs(func, hints, overrides, resolve=True) -> list[OutputSpec]:
    ret = hints.get("return", inspect.Signature.empty)
    if ret is None or ret is type(None):
        items = []
    elif ret is inspect.Signature.empty:
        items = [("output", typing.Any)]
    elif _annotated_name(ret) is None and typing.get_origin(ret) in (tuple, typing.Tuple) and \
            typing.get_args(ret) and typing.get_args(ret)[-1] is not Ellipsis:
        args = typing.get_args(ret)
        items = [(_annotated_name(a) or f"output_{i}", _unannotated(a)) for i, a in enumerate(args)]
    else:
        items = [(_annotated_name(ret) or "output", _unannotated(ret))]
    specs = []
    for name, t in items:
        if not _NAME_RE.match(name):
            raise InvalidError(-3, f"step '{func.__name__}': output name '{name}' is not valid: "
                               "names start with a letter and have only letters, digits, '_' "
                               "and '-' (at most 63)")
        if isinstance(overrides, dict) and name in overrides:
            m = overrides[name]
        elif overrides is not None and not isinstance(overrides, dict):
            m = overrides
        elif resolve:
            m = _mat.for_type(t)
        else:
            m = None  # looked up when the pipeline is built
        if isinstance(m, type):
            m = m()
            if not m.id:
                m.id = _mat.type_name(type(m))
            with _mat._lock:
                _mat._by_id.setdefault(m.id, m)
        specs.append(OutputSpec(name, t, m))
    if len({s.name for s in specs}) != len(specs):
        raise InvalidError(-3, f"step '{func.__name__}': two outputs have the same name")
    return specs


def _code_digest(code: types.CodeType, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_digest(c, h)
        else:
            h.update(repr(c).encode())


def _source_without_decorators(func) -> str:
    src = textwrap.dedent(inspect.getsource(func))
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return "\n".join(src.splitlines()[node.lineno - 1:])  # from the `def` line
    return src


def code_version(func) -> str:
    """A step's code version: the SHA-256 of the function's source text from
    its ``def`` line on (decorators and their settings are left out, as
    settings are for C steps), or of its bytecode when there is no source.
    Any change to the function's signature or body changes it, and so
    misses the cache."""
    h = hashlib.sha256()
    try:
        src = _source_without_decorators(func)
        h.update(src.encode())
        kind = "py-src"
    except (OSError, TypeError):
        _code_digest(func.__code__, h)
        h.update(repr(func.__defaults__).encode())
        kind = "py-code"
    return f"{kind}:{h.hexdigest()[:40]}"


# ---- build-time placeholders ----------------------------------------------------


class _Placeholder:
    _what = "this value"

    def _refuse(self, *a, **k):
        raise TypeError(f"{self._what} is only known when the run executes: pass it to a step "
                        "(a pipeline function only wires steps together)")

    __bool__ = __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __lt__ = __le__ = __gt__ = __ge__ = __iter__ = __len__ = _refuse
    __getitem__ = __float__ = __int__ = __index__ = _refuse


class StepOutput(_Placeholder):
    """An output of a step call inside a pipeline function."""

    def __init__(self, invocation: "_Invocation", spec: OutputSpec):
        self.invocation = invocation
        self.spec = spec
        self._what = f"output '{spec.name}' of step '{invocation.name}'"

    def __repr__(self):
        return f"<StepOutput {self.invocation.name}.{self.spec.name}>"


class PipelineParam(_Placeholder):
    """A pipeline parameter inside a pipeline function."""

    def __init__(self, name: str):
        self.name = name
        self._what = f"pipeline parameter '{name}'"

    def __repr__(self):
        return f"<PipelineParam {self.name}>"


@dataclass
class _Invocation:
    step: "Step"
    name: str
    bindings: dict = field(default_factory=dict)  # arg -> ("input", out) | ("param", p) | ("literal", v)
    after: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


_building = threading.local()


class _Builder:
    def __init__(self, pipeline: "Pipeline"):
        self.pipeline = pipeline
        self.invocations: list[_Invocation] = []
        self.names: set[str] = set()
        self.next_suffix: dict[str, int] = {}

    def add(self, step: "Step", args, kwargs) -> typing.Any:
        explicit = kwargs.pop("id", None)
        after = kwargs.pop("after", None)
        name = explicit or step.name
        if explicit is None:
            n = self.next_suffix.get(step.name, 2)  # not a scan from 2: pipelines of 1000s of calls
            while name in self.names:
                name = f"{step.name}_{n}"
                n += 1
            self.next_suffix[step.name] = n
        elif name in self.names:
            raise InvalidError(-3, f"pipeline '{self.pipeline.name}': two steps have id '{name}'")
        if not _NAME_RE.match(name):
            raise InvalidError(-3, f"step name '{name}' is not valid: names start with a letter "
                               "and have only letters, digits, '_' and '-' (at most 63)")
        inv = _Invocation(step, name)
        try:
            bound = step.signature.bind_partial(*args, **kwargs)  # missing ones: below
        except TypeError as e:
            raise TypeError(f"step '{name}': {e}") from None
        for arg, value in bound.arguments.items():
            kind = step.signature.parameters[arg].kind
            if kind == inspect.Parameter.VAR_POSITIONAL:
                raise TypeError(f"step '{name}': *{arg} cannot be wired; name each input")
            if kind == inspect.Parameter.VAR_KEYWORD:
                for k, v in value.items():
                    inv.bindings[k] = self._bind(name, k, v)
            else:
                inv.bindings[arg] = self._bind(name, arg, value)
        for param in step.signature.parameters.values():
            if param.name not in bound.arguments and param.default is inspect.Parameter.empty \
                    and param.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                           inspect.Parameter.VAR_KEYWORD) \
                    and not step._is_context_arg(param.name):
                raise TypeError(f"step '{name}': argument '{param.name}' is missing")
        for a in ([] if after is None else after if isinstance(after, (list, tuple)) else [after]):
            if isinstance(a, Step):
                a = a.name
            elif isinstance(a, StepOutput):
                a = a.invocation.name
            inv.after.append(str(a))
        inv.outputs = [StepOutput(inv, s) for s in step.outputs]
        self.invocations.append(inv)
        self.names.add(name)
        if not inv.outputs:
            return None
        if len(inv.outputs) == 1:
            return inv.outputs[0]
        return tuple(inv.outputs)

    def _bind(self, step_name, arg, value):
        if isinstance(value, StepOutput):
            return ("input", value)
        if isinstance(value, PipelineParam):
            return ("param", value.name)
        if isinstance(value, tuple) and value and all(isinstance(v, StepOutput) for v in value):
            raise TypeError(f"step '{step_name}': argument '{arg}' gets all outputs of step "
                            f"'{value[0].invocation.name}': pick one (unpack the tuple)")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise TypeError(f"step '{step_name}': argument '{arg}' is a "
                            f"{_mat.type_name(type(value))}, which is neither a step output, a "
                            "pipeline parameter nor a JSON value") from None
        return ("literal", value)


# ---- steps -------------------------------------------------------------------------


class StepContext:
    """What a running step knows about itself (``zorch.get_step_context()``)."""

    def __init__(self, ctx, invocation):
        self._ctx = ctx
        self.invocation = invocation

    @property
    def step_name(self) -> str:
        return lib().ctx_step_name(self._ctx).decode()

    @property
    def run_id(self) -> str:
        return lib().ctx_run_id(self._ctx).decode()

    @property
    def attempt(self) -> int:
        return lib().ctx_attempt(self._ctx)

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled or this attempt timed out: return soon."""
        return bool(lib().ctx_cancelled(self._ctx))

    def log(self, message: str) -> None:
        data = (message if message.endswith("\n") else message + "\n").encode()
        check(lib().ctx_log_write(self._ctx, data, len(data)))


_tls = threading.local()


def get_step_context() -> StepContext:
    ctx = getattr(_tls, "step", None)
    if ctx is None:
        raise RuntimeError("get_step_context() is only available while a step runs")
    return ctx


class Step:
    """A function decorated with ``@step``.  Called inside a pipeline function
    it adds a step; called anywhere else it is the plain function."""

    def __init__(self, func, *, name=None, output_materializers=None, **settings):
        self.func = func
        self.name = name or func.__name__
        if not _NAME_RE.match(self.name):
            raise InvalidError(-3, f"step name '{self.name}' is not valid: names start with a "
                               "letter and have only letters, digits, '_' and '-' (at most 63); "
                               "give one with @step(name=...)")
        self.signature = inspect.signature(func)
        try:
            self.hints = typing.get_type_hints(func, include_extras=True)
        except Exception:  # noqa: BLE001 - unresolvable forward references
            self.hints = dict(getattr(func, "__annotations__", {}))
        self._output_materializers = output_materializers
        # output names now; materializers when a pipeline is built, so that
        # register_materializer()/allow_pickle() may come after the decorator
        self.outputs = _output_specs(func, self.hints, output_materializers, resolve=False)
        self._resolved = None
        self.settings = _norm_settings(f"step '{self.name}'", settings)
        self._settings_kw = settings
        self._version = None
        self.__wrapped__ = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__module__ = getattr(func, "__module__", None)

    def resolved_outputs(self) -> list[OutputSpec]:
        """The outputs with their materializers (MaterializerError when a type has none)."""
        if self._resolved is None:
            self._resolved = _output_specs(self.func, self.hints, self._output_materializers)
        return self._resolved

    def _is_context_arg(self, arg):
        return self.hints.get(arg) is StepContext

    @property
    def code_version(self) -> str:
        if self._version is None:
            self._version = code_version(self.func)
        return self._version

    def with_options(self, **options) -> "Step":
        """A copy of the step with some settings changed."""
        kw = dict(self._settings_kw)
        name = options.pop("name", self.name)
        om = options.pop("output_materializers", self._output_materializers)
        kw.update(options)
        return Step(self.func, name=name, output_materializers=om, **kw)

    configure = with_options

    def __call__(self, *args, **kwargs):
        builder = getattr(_building, "builder", None)
        if builder is None:
            return self.func(*args, **kwargs)
        return builder.add(self, args, kwargs)

    def __repr__(self):
        return f"<zorch step {self.name}>"


def step(_func=None, *, name: str | None = None, enable_cache: bool | None = None,
         cache: bool | None = None, retry=None, retries=None, timeout: float | None = None,
         resources=None, image: str | None = None, environment: dict | None = None,
         settings: dict | None = None, version: str | None = None, output_materializers=None):
    """Make a function a pipeline step.  Usable bare (``@step``) or with settings::

        @step(retry=Retry(max_retries=2, delay=1), timeout=600,
              resources=Resources(cpu=2, memory="4GiB"), image="python:3.11",
              environment={"OMP_NUM_THREADS": "2"},
              settings={"kubernetes": {"node_selector": {"pool": "gpu"}}})
        def train(data: dict, epochs: int = 10) -> Annotated[bytes, "model"]: ...
    """
    kw = dict(enable_cache=enable_cache, cache=cache, retry=retry, retries=retries,
              timeout=timeout, resources=resources, image=image, environment=environment,
              settings=settings, version=version)

    def wrap(func):
        return Step(func, name=name, output_materializers=output_materializers, **kw)

    return wrap(_func) if _func is not None else wrap


# ---- running Python steps: the ctypes callback ------------------------------------

_payloads: dict[int, "_Invocation"] = {}
_payload_ids = itertools.count(1)
_payload_lock = threading.Lock()


class _StepStream(io.TextIOBase):
    """sys.stdout/sys.stderr while steps run: text written on a thread that
    runs a step goes to that step's log, anything else to the real stream."""

    def __init__(self, real):
        self.real = real

    def write(self, s):
        st = getattr(_tls, "step", None)
        if st is None:
            return self.real.write(s)
        data = s.encode("utf-8", "replace")
        lib().ctx_log_write(st._ctx, data, len(data))
        return len(s)

    def flush(self):
        if getattr(_tls, "step", None) is None:
            self.real.flush()

    def fileno(self):
        return self.real.fileno()

    def isatty(self):
        return False if getattr(_tls, "step", None) else self.real.isatty()

    @property
    def encoding(self):
        return getattr(self.real, "encoding", "utf-8")


_streams_installed = False


def _install_streams():
    global _streams_installed
    if _streams_installed:
        return
    _streams_installed = True
    if not isinstance(sys.stdout, _StepStream) and sys.stdout is not None:
        sys.stdout = _StepStream(sys.stdout)
    if not isinstance(sys.stderr, _StepStream) and sys.stderr is not None:
        sys.stderr = _StepStream(sys.stderr)


def _ctx_json(ctx, name):
    out = c_char_p()
    check(lib().ctx_param(ctx, name.encode(), byref(out)))
    return json.loads(out.value.decode())


def _load_input(ctx, arg, out: dict, annotation):
    L = lib()
    if annotation in (pathlib.Path, pathlib.PurePath) or out["materializer"] == "path":
        p = c_char_p()
        check(L.ctx_input_path(ctx, arg.encode(), byref(p)))
        return pathlib.Path(p.value.decode())
    m = _mat.by_id(out["materializer"])
    hint = annotation if annotation is not inspect.Parameter.empty else None
    if m.reads_bytes():
        data = c_void_p()
        size = c_size_t()
        check(L.ctx_input(ctx, arg.encode(), byref(data), byref(size)))
        raw = ctypes.string_at(data.value, size.value) if size.value else b""
        return m.load_bytes(raw, hint)
    p = c_char_p()
    check(L.ctx_input_path(ctx, arg.encode(), byref(p)))
    return m.load(p.value.decode(), hint)


def _save_output(ctx, spec: OutputSpec, value):
    L = lib()
    m = spec.materializer
    name = spec.name.encode()
    if m.id == "path":
        if not isinstance(value, (str, os.PathLike)):
            raise MaterializerError(f"output '{spec.name}' is annotated as a path but the step "
                                    f"returned a {_mat.type_name(type(value))}")
        check(L.ctx_output_file(ctx, name, os.fspath(value).encode()))
    elif m.uses_bytes():
        data = m.save_bytes(value)
        if not isinstance(data, (bytes, bytearray)):
            raise MaterializerError(f"materializer '{m.id}' returned {type(data).__name__}, "
                                    "not bytes")
        check(L.ctx_output(ctx, name, bytes(data), len(data)))
    else:
        p = c_char_p()
        check(L.ctx_output_path(ctx, name, byref(p)))
        m.save(value, p.value.decode())


def _producer_materializer(out: "StepOutput") -> _mat.Materializer:
    for spec in out.invocation.step.resolved_outputs():
        if spec.name == out.spec.name:
            return spec.materializer
    raise MaterializerError(f"step '{out.invocation.name}' has no output '{out.spec.name}'")


def _execute(ctx, inv: _Invocation) -> None:
    step_ = inv.step
    values = {}
    for arg, (kind, what) in inv.bindings.items():
        if kind == "input":
            meta = {"materializer": _producer_materializer(what).id}
            ann = step_.hints.get(arg, inspect.Parameter.empty)
            values[arg] = _load_input(ctx, arg, meta, _unannotated(ann))
        elif kind == "param":
            values[arg] = _ctx_json(ctx, what)
        else:
            values[arg] = _ctx_json(ctx, arg) if _NAME_RE.match(arg) else what
    args, kwargs = [], {}
    for p in step_.signature.parameters.values():
        if step_._is_context_arg(p.name):
            values[p.name] = _tls.step
        if p.name not in values:
            continue
        if p.kind == inspect.Parameter.POSITIONAL_ONLY:
            args.append(values.pop(p.name))
        elif p.kind != inspect.Parameter.VAR_KEYWORD:
            kwargs[p.name] = values.pop(p.name)
    kwargs.update(values)  # the rest go to **kwargs
    result = step_.func(*args, **kwargs)
    outs = step_.resolved_outputs()
    if not outs:
        return
    if len(outs) == 1:
        results = [result]
    else:
        if not isinstance(result, (tuple, list)) or len(result) != len(outs):
            raise TypeError(f"step '{inv.name}' declares {len(outs)} outputs "
                            f"({', '.join(o.name for o in outs)}) but returned "
                            f"{'a ' + type(result).__name__ if not isinstance(result, (tuple, list)) else str(len(result)) + ' values'}")
        results = list(result)
    for spec, value in zip(outs, results):
        _save_output(ctx, spec, value)


@STEP_FN
def _trampoline(ctx, payload):
    """Runs on a zorch worker thread; ctypes takes the GIL for it.  Nothing
    may escape: an exception fails the step, its traceback goes to the log."""
    try:
        inv = _payloads.get(payload or 0)
        if inv is None:
            msg = b"zorch: this Python program has no step for this callback\n"
            lib().ctx_log_write(ctx, msg, len(msg))
            return -15
        _tls.step = StepContext(ctx, inv)
        try:
            _execute(ctx, inv)
            return 0
        finally:
            _tls.step = None
    except BaseException as e:  # noqa: BLE001 - includes SystemExit, KeyboardInterrupt
        try:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            data = tb.encode("utf-8", "replace")
            lib().ctx_log_write(ctx, data, len(data))
            summary = "".join(traceback.format_exception_only(type(e), e)).strip()
            lib().ctx_fail(ctx, b"%s", ("Python exception: " + summary).encode("utf-8",
                                                                                 "replace"))
        except BaseException:  # noqa: BLE001
            pass
        return -1


# ---- pipelines --------------------------------------------------------------------


class _Built:
    """A zorch pipeline built from a Python pipeline, with its step payloads."""

    def __init__(self, ptr, ids):
        self.ptr = ptr
        self.ids = ids

    def release(self):
        """Hand the zorch_pipeline to zorch (the entrypoint frees it)."""
        ptr, self.ptr = self.ptr, None
        return ptr

    def __del__(self):
        try:
            if self.ptr is not None and not sys.is_finalizing():
                lib().pipeline_free(self.ptr)
            self.ptr = None
            with _payload_lock:
                for i in self.ids:
                    _payloads.pop(i, None)
        except Exception:  # noqa: BLE001
            pass


def _entry_target(func):
    """How `python3 -m zorch` finds this pipeline again: (target, sys.path entry)."""
    mod = sys.modules.get(func.__module__)
    qual = func.__qualname__
    file = getattr(mod, "__file__", None)
    if func.__module__ in ("__main__", "__zorch_main__") and file:
        return f"{os.path.abspath(file)}:{qual}", None
    path = None
    if file:
        path = os.path.dirname(os.path.abspath(file))
        for _ in range(func.__module__.count(".") + (os.path.basename(file).startswith("__init__."))):
            path = os.path.dirname(path)
    return f"{func.__module__}:{qual}", path


def _libzorch_path():
    """The file of the loaded libzorch (for the image), or None."""
    path = getattr(lib(), "path", None)
    if path and os.sep in path:
        return os.path.abspath(path)
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split(None, 5)[-1].strip()
                if os.path.basename(p).startswith("libzorch.so"):
                    return p
    except OSError:
        pass
    return None


def _within(path, dirs):
    return any(path == d or path.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def _image_paths(entry_target, entry_path):
    """What `python3 -m zorch` needs in an image built from the host: the
    interpreter, its standard library (with lib-dynload), libzorch, this
    package, the pipeline's script, and the top-level packages and modules
    of everything imported that lives outside these (the pipeline's own
    module or package among them): files and directories, not whole
    sys.path entries (a script's directory may be a home directory)."""
    import sysconfig
    out = []

    def add(p):
        if p and os.path.exists(p) and p not in out:
            out.append(p)

    exe = os.environ.get("ZORCH_PYTHON") or sys.executable
    if exe:
        add(os.path.abspath(exe))
        add(os.path.realpath(exe))
    paths = sysconfig.get_paths()
    std = []
    for key in ("stdlib", "platstdlib"):
        d = paths.get(key)
        if d and os.path.isdir(d) and not _within(os.path.realpath(d), std):
            std.append(os.path.realpath(d))
            add(d)
    add(_libzorch_path())
    pkg = os.path.dirname(os.path.abspath(__file__))
    add(pkg)
    if not entry_path:  # a script; a module and its siblings come with the imported ones below
        add(os.path.abspath(entry_target.rsplit(":", 1)[0]))
    covered = std + [q for p in out if os.path.isdir(p) for q in (p, os.path.realpath(p))]
    for name, mod in sorted(sys.modules.items()):
        if "." in name or mod is None:
            continue
        locs = list(getattr(mod, "__path__", None) or [])
        if not locs:
            f = getattr(mod, "__file__", None)
            if f:
                locs = [f]
        for loc in locs:
            if not isinstance(loc, str) or not os.path.isabs(loc):
                continue
            if _within(loc, covered) or _within(os.path.realpath(loc), covered):
                continue
            add(loc)
            covered.append(os.path.realpath(loc))
    return out


_RUN_FLAGS = {"no_cache": 1}
_FAILURE_MODES = {"continue": 0, "continue_on_failure": 0, "stop": 1, "stop_on_failure": 1,
                  "fail_fast": 2}


class Pipeline:
    """A function decorated with ``@pipeline``.  Calling it builds the
    pipeline, runs it on the active stack (or ``stack=``), waits, and returns
    the ``Run``; a failed run raises ``StepFailed`` (its ``run`` attribute is
    the run, to read the failed step's log)."""

    def __init__(self, func, *, name=None, run_options=None, **settings):
        self.func = func
        self.name = name or func.__name__
        if not _NAME_RE.match(self.name):
            raise InvalidError(-3, f"pipeline name '{self.name}' is not valid: give one with "
                               "@pipeline(name=...)")
        self.signature = inspect.signature(func)
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or not _NAME_RE.match(p.name):
                raise InvalidError(-3, f"pipeline '{self.name}': parameter '{p.name}' cannot be "
                                   "a pipeline param (named params that start with a letter only)")
            if p.default is not p.empty:
                try:
                    json.dumps(p.default)
                except (TypeError, ValueError):
                    raise InvalidError(-3, f"pipeline '{self.name}': the default of parameter "
                                       f"'{p.name}' is not a JSON value") from None
        self._settings_kw = settings
        self.settings = _norm_settings(f"pipeline '{self.name}'", settings)
        self.run_options = dict(run_options or {})
        self.entry_target, self.entry_path = _entry_target(func)
        self.__wrapped__ = func
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__qualname__ = getattr(func, "__qualname__", self.name)
        self.__module__ = getattr(func, "__module__", None)

    def with_options(self, *, stack=None, run_name=None, client=None, no_cache=None,
                     max_parallel=None, failure_mode=None, raise_on_failure=None,
                     **settings) -> "Pipeline":
        """A copy with run options (stack, run_name, client, no_cache,
        max_parallel, failure_mode, raise_on_failure) or pipeline-wide step
        settings (enable_cache, retry, timeout, resources, image,
        environment, settings) changed."""
        ro = dict(self.run_options)
        for k, v in dict(stack=stack, run_name=run_name, client=client, no_cache=no_cache,
                         max_parallel=max_parallel, failure_mode=failure_mode,
                         raise_on_failure=raise_on_failure).items():
            if v is not None:
                ro[k] = v
        kw = dict(self._settings_kw)
        kw.update(settings)
        p = Pipeline(self.func, name=self.name, run_options=ro, **kw)
        p.entry_target, p.entry_path = self.entry_target, self.entry_path
        return p

    def entrypoint_command(self) -> list[str]:
        """The command a remote flavor runs for one step (before the
        ``--zorch-step ...`` arguments zorch appends)."""
        argv = [os.environ.get("ZORCH_PYTHON") or sys.executable or "python3", "-m", "zorch",
                "--zorch-target", self.entry_target]
        if self.entry_path:
            argv += ["--zorch-path", self.entry_path]
        return argv

    def image_paths(self) -> list[str]:
        """The files and directories an image built from the host needs to
        run this pipeline's steps with ``python3 -m zorch`` (the interpreter,
        its standard library, libzorch, the zorch package, the pipeline's
        script, and the top-level packages and modules of everything
        imported outside the standard library, the pipeline's own among them).  local_docker gets them as its ``image_add`` setting;
        for other flavors: ``zorch image build NAME --program PYTHON --add P...``."""
        return _image_paths(self.entry_target, self.entry_path)

    def _trace(self):
        builder = _Builder(self)
        if getattr(_building, "builder", None) is not None:
            raise RuntimeError(f"pipeline '{self.name}' is called while another pipeline is being "
                               "built: nested pipelines are not supported")
        _building.builder = builder
        try:
            self.func(**{p: PipelineParam(p) for p in self.signature.parameters})
        finally:
            _building.builder = None
        if not builder.invocations:
            raise InvalidError(-3, f"pipeline '{self.name}' calls no step")
        return builder

    def build(self) -> _Built:
        """Build the zorch pipeline (for running it, or for the step entrypoint)."""
        _install_streams()
        builder = self._trace()
        L = lib()
        ptr = c_void_p()
        check(L.pipeline_new(byref(ptr), self.name.encode()))
        built = _Built(ptr, [])
        for p in self.signature.parameters.values():
            default = None if p.default is p.empty else p.default
            check(L.pipeline_add_param(ptr, p.name.encode(), json.dumps(default).encode()))
        _apply_settings(L.pipeline_defaults(ptr), self._settings_with_image_paths(builder))
        for inv in builder.invocations:
            with _payload_lock:
                pid = next(_payload_ids)
                _payloads[pid] = inv
            built.ids.append(pid)
            sp = c_void_p()
            check(L.pipeline_add_function_step(byref(sp), ptr, inv.name.encode(), _trampoline,
                                               c_void_p(pid)))
            outputs = inv.step.resolved_outputs()
            meta = {"function": inv.step.func.__qualname__,
                    "outputs": {o.name: {"materializer": o.materializer.id,
                                         "type": _mat.type_name(o.type)}
                                for o in outputs},
                    "args": {}}
            for o in outputs:
                check(L.step_add_output(sp, o.name.encode()))
            for arg, (kind, what) in sorted(inv.bindings.items()):
                if kind == "input":
                    check(L.step_add_input(sp, arg.encode(), what.invocation.name.encode(),
                                           what.spec.name.encode()))
                    meta["args"][arg] = {"input": f"{what.invocation.name}.{what.spec.name}",
                                         "materializer": _producer_materializer(what).id}
                elif kind == "param":
                    check(L.step_use_param(sp, what.encode()))
                    meta["args"][arg] = {"param": what}
                elif _NAME_RE.match(arg):
                    check(L.step_set_param(sp, arg.encode(), json.dumps(what).encode()))
                else:
                    meta["args"][arg] = {"value": what}
            for a in inv.after:
                check(L.step_after(sp, a.encode()))
            check(L.step_set_param(sp, META_PARAM.encode(),
                                   json.dumps(meta, sort_keys=True).encode()))
            check(L.step_set_version(sp, inv.step.code_version.encode()))
            _apply_settings(sp, inv.step.settings)
        if "zorch_pipeline_set_entrypoint" not in L.missing:
            check(L.pipeline_set_entrypoint(ptr, argv_array(self.entrypoint_command())))
        check(L.pipeline_validate(ptr))
        return built

    def _settings_with_image_paths(self, builder) -> dict:
        """The pipeline defaults plus local_docker's image_add of
        image_paths() when a step may run in the image built from the host
        (no image named for the pipeline or for every step)."""
        st = self.settings
        named = lambda s: "image" in s or "image" in s.get("settings", {}).get("local_docker", {})
        if named(st) or all(named(inv.step.settings) for inv in builder.invocations):
            return st
        st = dict(st)
        flavors = dict(st.get("settings", {}))
        ld = dict(flavors.get("local_docker", {}))
        ld["image_add"] = list(ld.get("image_add", [])) + [
            p for p in self.image_paths() if p not in ld.get("image_add", [])]
        flavors["local_docker"] = ld
        st["settings"] = flavors
        return st

    def _params_json(self, args, kwargs):
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"pipeline '{self.name}': {e}") from None
        for p in self.signature.parameters.values():
            if p.default is p.empty and p.name not in bound.arguments:
                raise TypeError(f"pipeline '{self.name}': parameter '{p.name}' has no default: "
                                "pass a value")
        try:
            return json.dumps(dict(bound.arguments)) if bound.arguments else None
        except (TypeError, ValueError):
            raise TypeError(f"pipeline '{self.name}': parameter values must be JSON values") \
                from None

    def start(self, *args, **kwargs) -> Run:
        """Start a run and return at once (``run.wait()`` waits for it)."""
        ro = self.run_options
        client = ro.get("client") or get_client()
        params = self._params_json(args, kwargs)
        built = self.build()
        L = lib()
        opts = RunOptions()
        check(L.run_options_init(byref(opts), 1))
        opts.run_name = ro["run_name"].encode() if ro.get("run_name") else None
        opts.stack = ro["stack"].encode() if ro.get("stack") else None
        opts.params_json = params.encode() if params else None
        fm = ro.get("failure_mode", 0)
        opts.failure_mode = _FAILURE_MODES[fm] if isinstance(fm, str) else int(fm)
        opts.max_parallel = int(ro.get("max_parallel") or 0)
        opts.flags = 1 if ro.get("no_cache") else 0
        ptr = c_void_p()
        check(L.run_start(byref(ptr), client.handle, built.ptr, byref(opts)))
        run = Run(client, ptr)
        run._built = built  # the step payloads live as long as the run handle
        return run

    def __call__(self, *args, **kwargs) -> Run:
        run = self.start(*args, **kwargs)
        try:
            _wait(run, None)
        except StepFailed as e:
            if self.run_options.get("raise_on_failure", True):
                raise
        return run

    def __repr__(self):
        return f"<zorch pipeline {self.name}>"


def pipeline(_func=None, *, name: str | None = None, enable_cache: bool | None = None,
             retry=None, timeout: float | None = None, resources=None, image: str | None = None,
             environment: dict | None = None, settings: dict | None = None):
    """Make a function a pipeline.  Its parameters are the pipeline's params
    (defaults from the signature, values from the call); the settings given
    here apply to every step that does not set its own."""
    kw = dict(enable_cache=enable_cache, retry=retry, timeout=timeout, resources=resources,
              image=image, environment=environment, settings=settings)

    def wrap(func):
        return Pipeline(func, name=name, **kw)

    return wrap(_func) if _func is not None else wrap


def _wait(run: Run, timeout: float | None) -> None:
    """Wait in short slices, so that Ctrl-C reaches Python: it cancels the run
    (recorded as stopped) and is raised again once the run has stopped."""
    import time
    L = lib()
    deadline = None if timeout is None else time.monotonic() + timeout
    with run._lock:
        try:
            while True:
                slice_ms = 200
                if deadline is not None:
                    left = deadline - time.monotonic()
                    slice_ms = max(0, min(slice_ms, int(left * 1000)))
                rc = L.run_wait(run.handle, slice_ms)
                if rc == -10 and (deadline is None or time.monotonic() < deadline):
                    continue
                try:
                    check(rc)
                finally:
                    run._snapshot()
                return
        except KeyboardInterrupt:
            L.run_cancel(run.handle)
            L.run_wait(run.handle, -1)
            run._snapshot()
            raise
        except ZorchError as e:
            e.run = run
            raise
