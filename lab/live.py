"""Live rendering off the main thread: the newest request wins, a fast preview while a control moves,
a full-quality frame once it settles, a Stop that interrupts, and errors that are reported, not raised.

:class:`LiveRenderer` knows nothing about widgets. An app gives it a ``render`` function and callbacks;
the app's observers call :meth:`LiveRenderer.request` with a snapshot of the controls (taken on the
kernel's thread, so the worker never reads a widget while it changes).

Policy (the slider case):

- ``request(params)`` queues a **preview** now and, once it is shown, schedules a **full** frame
  ``settle`` seconds later, unless another request comes first (or the preview failed or was stopped). ipywidgets sends no "slider released" event; a pause of
  ``settle`` seconds is how release is recognised.
- At most one request waits; a newer one replaces it (the replaced one is counted in ``dropped``).
- A running preview finishes (it is short, and while a slider is dragged its frame is the feedback);
  a running full frame is interrupted by any newer request (through ``generate``'s ``interrupt``
  flag, on which ``generate`` raises :class:`latentlib.Interrupted` before decoding), and its partial
  result is thrown away; such a frame is stopped, not an error.
- A frame is shown only if no newer frame has been shown already.
- An exception in ``render`` (CUDA out-of-memory included) goes to ``on_error``; the worker goes on.

Example:
    >>> renderer = LiveRenderer(render, on_frame=show)     # render(params, quality, interrupt, progress)
    >>> renderer.request({"seed": 3})
    >>> renderer.wait()                                      # tests and scripts: block until idle
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from latentlib import Interrupted

__all__ = ["Frame", "LiveRenderer"]

QUALITIES = ("auto", "preview", "full")


@dataclass
class Frame:
    """A finished render: what ``render`` returned, for which request, and how long it took."""

    image: object
    params: dict
    quality: str  # "preview" or "full"
    seconds: float
    request_id: int
    requested_at: float  # time.perf_counter() when the request was made


@dataclass
class _Job:
    params: dict
    quality: str
    request_id: int
    requested_at: float
    then_full: bool  # a preview that should be followed by a full frame once things settle
    interrupt: threading.Event = field(default_factory=threading.Event)


class LiveRenderer:
    """One worker thread that renders the newest request (see the module docstring for the policy).

    Args:
        render: ``render(params, quality, interrupt, progress) -> image``. ``quality`` is "preview" or
            "full"; ``interrupt`` is a ``threading.Event`` to pass to ``generate``; ``progress(i, n)`` may be
            called to report steps.
        on_frame: ``on_frame(frame: Frame)`` with each frame to show (called on the worker thread).
        on_status: ``on_status(text)`` with short progress and timing lines.
        on_error: ``on_error(exc, text)`` with an exception from ``render`` and its formatted traceback.
        settle: seconds without a new request after which the full frame is rendered (>= 0).
        threads: torch intra-op threads of the worker thread (None: torch's default; ATen also takes the
            value as the default of threads started later, the kernel's own thread keeps its count). The apps
            pass 1 for a model on the CPU: a second OpenMP team (the worker's, beside the kernel's) makes GNU OpenMP stop
            spinning and sleep between the many small ops of a small model, which doubled an 8-step frame of
            the default model on 2 cores (74 -> 160 ms, and the kernel's own calls slowed the same way);
            with one worker thread the frame takes 82 ms and the kernel keeps its speed.
    """

    def __init__(self, render: Callable, *, on_frame: Callable[[Frame], None],
                 on_status: Callable[[str], None] | None = None,
                 on_error: Callable[[BaseException, str], None] | None = None, settle: float = 0.3,
                 threads: int | None = None):
        if not callable(render):
            raise TypeError(f"`render` must be callable, got {type(render).__name__}.")
        if not callable(on_frame):
            raise TypeError(f"`on_frame` must be callable, got {type(on_frame).__name__}.")
        if not isinstance(settle, (int, float)) or isinstance(settle, bool) or not settle >= 0:
            raise ValueError(f"`settle` must be a number of seconds >= 0, got {settle!r}.")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"`threads` must be None or an integer >= 1, got {threads!r}.")
        self.threads = threads
        self._render, self._on_frame = render, on_frame
        self._on_status = on_status or (lambda text: None)
        self._on_error = on_error or (lambda exc, text: None)
        self.settle = float(settle)
        self._cond = threading.Condition()
        self._pending: _Job | None = None
        self._running: _Job | None = None
        self._full_due: tuple[float, _Job] | None = None  # (monotonic deadline, the preview it follows)
        self._closed = False
        self._next_id = 0
        self._shown_id = -1
        #: counters: requests made, requests replaced before they ran, frames shown, frames thrown away
        #: (interrupted or older than one already shown), errors
        self.stats = {"requests": 0, "dropped": 0, "frames": 0, "discarded": 0, "errors": 0}
        self.last_frame: Frame | None = None
        self._thread = threading.Thread(target=self._work, name="latentlib-live", daemon=True)
        self._thread.start()

    # -- the kernel's side ------------------------------------------------------------------------
    def request(self, params: dict, *, quality: str = "auto") -> int:
        """Queue a render of ``params``; returns its request id.

        ``quality``: "auto" (a preview now, the full frame once ``settle`` seconds pass without a newer
        request), "preview" (only a preview) or "full" (only the full frame, at once).
        """
        if quality not in QUALITIES:
            raise ValueError(f"`quality` must be one of {', '.join(QUALITIES)}; got {quality!r}.")
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be a dict, got {type(params).__name__}.")
        with self._cond:
            if self._closed:
                raise RuntimeError("this LiveRenderer is closed; make a new one.")
            self._next_id += 1
            job = _Job(dict(params), "full" if quality == "full" else "preview", self._next_id, time.perf_counter(),
                       then_full=quality == "auto")
            if self._pending is not None:
                self.stats["dropped"] += 1
            self._pending, self._full_due = job, None
            self.stats["requests"] += 1
            if self._running is not None and self._running.quality == "full":
                self._running.interrupt.set()  # a full frame of old settings is not worth finishing
            self._cond.notify_all()
            return job.request_id

    def stop(self) -> None:
        """Interrupt what is rendering and forget what waits (the Stop button)."""
        with self._cond:
            if self._pending is not None:
                self.stats["dropped"] += 1
            self._pending, self._full_due = None, None
            if self._running is not None:
                self._running.interrupt.set()
            self._cond.notify_all()
        self._call(self._on_status, "stopped")

    @property
    def busy(self) -> bool:
        """Whether a render runs, waits, or a full frame is scheduled."""
        with self._cond:
            return self._running is not None or self._pending is not None or self._full_due is not None

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until nothing runs, waits or is scheduled; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running is not None or self._pending is not None or self._full_due is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.05))
            return True

    def close(self) -> None:
        """Stop the worker thread (an app's ``close`` calls this)."""
        with self._cond:
            self._closed = True
            self._pending, self._full_due = None, None
            if self._running is not None:
                self._running.interrupt.set()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    # -- the worker's side ------------------------------------------------------------------------
    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._closed:
                if self._pending is not None:
                    job, self._pending = self._pending, None
                    self._running = job
                    return job
                if self._full_due is not None:
                    deadline, preview = self._full_due
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._full_due = None
                        job = _Job(preview.params, "full", preview.request_id, preview.requested_at, then_full=False)
                        self._running = job
                        return job
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        if self.threads is not None:
            import torch

            # This thread's OpenMP team; ATen also takes it as the default of threads started later.
            torch.set_num_threads(self.threads)
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                self._run(job)
            finally:  # whatever happened, the renderer is idle again and waiters wake up
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _call(self, fn, *args) -> bool:
        """Call an app callback; an exception in it goes to ``on_error`` (guarded too). True if it worked."""
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - shown in the app; the worker must survive
            self.stats["errors"] += 1
            if fn is not self._on_error:
                self._call(self._on_error, exc, "".join(traceback.format_exception(exc)))
            return False

    def _run(self, job: _Job) -> None:
        frame = None
        started = time.perf_counter()

        def progress(i: int, n: int) -> None:
            if not job.interrupt.is_set():  # a stopped frame keeps its "stopped" line
                self._call(self._on_status, f"rendering {job.quality}: step {i}/{n}")

        try:
            image = self._render(job.params, job.quality, job.interrupt, progress)
            if not job.interrupt.is_set():
                frame = Frame(image, job.params, job.quality, time.perf_counter() - started, job.request_id,
                              job.requested_at)
        except Exception as exc:  # noqa: BLE001 - shown in the app; the worker must survive
            if not (isinstance(exc, Interrupted) and job.interrupt.is_set()):  # else: stopped, nothing decoded
                self.stats["errors"] += 1
                _free_accelerator_memory()
                self._call(self._on_error, exc, "".join(traceback.format_exception(exc)))
        shown = frame is not None and frame.request_id >= self._shown_id and self._call(self._on_frame, frame)
        if shown:
            self._call(self._on_status, f"{frame.quality} frame in {1000 * frame.seconds:.0f} ms")
        elif job.interrupt.is_set():
            with self._cond:
                idle = self._pending is None
            if idle:
                self._call(self._on_status, "stopped")
        with self._cond:
            if shown:
                self._shown_id = frame.request_id
                self.stats["frames"] += 1
                self.last_frame = frame
            elif frame is not None or job.interrupt.is_set():
                self.stats["discarded"] += 1
            if (job.then_full and shown and not job.interrupt.is_set() and self._pending is None
                    and not self._closed):
                self._full_due = (time.monotonic() + self.settle, job)


def _free_accelerator_memory() -> None:
    """After an error (CUDA out-of-memory above all), give cached GPU memory back so the next frame can run."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001, S110 - best effort
        pass
