"""What every live app shares: the image view, a status line, an error area, Stop, and Export.

An app is an ``ipywidgets.VBox`` (display it, or put it in a layout) that holds its controls as widgets,
whose values are traitlets. Observers snapshot the controls into a plain dict on the kernel's thread and
hand it to a :class:`~lab.live.LiveRenderer`; the worker thread renders; the frame goes to
``app.image`` as PNG bytes (JPEG for large preview frames: :attr:`LiveApp.preview_format`). Tests drive an
app by setting a control's ``value`` and calling :meth:`LiveApp.wait`.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import numbers
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import ipywidgets as widgets
import PIL.Image

from .live import Frame, LiveRenderer

__all__ = ["PREVIEW_FORMATS", "LiveApp", "check_int", "check_number", "frame_bytes", "png_bytes", "read_image",
           "tile"]


def check_int(name: str, value, low: int, high: int) -> int:
    """``value`` if it is an integer in [low, high]; else a ValueError naming ``name`` (widgets would clamp)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"`{name}` must be an integer in [{low}, {high}], got {value!r}.")
    return int(value)


def check_number(name: str, value, low: float, high: float) -> float:
    """``value`` if it is a number in [low, high]; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ValueError(f"`{name}` must be a number in [{low:g}, {high:g}], got {value!r}.")
    return float(value)


def check_common(*, steps: int, guidance: float, seed: int, preview_steps: int | None, display_height: int) -> int:
    """The settings every app shares; returns the preview's steps (default ``min(8, steps)``)."""
    check_int("steps", steps, 1, 1000)
    check_number("guidance", guidance, 0.0, 100.0)
    check_int("seed", seed, 0, 2**32 - 1)
    check_int("display_height", display_height, 16, 4096)
    return min(8, steps) if preview_steps is None else check_int("preview_steps", preview_steps, 1, 1000)


