"""Loading libzorch with ctypes, and the prototypes of the C API.

The library is found, in this order, at:

1. ``$ZORCH_LIBRARY``: the path of ``libzorch.so.1`` (or of any build of it);
2. the library directory zorch was installed to, when this package was
   installed by zorch's own build (``meson install``);
3. ``libzorch.so.1`` through the dynamic loader's usual search
   (``LD_LIBRARY_PATH``, ``/etc/ld.so.cache``, the default directories).

Every function is called through ``ctypes.CDLL``, which releases the GIL for
the duration of each call: a thread that waits in zorch never blocks the
Python step callbacks that zorch's worker threads run meanwhile.
"""
from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_size_t,
                    c_uint, c_uint32, c_uint64, c_void_p, c_int64)

SONAME = "libzorch.so.1"


class LibraryNotFound(ImportError):
    """libzorch.so.1 could not be loaded."""


class _Error(Structure):
    _fields_ = [("code", c_int), ("message", c_char_p)]


LOG_CB = CFUNCTYPE(None, c_int, c_char_p, c_char_p, c_void_p)
PROGRESS_CB = CFUNCTYPE(None, c_char_p, c_char_p, c_int, c_void_p)
STEP_FN = CFUNCTYPE(c_int, c_void_p, c_void_p)
BUILD_CB = CFUNCTYPE(c_int, POINTER(c_void_p), c_char_p, c_void_p)


class ClientOptions(Structure):
    _fields_ = [("version", c_uint), ("home", c_char_p), ("flags", c_uint32),
                ("plugin_path", c_char_p), ("log_cb", LOG_CB), ("log_payload", c_void_p),
                ("log_level", c_int)]


class RunOptions(Structure):
    _fields_ = [("version", c_uint), ("run_name", c_char_p), ("stack", c_char_p),
                ("params_json", c_char_p), ("failure_mode", c_int), ("max_parallel", c_uint32),
                ("flags", c_uint32), ("progress_cb", PROGRESS_CB), ("progress_payload", c_void_p)]


P = c_void_p  # every opaque handle
S = c_char_p
OUT_P = POINTER(c_void_p)

