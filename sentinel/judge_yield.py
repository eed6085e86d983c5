"""The judge gives way while the personas stream: a capped share of its time, in small steps.

When the judge and the personas' model share one GPU (a Vulkan judge beside a CUDA primary on
one card, or both on the CPU's cores), the device time-slices between the two processes and
the personas' stream slows down while the judge works: on an H200 a busy judge took 21% of the
primary's tokens/s (benchmarks/results/vulkan_judge_h200.json). The parent tells the judge's
process when a persona streams (``{"primary_busy": true}`` on its stdin, see
``sentinel.judge_worker``); meanwhile ``Yielder``:

* evaluates a prompt in chunks of ``chunk`` tokens instead of the context's n_batch (set
  per request, before it starts: llama-cpp-python's ``eval`` must see one chunk size);
* after each ``llama_decode`` waits for the device, and then pauses so that its decodes take at
  most ``share`` of the wall time (a decode of d seconds is followed by d*(1-share)/share);
* stops pausing ``deadline_s`` after a request began, so a verdict still arrives within the
  parent's timeout during a long stream, and at once when the personas stop (the pause wakes).

With ``share`` 1 it never pauses. Sampling, the grammar and everything else on the CPU run at
full speed: only the device work is spaced out.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class Yielder:
    """See the module docstring. ``set_busy`` may be called from any thread."""

    def __init__(self, share: float = 1.0, deadline_s: float = 2.5, chunk: int = 64) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"busy share must be in (0, 1], got {share}")
        self.share = share
        self.deadline_s = deadline_s
        self.chunk = max(1, chunk)
        self._busy = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._started = 0.0
        self.paused_s = 0.0  # total pause (all requests)
        self.device_s = 0.0  # total decode time measured while pausing

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def set_busy(self, busy: bool) -> None:
        if busy:
            self._idle.clear()
            self._busy.set()
        else:
            self._busy.clear()
            self._idle.set()  # a pause in progress ends now

    def attach(self, llm: Any) -> None:
        """Wrap ``llm``'s context decode (a llama_cpp.Llama) with the pauses."""
        import llama_cpp

        ctx = llm._ctx
        decode = ctx.decode
        self._full_batch = int(llm.n_batch)

        def paced(batch: Any) -> None:
            if not self._pacing():
                decode(batch)
                return
            t0 = time.perf_counter()
            decode(batch)
            llama_cpp.llama_synchronize(ctx.ctx)
            self.pause(time.perf_counter() - t0)

        ctx.decode = paced
        self._llm = llm

    def begin(self) -> None:
        """A request starts: its deadline counts from now; small chunks if the primary is busy."""
        self._started = time.perf_counter()
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.n_batch = min(self.chunk, self._full_batch) if self._pacing() else self._full_batch

    def _pacing(self) -> bool:
        return (
            self.share < 1
            and self._busy.is_set()
            and time.perf_counter() - self._started < self.deadline_s
        )

    def planned(self, device_s: float) -> float:
        """The pause due after ``device_s`` of device work (0 when not giving way)."""
        if not self._pacing():
            return 0.0
        left = self.deadline_s - (time.perf_counter() - self._started)
        return min(device_s * (1 - self.share) / self.share, max(0.0, left))

    def pause(self, device_s: float) -> float:
        """Pause after ``device_s`` of device work (returns the pause taken, in seconds)."""
        wanted = self.planned(device_s)
        if wanted <= 0:
            return 0.0
        t0 = time.perf_counter()
        self._idle.wait(wanted)
        took = time.perf_counter() - t0
        self.paused_s += took
        self.device_s += device_s
        return took
