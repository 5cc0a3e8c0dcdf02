"""Pipelines for test_entrypoint: module-level, so `python3 -m zorch` can import them."""
import os
from typing import Annotated

from zorch import Retry, pipeline, step


@step
def make() -> Annotated[list, "data"]:
    return [1, 2, 3]


@step(retry=Retry(max_retries=3) if os.environ.get("ZT_ALTER") else None)
def total(data: list, bias: int) -> Annotated[int, "sum"]:
    print(f"summing in process {os.getpid()}")
    return sum(data) + bias


@step
def broken(data: list) -> int:
    if os.environ.get("ZT_BREAK"):
        raise ValueError("broken on purpose in the step process")
    return len(data)


@pipeline
def entry(bias: int = 10):
    d = make()
    total(d, bias=bias)
    broken(d)
