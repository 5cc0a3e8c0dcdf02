"""The client: stacks, flavors and runs of one zorch home."""
from __future__ import annotations

import ctypes
import json
import logging
import sys
import threading
import weakref
from ctypes import byref, c_size_t, c_void_p
from dataclasses import dataclass

from . import materializers as _mat
from ._lib import LOG_CB, ClientOptions, lib, take_string
from .errors import MaterializerError, NotFoundError, check

_log = logging.getLogger("zorch")
_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}


@LOG_CB
def _log_cb(level, domain, message, payload):
    # Called from any zorch thread; must not call zorch.  Never raises.
    try:
        _log.log(_LEVELS.get(level, logging.INFO), "%s: %s",
                 (domain or b"zorch").decode("utf-8", "replace"),
                 (message or b"").decode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001 - nothing may escape into C
        pass


def _enc(s):
    return None if s is None else str(s).encode()


def _dec(b):
    return None if b is None else b.decode("utf-8", "replace")


def _json_out(fn, *args):
    out = c_void_p()
    check(fn(byref(out), *args))
    return json.loads(take_string(out).decode())


STATUS_NAMES = ("pending", "running", "completed", "failed", "cached", "skipped", "stopped",
                "retrying")


class Client:
    """One zorch home: its configuration, stacks, flavor plugins and runs.

    ``home``: the directory (default: ``$ZORCH_HOME``, else
    ``$XDG_DATA_HOME/zorch``, else ``~/.local/share/zorch``).  zorch's own
    log lines go to the Python logger ``"zorch"``.
    """

    def __init__(self, home: str | None = None, *, plugin_path: str | None = None,
                 log_level: int = 0):
        self._lock = threading.RLock()
        self._ptr = None
        self._live_runs = 0        # zorch_client_free() only after every run is freed
        self._close_pending = False
        L = lib()
        opts = ClientOptions()
        check(L.client_options_init(byref(opts), 1))
        opts.home = _enc(home)
        opts.plugin_path = _enc(plugin_path)
        opts.log_cb = _log_cb
        opts.log_level = log_level
        ptr = c_void_p()
        check(L.client_new(byref(ptr), byref(opts)))
        self._ptr = ptr

    def close(self):
        """Free the client.  Runs opened from it keep it alive until they are freed."""
        with self._lock:
            if self._live_runs > 0:
                self._close_pending = True
                return
            if self._ptr is not None and not sys.is_finalizing():
                lib().client_free(self._ptr)
            self._ptr = None

    def _run_opened(self):
        with self._lock:
            self._live_runs += 1

    def _run_closed(self):
        with self._lock:
            self._live_runs -= 1
            if self._live_runs == 0 and self._close_pending:
                self._close_pending = False
                self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        if self._ptr is None:
            raise ValueError("the zorch client is closed")
        return self._ptr

    @property
    def home(self) -> str:
        return _dec(lib().client_home(self.handle))

    # ---- flavors ------------------------------------------------------------
    def flavors(self, type: str | None = None) -> list[dict]:
        """Registered flavors: dicts with type, name, integration, description, plugin, path."""
        return _json_out(lib().flavor_list, self.handle, _enc(type))

    def describe_flavor(self, name: str, type: str = "orchestrator") -> dict:
        return _json_out(lib().flavor_describe, self.handle, _enc(type), _enc(name))

    def flavor_problems(self) -> list[dict]:
        return _json_out(lib().flavor_problems, self.handle)

    # ---- components and stacks ---------------------------------------------
    def register_component(self, type: str, name: str, flavor: str, config: dict | None = None,
                           *, replace: bool = False) -> None:
        with self._lock:
            check(lib().component_register(self.handle, _enc(type), _enc(name), _enc(flavor),
                                           _enc(json.dumps(config or {})), int(replace)))

    def delete_component(self, type: str, name: str) -> None:
        with self._lock:
            check(lib().component_delete(self.handle, _enc(type), _enc(name)))

    def components(self, type: str | None = None) -> list[dict]:
        return _json_out(lib().component_list, self.handle, _enc(type))

    def register_stack(self, name: str, orchestrator: str, artifact_store: str | None = None,
                       *, replace: bool = False, activate: bool = False) -> None:
        with self._lock:
            check(lib().stack_register(self.handle, _enc(name), _enc(orchestrator),
                                       _enc(artifact_store), int(replace)))
            if activate:
                self.activate_stack(name)

    def delete_stack(self, name: str) -> None:
        with self._lock:
            check(lib().stack_delete(self.handle, _enc(name)))

    def stacks(self) -> list[dict]:
        """All stacks: dicts with name, orchestrator, artifact_store, active."""
        return _json_out(lib().stack_list, self.handle)

    def describe_stack(self, name: str | None = None) -> dict:
        return _json_out(lib().stack_describe, self.handle, _enc(name))

    @property
    def active_stack(self) -> str:
        out = c_void_p()
        check(lib().stack_get_active(byref(out), self.handle))
        return take_string(out).decode()

    def activate_stack(self, name: str) -> None:
        """Make ``name`` the active stack (saved in the home's config.json)."""
        with self._lock:
            check(lib().stack_set_active(self.handle, _enc(name)))

    # ---- runs -----------------------------------------------------------------
    def runs(self, pipeline: str | None = None) -> list["RunSummary"]:
        """Runs in the active stack's artifact store, newest first."""
        L = lib()
        lst = c_void_p()
        check(L.run_list_load(byref(lst), self.handle, _enc(pipeline)))
        try:
            return [RunSummary(self, _dec(L.run_list_id(lst, i)), _dec(L.run_list_name(lst, i)),
                               _dec(L.run_list_pipeline(lst, i)),
                               STATUS_NAMES[L.run_list_status(lst, i)],
                               L.run_list_started_at(lst, i), L.run_list_finished_at(lst, i))
                    for i in range(L.run_list_count(lst))]
        finally:
            L.run_list_free(lst)

    def get_run(self, id_or_name: str) -> "Run":
        """Load a run by id or by name."""
        ptr = c_void_p()
        check(lib().run_open(byref(ptr), self.handle, _enc(id_or_name)))
        return Run(self, ptr)


@dataclass(frozen=True)
class RunSummary:
    client: Client
    id: str
    name: str
    pipeline: str
    status: str
    started_at: float
    finished_at: float

    def open(self) -> "Run":
        return self.client.get_run(self.id)


@dataclass(frozen=True)
class OutputInfo:
    name: str
    digest: str
    size: int
    kind: str  # "file" or "dir"


class StepRun:
    """A step of a run, as of the run's last refresh."""

    def __init__(self, run: "Run", index: int):
        L = lib()
        p = run.handle
        self._run = weakref.ref(run)
        self.index = index
        self.name = _dec(L.run_step_name(p, index))
        self.status = STATUS_NAMES[L.run_step_status(p, index)]
        self.started_at = L.run_step_started_at(p, index)
        self.finished_at = L.run_step_finished_at(p, index)
        self.attempts = L.run_step_attempts(p, index)
        self.exit_code = L.run_step_exit_code(p, index)
        self.error = _dec(L.run_step_error(p, index))
        self.cache_key = _dec(L.run_step_cache_key(p, index))
        self.outputs = {}
        for k in range(L.run_step_output_count(p, index)):
            name = _dec(L.run_step_output_name(p, index, k))
            digest = _dec(L.run_step_output_digest(p, index, k))
            if digest:
                self.outputs[name] = OutputInfo(name, digest,
                                                L.run_step_output_size(p, index, k),
                                                _dec(L.run_step_output_kind(p, index, k)))

    def __repr__(self):
        return f"<StepRun {self.name} {self.status}>"

    @property
    def run(self) -> "Run":
        run = self._run()
        if run is None:
            raise ValueError(f"the run of step '{self.name}' was freed: keep the Run object")
        return run

    @property
    def logs(self) -> str:
        return self.run.logs(self.name)

    def load(self, output: str | None = None, *, type=None):
        return self.run.load(self.name, output, type=type)

    def output_path(self, output: str | None = None) -> str:
        return self.run.output_path(self.name, output)


class Run:
    """A pipeline run: one started by this program, or one loaded from the store."""

    def __init__(self, client: Client, ptr: c_void_p):
        self.client = client  # keeps the client alive while the run lives
        self._ptr = ptr
        client._run_opened()
        self._lock = threading.RLock()
        self._deployment = None
        self._built = None
        self._snapshot()

    def _snapshot(self):
        L = lib()
        p = self.handle
        self.id = _dec(L.run_id(p))
        self.name = _dec(L.run_name(p))
        self.pipeline_name = _dec(L.run_pipeline_name(p))
        self.stack = _dec(L.run_stack(p))
        self.status = STATUS_NAMES[L.run_status(p)] if 0 <= L.run_status(p) < 8 else "unknown"
        self.started_at = L.run_started_at(p)
        self.finished_at = L.run_finished_at(p)
        self.steps = {}
        for i in range(L.run_step_count(p)):
            s = StepRun(self, i)
            self.steps[s.name] = s

    @property
    def handle(self):
        if self._ptr is None:
            raise ValueError("the run is closed")
        return self._ptr

    def close(self):
        with self._lock:
            if self._ptr is None:
                return
            if not sys.is_finalizing():
                lib().run_free(self._ptr)
            self._ptr = None
            self._built = None  # the step payloads, only after the run is freed
        self.client._run_closed()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self):
        return f"<Run {self.name} {self.status}>"

    def refresh(self) -> "Run":
        with self._lock:
            check(lib().run_refresh(self.handle))
            self._snapshot()
        return self

    def metadata(self, key: str) -> str | None:
        """Run metadata: "orchestrator", "orchestrator_run_id", "orchestrator_url"."""
        with self._lock:
            return _dec(lib().run_metadata(self.handle, _enc(key)))

    @property
    def orchestrator_url(self) -> str | None:
        return self.metadata("orchestrator_url")

    @property
    def deployment(self) -> dict:
        if self._deployment is None:
            with self._lock:
                self._deployment = json.loads(_dec(lib().run_deployment(self.handle)) or "{}")
        return self._deployment

    def step(self, name: str) -> StepRun:
        try:
            return self.steps[name]
        except KeyError:
            raise NotFoundError(-2, f"run '{self.name}' has no step '{name}' (steps: "
                                f"{', '.join(self.steps)})") from None

    def logs(self, step: str) -> str:
        out = c_void_p()
        size = c_size_t()
        with self._lock:
            check(lib().run_read_log(byref(out), byref(size), self.handle, _enc(step)))
        return take_string(out, size.value).decode("utf-8", "replace")

    def _output_name(self, step: str, output: str | None) -> str:
        s = self.step(step)
        if output is not None:
            return output
        if len(s.outputs) == 1:
            return next(iter(s.outputs))
        meta = self._py_meta(step)
        names = list(meta.get("outputs", {})) if meta else list(s.outputs)
        if len(names) == 1:
            return names[0]
        raise ValueError(f"step '{step}' has outputs {', '.join(names) or '(none)'}: "
                         "name the one to load")

    def output_path(self, step: str, output: str | None = None) -> str:
        out = c_void_p()
        name = self._output_name(step, output)
        with self._lock:
            check(lib().run_output_path(byref(out), self.handle, _enc(step), _enc(name)))
        return take_string(out).decode()

    def read_output(self, step: str, output: str | None = None) -> bytes:
        """The raw bytes of a file output."""
        data = c_void_p()
        size = c_size_t()
        name = self._output_name(step, output)
        with self._lock:
            check(lib().run_read_output(byref(data), byref(size), self.handle, _enc(step),
                                        _enc(name)))
        return take_string(data, size.value)

    def _py_meta(self, step: str) -> dict | None:
        """What the Python binding recorded about a step (its "zorch-python" param)."""
        for s in self.deployment.get("steps", []):
            if s.get("name") == step:
                meta = (s.get("params") or {}).get("zorch-python")
                if isinstance(meta, str):
                    meta = json.loads(meta)
                return meta
        return None

    def load(self, step: str, output: str | None = None, *, type=None):
        """Load a step's output as a Python value, with the materializer that
        stored it (recorded in the run's deployment).  Outputs of command or
        C steps load as bytes (a file) or a pathlib.Path (a directory), or
        with the materializer for ``type`` when given."""
        name = self._output_name(step, output)
        info = self.step(step).outputs.get(name)
        if info is None:
            raise NotFoundError(-2, f"step '{step}' of run '{self.name}' has no stored output "
                                f"'{name}' (status {self.step(step).status})")
        meta = self._py_meta(step)
        out_meta = (meta or {}).get("outputs", {}).get(name)
        if type is not None:
            m = _mat.for_type(type)
        elif out_meta:
            m = _mat.by_id(out_meta["materializer"])
            type = _BUILTIN_TYPES.get(out_meta.get("type"))
            if m.id == "pickle" and not _pickle_ok(out_meta.get("type", "")):
                raise MaterializerError(
                    f"output '{name}' of step '{step}' is a pickled {out_meta.get('type')}: "
                    "call zorch.allow_pickle() with that type before loading it")
        else:
            m = _mat.by_id("path" if info.kind == "dir" else "bytes")
        if info.kind == "file" and m.reads_bytes():
            return m.load_bytes(self.read_output(step, name), type)
        return m.load(self.output_path(step, name), type)

    def wait(self, timeout: float | None = None) -> "Run":
        """Wait for a run started by this program (see zorch_run_wait)."""
        from .pipelines import _wait
        _wait(self, timeout)
        return self

    def cancel(self) -> None:
        check(lib().run_cancel(self.handle))


_BUILTIN_TYPES = {f"builtins.{t.__name__}": t for t in (tuple, list, dict, bytearray)}


def _pickle_ok(qualified: str) -> bool:
    with _mat._lock:
        return any(_mat.type_name(t) == qualified for t in _mat._pickle_types)


_default = None
_default_lock = threading.Lock()


def get_client() -> Client:
    """The program's default client (opened on first use, from the environment)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def set_client(client: Client | None) -> None:
    """Replace the default client (None: open a new one on next use)."""
    global _default
    with _default_lock:
        _default = client
