"""zorch for Python: ZenML-style ``@step`` and ``@pipeline`` over libzorch (ctypes).

    from typing import Annotated, Tuple
    from zorch import step, pipeline

    @step
    def load() -> Annotated[list, "rows"]:
        return [[1, 2], [3, 4]]

    @step(retry=2)
    def total(rows: list, scale: int = 1) -> Tuple[Annotated[int, "sum"], Annotated[int, "n"]]:
        return scale * sum(map(sum, rows)), len(rows)

    @pipeline
    def demo(scale: int = 1):
        s, n = total(load(), scale=scale)

    run = demo(scale=3)          # runs on the active stack, returns the run
    run.steps["total"].load("sum")   # 30

See bindings/python/README.md.
"""
from ._lib import LibraryNotFound
from .client import Client, OutputInfo, Run, RunSummary, StepRun, get_client, set_client
from .errors import (CycleError, ExistsError, InvalidError, MaterializerError, MismatchError,
                     NotFoundError, NotSupportedError, PluginError, RunCancelled, StepFailed,
                     StorageError, VersionError, WaitTimeout, ZorchError)
from .materializers import (BytesMaterializer, JSONMaterializer, Materializer, PathMaterializer,
                            PickleMaterializer, StrMaterializer, allow_pickle,
                            register_materializer)
from .pipelines import (Pipeline, PipelineParam, Resources, Retry, Step, StepContext,
                        StepOutput, StepRetryConfig, code_version, get_step_context, pipeline,
                        step)

__version__ = "0.1.0"


def version() -> str:
    """The version of the loaded libzorch."""
    from ._lib import lib
    return lib().version().decode()


__all__ = [
    "step", "pipeline", "Step", "Pipeline", "StepOutput", "PipelineParam", "Resources", "Retry",
    "StepRetryConfig", "StepContext", "get_step_context", "code_version",
    "Client", "Run", "RunSummary", "StepRun", "OutputInfo", "get_client", "set_client",
    "Materializer", "BytesMaterializer", "StrMaterializer", "JSONMaterializer",
    "PathMaterializer", "PickleMaterializer", "register_materializer", "allow_pickle",
    "ZorchError", "NotFoundError", "InvalidError", "VersionError", "PluginError", "StorageError",
    "ExistsError", "CycleError", "WaitTimeout", "RunCancelled", "StepFailed", "NotSupportedError",
    "MismatchError", "MaterializerError", "LibraryNotFound", "version",
]