def read_image(what: str, image, size: tuple[int, int]) -> PIL.Image.Image:
    """An uploaded or given image as RGB PIL, checked: it must be an image file (or PIL image) of exactly
    ``size`` (height, width); nothing is resized without being asked."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            image = PIL.Image.open(io.BytesIO(bytes(image)))
            image.load()
        except (PIL.UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"the {what} upload is not an image PIL can read ({exc}).") from None
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"the {what} image must be a PIL image or image file bytes, got {type(image).__name__}.")
    h, w = size
    if image.size != (w, h):
        raise ValueError(f"the {what} image is {image.width}x{image.height}; this model makes {w}x{h} images. "
                         f"Resize or crop it to {w}x{h} first.")
    return image.convert("RGB")


def tile(images: list[PIL.Image.Image], gap: int = 2) -> PIL.Image.Image:
    """Images side by side on a white background (a small grid of seeds in one frame)."""
    if len(images) == 1:
        return images[0]
    w, h = images[0].size
    out = PIL.Image.new("RGB", (len(images) * w + (len(images) - 1) * gap, h), "white")
    for i, im in enumerate(images):
        out.paste(im.convert("RGB"), (i * (w + gap), 0))
    return out


def _enlarged(image: PIL.Image.Image, height: int | None) -> PIL.Image.Image:
    """``image`` scaled up by a whole factor (nearest neighbour: pixels stay visible) toward ``height``."""
    if height is not None and image.height < height:
        k = max(1, height // image.height)
        image = image.resize((image.width * k, image.height * k), PIL.Image.NEAREST)
    return image


def png_bytes(image: PIL.Image.Image, height: int | None = None) -> bytes:
    """PNG bytes of ``image``, scaled (nearest neighbour, pixels stay visible) to ``height`` pixels high."""
    buffer = io.BytesIO()
    _enlarged(image, height).save(buffer, "PNG", compress_level=1)  # speed over size: frames are shown, not kept
    return buffer.getvalue()


#: ``LiveApp.preview_format`` values. "auto": JPEG for preview frames of 256x256 pixels or more, PNG otherwise.
PREVIEW_FORMATS = ("auto", "png", "jpeg")
#: Below this many pixels a preview stays PNG under "auto": small frames are shown enlarged pixel by pixel,
#: where JPEG's artefacts show and PNG is fast anyway.
_JPEG_FROM_PIXELS = 256 * 256


def frame_bytes(image: PIL.Image.Image, height: int | None, fmt: str) -> bytes:
    """``image`` encoded as "png" (:func:`png_bytes`) or "jpeg" (quality 90 without chroma subsampling, so
    colour edges stay sharp; for live previews: bench_lab's frame_encoding times both)."""
    if fmt == "png":
        return png_bytes(image, height)
    if fmt != "jpeg":
        raise ValueError(f"`fmt` must be 'png' or 'jpeg', got {fmt!r}.")
    image = _enlarged(image, height)
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, "JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def _worker_threads(model, threads):
    """"auto": one torch thread for the render worker when the model runs on the CPU (see
    :class:`~lab.live.LiveRenderer`'s ``threads``), torch's default otherwise."""
    if threads == "auto":
        device = getattr(model, "device", None)
        return 1 if getattr(device, "type", "cpu") == "cpu" else None
    return threads


class LiveApp(widgets.VBox):
    """Base of the live apps. Subclasses set ``self.controls`` (a widget) and implement
    ``_render(params, quality, interrupt, progress) -> PIL image``, ``_params() -> dict`` and
    ``_record(frame) -> (metadata, parameters_text)`` for export.

    Attributes:
        image: the ``ipywidgets.Image`` the frames go to.
        status: one line: progress, the last frame's time.
        error: the last error (empty when the last render worked).
        frame: the last frame shown (:class:`~lab.live.Frame`), or None.
        latencies: seconds from each request to its frame's bytes being set on ``image`` (for bench/).
        preview_format: how preview frames are sent to the view: "auto" (default; JPEG for frames of
            256x256 pixels or more, whose PNG encoding takes about as long as a GPU takes to make a
            512x512 frame), "png" or "jpeg". Full frames are always PNG; Export always writes PNG.
    """

    def __init__(self, model, *, display_height: int = 256, settle: float = 0.3, export_path: str = "frame.png",
                 threads: int | str | None = "auto"):
        super().__init__()
        self.model = model
        self.display_height = display_height
        self.image = widgets.Image(format="png", layout=widgets.Layout(min_height=f"{display_height}px"))
        self.image.add_class("latentlib-frame")
        self.status = widgets.HTML(value="<code>ready</code>")
        self.error = widgets.HTML(value="")
        self.notice = widgets.HTML(value="")
        self.stop_button = widgets.Button(description="Stop", icon="stop", tooltip="interrupt the frame being made",
                                          layout=widgets.Layout(width="80px"))
        self.export_path = widgets.Text(value=export_path, description="file", layout=widgets.Layout(width="320px"))
        self._default_export = export_path
        self.export_overwrite = widgets.Checkbox(value=False, description="overwrite", indent=False,
                                                 layout=widgets.Layout(width="100px"))
        self.export_button = widgets.Button(description="Export", icon="download",
                                            tooltip="save the frame as PNG with its parameters and provenance")
        self.frame: Frame | None = None
        self._preview_format = "auto"
        self.last_error: BaseException | None = None
        self.latencies: list[float] = []
        self._holding = False
        self._embeddings: dict[str, object] = {}  # prompt text -> PromptEmbedding (see _embed)
        self._notes: dict[str, list[str]] = {}  # prompt text -> warnings its embedding gave
        self.stop_button.on_click(self._handler(lambda _: self.renderer.stop()))
        self.export_button.on_click(self._handler(lambda _: self.export()))
        self._error_source: str | None = None  # "render" or "action": what the error shown came from
        self.renderer = LiveRenderer(self._render, on_frame=self._show, on_status=self._set_status,
                                     on_error=lambda exc, text: self._show_error(exc, text, source="render"),
                                     settle=settle, threads=_worker_threads(model, threads))

    def _layout(self, controls: widgets.Widget) -> None:
        bar = widgets.HBox([self.stop_button, self.status])
        export = widgets.HBox([self.export_path, self.export_overwrite, self.export_button])
        self.children = [widgets.HBox([controls, widgets.VBox([self.image, bar])]), self.notice, self.error, export]

    @property
    def preview_format(self) -> str:
        return self._preview_format

    @preview_format.setter
    def preview_format(self, value: str) -> None:
        if value not in PREVIEW_FORMATS:
            raise ValueError(f"`preview_format` must be one of {', '.join(map(repr, PREVIEW_FORMATS))}, got {value!r}.")
        self._preview_format = value

    def _format_for(self, frame: Frame) -> str:
        if frame.quality != "preview" or self._preview_format == "png":
            return "png"
        if self._preview_format == "jpeg":
            return "jpeg"
        return "jpeg" if frame.image.width * frame.image.height >= _JPEG_FROM_PIXELS else "png"

    # -- driving it -------------------------------------------------------------------------------
    def refresh(self, quality: str = "auto") -> int:
        """Render the current settings (what a control change does); returns the request id."""
        return self.renderer.request(self._params(), quality=quality)

    def wait(self, timeout: float | None = 120.0) -> bool:
        """Block until the app is idle (the full frame is shown); False if ``timeout`` passed first."""
        return self.renderer.wait(timeout)

    def close(self) -> None:
        """Stop the render thread and close the widgets."""
        renderer = getattr(self, "renderer", None)  # absent when a constructor refused its arguments
        if renderer is not None:
            renderer.close()
        super().close()

    def _handler(self, fn: Callable) -> Callable:
        """Wrap an observer or click handler so its errors are shown in the app, not lost in a log."""

        @functools.wraps(fn)
        def run(*args, **kwargs):
            self._clear_error("action")
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown in the app; the app keeps working
                self._show_error(exc, "")
                return None

        return run

    def _watch(self, controls, quality: str = "auto") -> None:
        """Re-render when any of ``controls`` changes value (not while :meth:`holding`)."""
        def changed(change, quality=quality):
            if not self._holding:
                self.refresh(quality)

        for control in controls:
            control.observe(self._handler(changed), names="value")

    @contextlib.contextmanager
    def holding(self):
        """Change several controls without a frame per change (call :meth:`refresh` after)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    # -- the worker's callbacks -------------------------------------------------------------------
    def _show(self, frame: Frame) -> None:
        self.frame = frame
        fmt = self._format_for(frame)
        data = frame_bytes(frame.image, self.display_height, fmt)
        with self.image.hold_sync():  # the view gets the bytes and their format in one message
            self.image.format = fmt
            self.image.value = data
        self.latencies.append(time.perf_counter() - frame.requested_at)
        self._clear_error("render")

    def _set_status(self, text: str) -> None:
        self.status.value = f"<code>{html.escape(text)}</code>"

    def _clear_error(self, source: str) -> None:
        """A good frame clears a render error; a new user action clears the error of the last action."""
        if self._error_source in (source, "render" if source == "action" else None):
            self.error.value, self.last_error, self._error_source = "", None, None

    def _show_error(self, exc: BaseException, text: str, source: str = "action") -> None:
        self.last_error, self._error_source = exc, source
        message = f"{type(exc).__name__}: {exc}"
        if "out of memory" in str(exc).lower():
            message += " (try fewer images, fewer steps or a smaller size; the app keeps working)"
        self.error.value = f"<pre style='color:#b00020;white-space:pre-wrap'>{html.escape(message)}</pre>"
        self._set_status("error; the last good frame stays")

    def _show_notice(self, lines: list[str]) -> None:
        self.notice.value = "".join(f"<div style='color:#8a5300'>{html.escape(line)}</div>" for line in lines)

    def _embed(self, text: str):
        """``text``'s PromptEmbedding, made once per text on the kernel's thread and reused for every frame;
        the warnings it gave (unknown words) are kept in ``_notes`` for the notice line."""
        if text not in self._embeddings:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._embeddings[text] = self.model.embed(text)
            # catch_warnings records every thread's warnings meanwhile (the worker's too): those about this text
            # become its notice, the others are given back to the warnings machinery as they came
            mine = [w for w in caught if str(w.message).startswith(f"prompt {text!r} ")]
            for w in caught:
                if w not in mine:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            self._notes[text] = [str(w.message) for w in mine]
        return self._embeddings[text]

    # -- export -----------------------------------------------------------------------------------
    def export(self, path=None, *, overwrite: bool | None = None) -> Path:
        """Save the frame shown as PNG (or another format by extension) with its parameters and
        provenance (:func:`latentlib.export.save_image`). Never overwrites unless asked."""
        frame, path, overwrite = self._export_target(path, overwrite)
        saved = self._export_frame(frame, path, overwrite)
        self._set_status(f"saved {saved}")
        return saved

    def _export_target(self, path, overwrite) -> tuple[Frame, object, bool]:
        """The frame to save (read once: the worker may show a newer one meanwhile), the path and the
        overwrite choice, from the arguments or else the export widgets."""
        frame = self.frame
        if frame is None:
            raise ValueError("there is no frame to export yet; wait for the first image.")
        path = self.export_path.value if path is None else path
        if not str(path).strip():
            raise ValueError(f"`path` is empty; give a file name such as {self._default_export}.")
        overwrite = self.export_overwrite.value if overwrite is None else overwrite
        return frame, path, bool(overwrite)

    def _export_frame(self, frame: Frame, path, overwrite: bool) -> Path:
        from latentlib import export

        metadata, parameters = self._record(frame)
        return export.save_image(frame.image, path, metadata=metadata, parameters=parameters, overwrite=overwrite)

    # -- subclasses -------------------------------------------------------------------------------
    def _params(self) -> dict:
        raise NotImplementedError

    def _render(self, params: dict, quality: str, interrupt, progress) -> PIL.Image.Image:
        raise NotImplementedError

    def _record(self, frame: Frame) -> tuple[dict, str]:
        raise NotImplementedError
