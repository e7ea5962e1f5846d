"""lab.live.LiveRenderer: newest request wins, preview then full, interrupts, errors, stop."""

import threading
import time

import pytest

from lab.live import LiveRenderer
from latentlib import Interrupted


class Recorder:
    """A render function that records what it was asked for; `gate` holds it until released."""

    def __init__(self, *, slow_full: bool = False):
        self.calls, self.frames, self.errors, self.statuses = [], [], [], []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.slow_full = slow_full

    def render(self, params, quality, interrupt, progress):
        self.calls.append((params["v"], quality))
        self.started.set()
        self.gate.wait(10)
        if params.get("fail"):
            raise RuntimeError(f"bad value {params['v']}")
        if quality == "full" and self.slow_full:
            for i in range(200):  # a long frame that honours the interrupt flag, as generate does
                if interrupt.is_set() or params.get("stray"):
                    raise Interrupted(i, 200, None)
                progress(i, 200)
                time.sleep(0.005)
        return f"{quality}:{params['v']}"

    def renderer(self, settle=0.05):
        return LiveRenderer(self.render, on_frame=self.frames.append, on_status=self.statuses.append,
                            on_error=lambda exc, text: self.errors.append((exc, text)), settle=settle)


def test_auto_request_gives_a_preview_then_the_full_frame():
    rec = Recorder()
    r = rec.renderer()
    r.request({"v": 1})
    assert r.wait(10)
    assert rec.calls == [(1, "preview"), (1, "full")]
    assert [f.image for f in rec.frames] == ["preview:1", "full:1"]
    assert r.last_frame.quality == "full" and r.stats["frames"] == 2
    assert any("full frame in" in s for s in rec.statuses)
    r.close()


def test_newest_request_wins_and_stale_ones_are_dropped():
    rec = Recorder()
    r = rec.renderer()
    rec.gate.clear()
    r.request({"v": 0})
    assert rec.started.wait(5)  # v=0 is rendering and held
    for v in range(1, 6):
        r.request({"v": v})
    rec.gate.set()
    assert r.wait(10)
    # v=0's preview finishes (previews are not interrupted); 1..4 never run; 5 runs as preview then full
    assert rec.calls == [(0, "preview"), (5, "preview"), (5, "full")]
    assert r.stats["dropped"] == 4 and r.stats["requests"] == 6
    assert rec.frames[-1].image == "full:5"
    r.close()


def test_a_running_full_frame_is_interrupted_by_a_newer_request_and_not_shown():
    rec = Recorder(slow_full=True)
    r = rec.renderer(settle=0.0)
    r.request({"v": 1}, quality="full")
    assert rec.started.wait(5)
    time.sleep(0.05)
    r.request({"v": 2}, quality="preview")
    assert r.wait(10)
    assert rec.calls == [(1, "full"), (2, "preview")]
    assert [f.image for f in rec.frames] == ["preview:2"]  # the interrupted full frame was thrown away
    assert r.stats["discarded"] == 1 and r.stats["errors"] == 0 and rec.errors == []  # stopped, not failed
    r.close()


def test_an_interrupted_raised_without_the_jobs_interrupt_is_an_error():
    rec = Recorder(slow_full=True)
    r = rec.renderer()
    r.request({"v": 1, "stray": True}, quality="full")
    assert r.wait(10)
    assert len(rec.errors) == 1 and isinstance(rec.errors[0][0], Interrupted) and r.stats["errors"] == 1
    r.close()


def test_an_error_is_reported_and_the_renderer_keeps_working():
    rec = Recorder()
    r = rec.renderer()
    r.request({"v": 1, "fail": True}, quality="full")
    assert r.wait(10)
    assert len(rec.errors) == 1 and "bad value 1" in str(rec.errors[0][0]) and "Traceback" in rec.errors[0][1]
    assert rec.frames == [] and r.stats["errors"] == 1
    r.request({"v": 2}, quality="full")
    assert r.wait(10)
    assert [f.image for f in rec.frames] == ["full:2"]
    r.close()


def test_stop_interrupts_and_forgets_what_waits():
    rec = Recorder(slow_full=True)
    r = rec.renderer()
    r.request({"v": 1}, quality="full")
    assert rec.started.wait(5)
    r.request({"v": 2}, quality="full")  # interrupts 1, waits
    r.stop()  # drops 2
    assert r.wait(10)
    assert rec.frames == [] and "stopped" in rec.statuses  # 1 interrupted; 2 dropped or interrupted
    r.close()


def test_frames_are_never_older_than_one_already_shown():
    rec = Recorder()
    r = rec.renderer(settle=0.0)
    for v in range(20):
        r.request({"v": v})
        time.sleep(0.001)
    assert r.wait(10)
    ids = [f.request_id for f in rec.frames]
    assert ids == sorted(ids) and rec.frames[-1].image == "full:19"
    r.close()


def test_bad_arguments_are_refused():
    rec = Recorder()
    with pytest.raises(ValueError, match=r"`settle` must be a number of seconds >= 0, got -1"):
        LiveRenderer(rec.render, on_frame=print, settle=-1)
    with pytest.raises(TypeError, match=r"`render` must be callable, got int"):
        LiveRenderer(3, on_frame=print)
    r = rec.renderer()
    with pytest.raises(ValueError, match=r"`quality` must be one of auto, preview, full; got 'best'"):
        r.request({"v": 1}, quality="best")
    with pytest.raises(TypeError, match=r"`params` must be a dict, got list"):
        r.request([1])
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.request({"v": 1})


def test_a_request_within_settle_replaces_the_scheduled_full_frame():
    rec = Recorder()
    r = rec.renderer(settle=0.5)
    r.request({"v": 1})
    deadline = time.monotonic() + 5
    while not rec.frames and time.monotonic() < deadline:
        time.sleep(0.005)
    r.request({"v": 2})  # inside the 0.5 s settle of v=1's preview
    assert r.wait(10)
    assert rec.calls == [(1, "preview"), (2, "preview"), (2, "full")]  # no full frame of v=1
    r.close()


def test_stop_while_a_preview_is_being_shown_cancels_its_full_frame():
    rec = Recorder()
    holder = {}

    def show(frame):
        holder["r"].stop()  # Stop pressed while the preview's bytes go out
        rec.frames.append(frame)

    r = LiveRenderer(rec.render, on_frame=show, on_status=rec.statuses.append, settle=0.0)
    holder["r"] = r
    r.request({"v": 1})
    assert r.wait(10)
    time.sleep(0.05)
    assert rec.calls == [(1, "preview")] and not r.busy
    r.close()


def test_a_failing_frame_view_is_reported_and_the_worker_survives():
    rec = Recorder()
    errors = []
    shown = []

    def show(frame):
        if frame.params["v"] == 1:
            raise ValueError("the view broke")
        shown.append(frame.image)

    def broken_error_view(exc, text):
        errors.append(str(exc))
        raise RuntimeError("and so did the error view")

    r = LiveRenderer(rec.render, on_frame=show, on_error=broken_error_view, settle=0.0)
    r.request({"v": 1}, quality="full")
    assert r.wait(10) and errors == ["the view broke"] and not r.busy
    r.request({"v": 2}, quality="full")
    assert r.wait(10) and shown == ["full:2"]
    r.close()
