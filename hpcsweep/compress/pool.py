"""A bundle's compressor run on chunks in worker processes, results taken in file order.

One worker per allocated core, each with one BLAS thread (the processes are
the parallelism); in this process for one core or a small file. A worker loads
the bundle itself, by path, as it starts (its checksum checked: the bundle must
not change while in use) rather than receiving the compressor with every chunk;
`_compressor` keeps it for the worker's later chunks, memoised per process,
since a task of a process pool reaches what its initializer made only through
its module.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from hpcsweep.codec import Compressor

if TYPE_CHECKING:
    from hpcsweep.compress.bundle import Bundle

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
Item = TypeVar("Item", bound=tuple)  # a chunk being coded: its future first, then what its writing needs
Operation = Callable[[Compressor, Any, float], Any]  # Compressor.encode or Compressor.decode


class Coders:
    """A bundle's compressor at one bound, run on chunks in worker processes (`parallel`) or in this one."""

    def __init__(self, bundle: Bundle, bound: float, parallel: bool) -> None:
        from hpcsweep.allocation import allocated_cores

        self.bundle, self.bound = bundle, bound
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
                initargs=(str(self.bundle.path), self.bundle.checksum),
            )
        return self

    def encode(self, x: np.ndarray) -> Future[bytes]:
        """Jets (physical units) -> their bytes, when done."""
        return self._submit(Compressor.encode, x)

    def decode(self, data: bytes) -> Future[np.ndarray]:
        """A chunk's coded bytes -> its jets, when done."""
        return self._submit(Compressor.decode, data)

    def _submit(self, operation: Operation, data: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(_run, operation, str(self.bundle.path), self.bundle.checksum, self.bound, data)
        future: Future = Future()
        try:
            future.set_result(operation(self.bundle.compressor, data, self.bound))
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
def _compressor(path: str, checksum: str) -> Compressor:
    """The bundle's compressor in a worker process: loaded as the worker starts (the pool's initializer), then reused."""
    from hpcsweep.compress.bundle import load_bundle

    bundle = load_bundle(path)
    if bundle.checksum != checksum:
        raise RuntimeError(f"{path} changed while it was in use")
    return bundle.compressor


def _run(operation: Operation, path: str, checksum: str, bound: float, data: Any) -> Any:
    """A chunk coded in a worker process."""
    return operation(_compressor(path, checksum), data, bound)
