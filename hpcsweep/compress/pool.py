"""A compressor run on chunks in worker processes, results taken in file order.

One worker per allocated core, each with one BLAS thread (the processes are
the parallelism); in this process for one core or a small file. A worker loads
the compressor itself as it starts, from where it lies (`Source`: a bundle, or
a compressed file that carries it; its identity checked: it must not change
while in use) rather than receiving it with every chunk; `_compressor` keeps it
for the worker's later chunks, memoised per process, since a task of a process
pool reaches what its initializer made only through its module.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hpcsweep.codec import Compressor

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
Item = TypeVar("Item", bound=tuple)  # a chunk being coded: its future first, then what its writing needs
Operation = Callable[[Compressor, Any, float, Any], Any]  # Compressor.encode or Compressor.decode


@dataclass(frozen=True)
class Source:
    """Where a worker finds the compressor: a bundle (`identity`: its checksum), or a compressed file that carries it
    (`embedded`; `identity`: the compressor's at `bound`)."""

    path: str
    identity: str
    bound: float
    embedded: bool = False


class Coders:
    """`compressor` at one bound, run on chunks in worker processes (`parallel`; each loads it from `source`) or in
    this one, on jets in a file's own units (`units` turn them physical)."""

    def __init__(self, compressor: Compressor, source: Source, parallel: bool, units: np.ndarray) -> None:
        from hpcsweep.allocation import allocated_cores

        self.compressor, self.source, self.bound, self.units = compressor, source, source.bound, units
        self.workers = allocated_cores() if parallel else 1
        self.pending: deque[Any] = deque()
        self.pool: ProcessPoolExecutor | None = None
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> Coders:
        if self.workers > 1:
            self.saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
            os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))  # read by the workers as they start (this process's BLAS is set up)
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_compressor,
                initargs=(self.source,),
            )
        return self

    def encode(self, x: np.ndarray) -> Future[bytes]:
        """Jets (the file's units) -> their bytes, when done."""
        return self._submit(Compressor.encode, x)

    def decode(self, data: bytes) -> Future[np.ndarray]:
        """A chunk's coded bytes -> its jets (the file's units), when done."""
        return self._submit(Compressor.decode, data)

    def _submit(self, operation: Operation, data: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(_run, operation, self.source, data, self.units)
        future: Future = Future()
        try:
            future.set_result(operation(self.compressor, data, self.bound, self.units))
        except Exception as err:  # handed to whoever takes the result, as a worker's would be
            future.set_exception(err)
        return future

    def queue(self, item: Item, done: Callable[[Item], None]) -> None:
        """Keep `item` (a future first) pending; hand the oldest to `done` once more are pending than workers run."""
        self.pending.append(item)
        while len(self.pending) > self.workers:
            done(self.pending.popleft())

    def drain(self, done: Callable[[Item], None]) -> None:
        """Hand every pending item to `done`, oldest first."""
        while self.pending:
            done(self.pending.popleft())

    def __exit__(self, *error: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            for name, value in self.saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@functools.cache
def _compressor(source: Source) -> Compressor:
    """The compressor in a worker process: loaded as the worker starts (the pool's initializer), then reused."""
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.compress.container import embedded
    from hpcsweep.compress.embed import identity, unpack

    if source.embedded:
        compressor = unpack(embedded(Path(source.path)) or b"")
        found = identity(compressor, source.bound)
    else:
        bundle = load_bundle(source.path)
        compressor, found = bundle.compressor, bundle.checksum
    if found != source.identity:
        raise RuntimeError(f"{source.path} changed while it was in use")
    return compressor


def _run(operation: Operation, source: Source, data: Any, units: np.ndarray) -> Any:
    """A chunk coded in a worker process."""
    return operation(_compressor(source), data, source.bound, units)