# name: (restype, [argtypes]); None restype: void.  Variadic functions list
# their fixed arguments only (ctypes passes the rest as given).
_PROTOTYPES = {
    # errors.h
    "zorch_error_last": (POINTER(_Error), []),
    "zorch_error_clear": (None, []),
    "zorch_strerror": (S, [c_int]),
    "zorch_free": (None, [c_void_p]),
    # version.h
    "zorch_version": (S, []),
    "zorch_version_number": (c_uint32, []),
    # client.h
    "zorch_client_options_init": (c_int, [POINTER(ClientOptions), c_uint]),
    "zorch_client_new": (c_int, [OUT_P, POINTER(ClientOptions)]),
    "zorch_client_free": (None, [P]),
    "zorch_client_home": (S, [P]),
    "zorch_flavor_list": (c_int, [OUT_P, P, S]),
    "zorch_flavor_describe": (c_int, [OUT_P, P, S, S]),
    "zorch_flavor_problems": (c_int, [OUT_P, P]),
    "zorch_component_register": (c_int, [P, S, S, S, S, c_int]),
    "zorch_component_delete": (c_int, [P, S, S]),
    "zorch_component_list": (c_int, [OUT_P, P, S]),
    "zorch_stack_register": (c_int, [P, S, S, S, c_int]),
    "zorch_stack_delete": (c_int, [P, S]),
    "zorch_stack_set_active": (c_int, [P, S]),
    "zorch_stack_get_active": (c_int, [OUT_P, P]),
    "zorch_stack_list": (c_int, [OUT_P, P]),
    "zorch_stack_describe": (c_int, [OUT_P, P, S]),
    # pipeline.h
    "zorch_pipeline_new": (c_int, [OUT_P, S]),
    "zorch_pipeline_free": (None, [P]),
    "zorch_pipeline_add_param": (c_int, [P, S, S]),
    "zorch_pipeline_add_function_step": (c_int, [OUT_P, P, S, STEP_FN, c_void_p]),
    "zorch_pipeline_add_command_step": (c_int, [OUT_P, P, S, POINTER(c_char_p)]),
    "zorch_pipeline_defaults": (P, [P]),
    "zorch_pipeline_validate": (c_int, [P]),
    "zorch_pipeline_set_entrypoint": (c_int, [P, POINTER(c_char_p)]),
    "zorch_step_add_output": (c_int, [P, S]),
    "zorch_step_add_input": (c_int, [P, S, S, S]),
    "zorch_step_after": (c_int, [P, S]),
    "zorch_step_use_param": (c_int, [P, S]),
    "zorch_step_set_param": (c_int, [P, S, S]),
    "zorch_step_set_resources": (c_int, [P, c_double, c_uint64]),
    "zorch_step_set_gpu": (c_int, [P, c_uint32, S]),
    "zorch_step_set_env": (c_int, [P, S, S]),
    "zorch_step_set_retry": (c_int, [P, c_uint32, c_double, c_double]),
    "zorch_step_set_timeout": (c_int, [P, c_double]),
    "zorch_step_set_cache": (c_int, [P, c_int]),
    "zorch_step_set_image": (c_int, [P, S]),
    "zorch_step_set_version": (c_int, [P, S]),
    "zorch_step_set_flavor_settings": (c_int, [P, S, S]),
    # step.h
    "zorch_ctx_step_name": (S, [P]),
    "zorch_ctx_run_id": (S, [P]),
    "zorch_ctx_attempt": (c_uint32, [P]),
    "zorch_ctx_input": (c_int, [P, S, POINTER(c_void_p), POINTER(c_size_t)]),
    "zorch_ctx_input_path": (c_int, [P, S, POINTER(c_char_p)]),
    "zorch_ctx_param": (c_int, [P, S, POINTER(c_char_p)]),
    "zorch_ctx_output": (c_int, [P, S, c_char_p, c_size_t]),
    "zorch_ctx_output_file": (c_int, [P, S, S]),
    "zorch_ctx_output_path": (c_int, [P, S, POINTER(c_char_p)]),
    "zorch_ctx_log_write": (c_int, [P, c_char_p, c_size_t]),
    "zorch_ctx_cancelled": (c_int, [P]),
    "zorch_ctx_fail": (c_int, [P, S]),  # variadic: (ctx, "%s", message)
    # run.h
    "zorch_status_name": (S, [c_int]),
    "zorch_run_options_init": (c_int, [POINTER(RunOptions), c_uint]),
    "zorch_run_start": (c_int, [OUT_P, P, P, POINTER(RunOptions)]),
    "zorch_run_wait": (c_int, [P, c_int]),
    "zorch_run_cancel": (c_int, [P]),
    "zorch_run_free": (None, [P]),
    "zorch_run_open": (c_int, [OUT_P, P, S]),
    "zorch_run_refresh": (c_int, [P]),
    "zorch_run_id": (S, [P]),
    "zorch_run_name": (S, [P]),
    "zorch_run_pipeline_name": (S, [P]),
    "zorch_run_stack": (S, [P]),
    "zorch_run_status": (c_int, [P]),
    "zorch_run_started_at": (c_double, [P]),
    "zorch_run_finished_at": (c_double, [P]),
    "zorch_run_metadata": (S, [P, S]),
    "zorch_run_deployment": (S, [P]),
    "zorch_run_step_count": (c_size_t, [P]),
    "zorch_run_step_name": (S, [P, c_size_t]),
    "zorch_run_step_status": (c_int, [P, c_size_t]),
    "zorch_run_step_started_at": (c_double, [P, c_size_t]),
    "zorch_run_step_finished_at": (c_double, [P, c_size_t]),
    "zorch_run_step_attempts": (c_uint32, [P, c_size_t]),
    "zorch_run_step_exit_code": (c_int, [P, c_size_t]),
    "zorch_run_step_error": (S, [P, c_size_t]),
    "zorch_run_step_cache_key": (S, [P, c_size_t]),
    "zorch_run_step_output_count": (c_size_t, [P, c_size_t]),
    "zorch_run_step_output_name": (S, [P, c_size_t, c_size_t]),
    "zorch_run_step_output_digest": (S, [P, c_size_t, c_size_t]),
    "zorch_run_step_output_size": (c_uint64, [P, c_size_t, c_size_t]),
    "zorch_run_step_output_kind": (S, [P, c_size_t, c_size_t]),
    "zorch_run_read_output": (c_int, [POINTER(c_void_p), POINTER(c_size_t), P, S, S]),
    "zorch_run_output_path": (c_int, [OUT_P, P, S, S]),
    "zorch_run_read_log": (c_int, [OUT_P, POINTER(c_size_t), P, S]),
    "zorch_run_list_load": (c_int, [OUT_P, P, S]),
    "zorch_run_list_count": (c_size_t, [P]),
    "zorch_run_list_id": (S, [P, c_size_t]),
    "zorch_run_list_name": (S, [P, c_size_t]),
    "zorch_run_list_pipeline": (S, [P, c_size_t]),
    "zorch_run_list_status": (c_int, [P, c_size_t]),
    "zorch_run_list_started_at": (c_double, [P, c_size_t]),
    "zorch_run_list_finished_at": (c_double, [P, c_size_t]),
    "zorch_run_list_free": (None, [P]),
    # entrypoint.h
    "zorch_main": (c_int, [c_int, POINTER(c_char_p), BUILD_CB, c_void_p]),
}

