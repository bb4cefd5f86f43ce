"""The ``torch.compile`` runtime the sweep derives from a torch module (Inductor), within a budget."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from heptathlon.runners.adapters.base import ModelAdapter
from heptathlon.runners.adapters.torch_common import TorchModuleRuntime


class CompileBudgetExceeded(BaseException):
    """Raised inside a torch.compile that ran past its budget.

    A BaseException, so that the compiler's own ``except Exception`` handlers (which may fall
    back to eager silently) let it through.
    """


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block with CompileBudgetExceeded after ``seconds`` (SIGALRM; main thread only).

    Compilation runs in this thread and cannot be cancelled from another; a signal handler is
    the one way to stop it. Elsewhere (a non-main thread, no SIGALRM) the block runs unbounded.
    """
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise CompileBudgetExceeded(f"compilation exceeded its budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CompiledRuntime(TorchModuleRuntime):
    name = "torch.compile"

    @classmethod
    def derive(cls, module: Any, example: tuple, device: str, options: Any) -> ModelAdapter:
        """torch.compile, bounded by ``options.compile_budget_s``: a compile that does not finish in time is unavailable."""
        import torch

        # Import the compiler before the clock starts: an import cut short by the signal would leave
        # half-initialised modules behind for the rest of the process.
        import torch._dynamo  # noqa: F401
        import torch._inductor.compile_fx  # noqa: F401

        budget_s = options.compile_budget_s
        t0 = time.perf_counter()
        try:
            with _time_limit(budget_s):
                # Inductor's fused C++ kernels are not aten ops; enable_kernel_profile wraps each in a
                # profiler record so heptathlon.runners.profiling can count it as compute. Compilation is
                # lazy, so the first call here is where it fails (e.g. no C compiler) or succeeds.
                compiled = torch.compile(module, options={"cpp.enable_kernel_profile": True})
                rt = cls(compiled, device=device, details={"how": "torch.compile(inductor)"})
                rt.predict(example)
        except CompileBudgetExceeded as exc:
            with contextlib.suppress(Exception):
                torch._dynamo.reset()  # drop whatever the interrupted compile left in dynamo's caches
            return cls.unavailable(f"skipped: {exc}", device)
        elapsed = time.perf_counter() - t0
        if budget_s and elapsed > budget_s:  # the signal landed where it was swallowed: the budget still holds
            return cls.unavailable(f"skipped: compilation took {elapsed:.1f} s, over its budget of {budget_s:g} s",
                                   device)
        rt.convert_s = elapsed
        return rt
