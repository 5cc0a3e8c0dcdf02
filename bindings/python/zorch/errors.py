"""Python exceptions for zorch's error codes (include/zorch/errors.h).

Every failed libzorch call raises a ``ZorchError`` subclass chosen by the
code; its message is zorch's own (``zorch_error_last()``), which names what
was wrong and where.
"""
from __future__ import annotations


class ZorchError(Exception):
    """A libzorch call failed.  ``code`` is the ZORCH_E* value, ``message`` zorch's text."""

    code = -1

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NotFoundError(ZorchError, LookupError):
    """ZORCH_ENOTFOUND: a named step, run, stack, flavor or file does not exist."""


class InvalidError(ZorchError, ValueError):
    """ZORCH_EINVALID: an invalid argument, name, document or configuration."""


class OutOfMemoryError(ZorchError, MemoryError):
    """ZORCH_ENOMEM."""


class VersionError(ZorchError):
    """ZORCH_EVERSION: an unsupported struct, document or ABI version."""


class PluginError(ZorchError):
    """ZORCH_EPLUGIN: a flavor plugin could not be loaded or failed."""


class StorageError(ZorchError, OSError):
    """ZORCH_EIO: an operating-system or storage error."""

    def __init__(self, code, message):
        ZorchError.__init__(self, code, message)


class ExistsError(ZorchError):
    """ZORCH_EEXISTS: the name is already taken."""


class CycleError(InvalidError):
    """ZORCH_ECYCLE: the pipeline's steps form a cycle."""


class WaitTimeout(ZorchError, TimeoutError):
    """ZORCH_ETIMEOUT: a wait ran out of time (the run goes on)."""

    def __init__(self, code, message):
        ZorchError.__init__(self, code, message)


class RunCancelled(ZorchError):
    """ZORCH_ECANCELLED: the run was cancelled and recorded as stopped."""


class StepFailed(ZorchError):
    """ZORCH_ESTEP: one or more steps failed.  ``run`` is the run, to inspect."""

    run = None


class NotSupportedError(ZorchError):
    """ZORCH_ENOTSUPPORTED: the flavor or object does not support this."""


class MismatchError(ZorchError):
    """ZORCH_EMISMATCH: the program's pipeline differs from the deployment."""


class MaterializerError(ZorchError, TypeError):
    """No materializer can store or load a value of this type."""

    def __init__(self, message: str):
        ZorchError.__init__(self, -3, message)


_BY_CODE = {
    -2: NotFoundError, -3: InvalidError, -4: OutOfMemoryError, -5: VersionError,
    -6: PluginError, -7: StorageError, -8: ExistsError, -9: CycleError, -10: WaitTimeout,
    -11: RunCancelled, -12: StepFailed, -13: NotSupportedError, -14: MismatchError,
}


def error_for(code: int, message: str) -> ZorchError:
    return _BY_CODE.get(code, ZorchError)(code, message)


def check(rc: int) -> int:
    """Raise the calling thread's last zorch error when ``rc`` is not ZORCH_OK."""
    if rc == 0:
        return rc
    from ._lib import lib
    err = lib().error_last().contents
    message = err.message.decode("utf-8", "replace") if err.message else ""
    if err.code != rc or not message:
        message = lib().strerror(rc).decode()
    raise error_for(rc, message)