# Functions added after ZORCH_1.0: a libzorch older than this package lacks
# them, and only the features that need them fail (with a clear message).
_OPTIONAL = {"zorch_pipeline_set_entrypoint"}


def _candidates():
    env = os.environ.get("ZORCH_LIBRARY")
    if env:
        return [env], True
    out = []
    try:
        from . import _config  # written by meson install
        libdir = getattr(_config, "LIBDIR", None)
        if libdir:
            out.append(os.path.join(libdir, SONAME))
    except ImportError:
        pass
    out.append(SONAME)
    return out, False


class _Lib:
    """The loaded library: attribute access gives the prototyped functions."""

    def __init__(self):
        names, from_env = _candidates()
        errors = []
        self.dll = None
        for name in names:
            try:
                self.dll = ctypes.CDLL(name)
                self.path = name
                break
            except OSError as e:
                errors.append(f"{name}: {e}")
        if self.dll is None:
            hint = ("set ZORCH_LIBRARY to the path of libzorch.so.1" if not from_env else
                    "ZORCH_LIBRARY names a file that cannot be loaded; fix or unset it")
            raise LibraryNotFound("zorch: cannot load libzorch (" + "; ".join(errors) +
                                  "): install zorch, or " + hint)
        self.missing = set()
        for fname, (res, args) in _PROTOTYPES.items():
            try:
                fn = getattr(self.dll, fname)
            except AttributeError:
                if fname in _OPTIONAL:
                    self.missing.add(fname)
                    continue
                raise LibraryNotFound(f"zorch: {self.path} has no {fname}: it is not a "
                                      "libzorch this package can use")
            fn.restype = res
            fn.argtypes = args
            setattr(self, fname[len("zorch_"):], fn)

    def require(self, fname, what):
        if fname in self.missing:
            from .errors import NotSupportedError
            raise NotSupportedError(-13, f"{what} needs {fname}(), which {self.path} lacks "
                                    "(libzorch older than ABI ZORCH_1.1): upgrade libzorch")


_lock = threading.Lock()
_lib = None


def lib() -> _Lib:
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _Lib()
    return _lib


def take_string(ptr: c_void_p, size: int | None = None) -> bytes:
    """Copy memory zorch handed out through a ``char **``/``void **`` and free it."""
    if not ptr or not ptr.value:
        return b""
    try:
        if size is None:
            return ctypes.string_at(ptr.value)
        return ctypes.string_at(ptr.value, size)
    finally:
        lib().free(ptr)


def argv_array(items):
    arr = (c_char_p * (len(items) + 1))()
    for i, s in enumerate(items):
        arr[i] = s.encode() if isinstance(s, str) else s
    arr[len(items)] = None
    return arr


__all__ = ["lib", "LibraryNotFound", "STEP_FN", "BUILD_CB", "LOG_CB", "ClientOptions",
           "RunOptions", "take_string", "argv_array", "c_int64"]
