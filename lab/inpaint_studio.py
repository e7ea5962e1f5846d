"""InpaintStudio: paint a mask over an image, shape it (grow, erode, feather: shown as you move the sliders),
inpaint, and compare before and after."""

from __future__ import annotations

import io
import json

import ipywidgets as widgets
import numpy as np
import PIL.Image

from .app import LiveApp, check_common, check_int, check_number, png_bytes, read_image
from .live import Frame

__all__ = ["InpaintStudio"]

OVERLAY = (255, 0, 255)  # the mask is shown in magenta over the image


class InpaintStudio(LiveApp):
    """Paint what to repaint, then inpaint it with :meth:`latentlib.Model.inpaint`.

    Args:
        model: a :class:`latentlib.Model`.
        image: the starting image (PIL, any size the VAE takes); or upload one, take a scene of the shapes
            world (``scene`` box), or call :meth:`set_image` with another app's frame.
        prompt, negative_prompt, seed, steps, guidance: generation settings.
        strength, grow, erode, feather, masked_content, mode, paste_back, only_masked, padding: as in
            :func:`latentlib.inpaint.inpaint`.
        brush: brush radius in image pixels.

    The canvas shows the image with the mask in magenta: the painted mask after grow, erode and feather, so
    moving those sliders shows their effect at once. Drag to paint (or erase, with the eraser on); Undo takes
    back the last stroke; Clear empties the mask. Run inpaints; the result appears beside the original.
    Tests drive the canvas through :meth:`stroke` (what mouse down, moves and up do).

    Example:
        >>> studio = InpaintStudio(model, shapes.render(shapes.sample_scene(3)), prompt="a blue square")
        >>> studio.stroke([(30, 30), (34, 34)]); studio.run(); studio.wait(); studio.frame.image
    """

    def __init__(self, model, image=None, *, prompt: str = "", negative_prompt: str = "", seed: int = 0,
                 steps: int = 20, guidance: float = 5.0, strength: float = 1.0, grow: int = 4, erode: int = 0,
                 feather: int = 2, masked_content: str = "original", mode: str = "auto", paste_back: bool = True,
                 only_masked: bool = False, padding: int = 32, brush: int = 4, display_height: int = 256):
        from latentlib.inpaint import CONTENTS, MODES

        check_common(steps=steps, guidance=guidance, seed=seed, preview_steps=None, display_height=display_height)
        check_number("strength", strength, 0.01, 1.0)
        for name, value, high in (("grow", grow, 64), ("erode", erode, 64), ("feather", feather, 64),
                                  ("padding", padding, 256)):
            check_int(name, value, 0, high)  # the sliders' ranges: a widget would clamp silently
        check_int("brush", brush, 1, 64)
        if masked_content not in CONTENTS:
            raise ValueError(f"`masked_content` must be one of {', '.join(CONTENTS)}; got {masked_content!r}.")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(MODES)}; got {mode!r}.")
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not isinstance(value, str):
                raise TypeError(f"`{name}` must be a string, got {type(value).__name__}.")
        super().__init__(model, display_height=display_height, settle=0.0, export_path="inpainted.png")
        from ipycanvas import MultiCanvas

        box = widgets.Layout(width="300px")
        self.prompt = widgets.Text(value=prompt, description="prompt", layout=box)
        self.negative_prompt = widgets.Text(value=negative_prompt, description="negative", layout=box)
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**32 - 1, description="seed", layout=box)
        self.steps = widgets.IntSlider(value=steps, min=1, max=max(100, steps), description="steps")
        self.guidance = widgets.FloatSlider(value=guidance, min=0.0, max=max(20.0, guidance), step=0.5,
                                            description="guidance")
        self.strength = widgets.FloatSlider(value=strength, min=0.01, max=1.0, step=0.01, description="strength")
        self.grow = widgets.IntSlider(value=grow, min=0, max=64, description="grow")
        self.erode = widgets.IntSlider(value=erode, min=0, max=64, description="erode")
        self.feather = widgets.IntSlider(value=feather, min=0, max=64, description="feather")
        self.masked_content = widgets.Dropdown(options=CONTENTS, value=masked_content, description="content")
        self.mode = widgets.Dropdown(options=MODES, value=mode, description="mode")
        self.paste_back = widgets.Checkbox(value=paste_back, description="paste back", indent=False)
        self.only_masked = widgets.Checkbox(value=only_masked, description="only masked", indent=False)
        self.padding = widgets.IntSlider(value=padding, min=0, max=256, description="padding")
        self.brush = widgets.IntSlider(value=brush, min=1, max=64, description="brush")
        self.eraser = widgets.ToggleButton(value=False, description="eraser", icon="eraser")
        self.undo_button = widgets.Button(description="Undo", icon="undo")
        self.clear_button = widgets.Button(description="Clear", icon="trash")
        self.run_button = widgets.Button(description="Inpaint", icon="paint-brush", button_style="primary")
        self.upload = widgets.FileUpload(accept="image/*", description="image")
        self.scene = widgets.BoundedIntText(value=0, min=0, max=2**31 - 1, description="scene", layout=box)
        self.scene_button = widgets.Button(description="Shapes scene", icon="shapes")
        self.before = widgets.Image(format="png")
        self.canvas = MultiCanvas(2, width=display_height, height=display_height)
        self.mask: np.ndarray | None = None  # (H, W) float32 in [0, 1], the painted mask (1 = repaint)
        self.source: PIL.Image.Image | None = None
        self._undo: list[np.ndarray] = []
        self._drawing = False
        self._last: tuple[float, float] | None = None

        self.undo_button.on_click(self._handler(lambda _: self.undo()))
        self.clear_button.on_click(self._handler(lambda _: self.clear()))
        self.run_button.on_click(self._handler(lambda _: self.run()))
        self.upload.observe(self._handler(lambda change: change["new"] and self.set_image(
            change["new"][-1]["content"])), names="value")
        self.scene_button.on_click(self._handler(lambda _: self.set_scene(self.scene.value)))
        for control in (self.grow, self.erode, self.feather):
            control.observe(self._handler(lambda change: self._draw_overlay()), names="value")
        top = self.canvas[1]
        top.on_mouse_down(self._handler(lambda x, y: self._down(x, y)))
        top.on_mouse_move(self._handler(lambda x, y: self._move(x, y)))
        top.on_mouse_up(self._handler(lambda x, y: self._up(x, y)))
        top.on_mouse_out(self._handler(lambda x, y: self._up(x, y)))

        painting = widgets.VBox([self.canvas, widgets.HBox([self.brush, self.eraser]),
                                 widgets.HBox([self.undo_button, self.clear_button]),
                                 widgets.HBox([self.upload, self.scene, self.scene_button])])
        settings = widgets.VBox([self.prompt, self.negative_prompt, self.seed, self.steps, self.guidance,
                                 self.strength, self.grow, self.erode, self.feather, self.masked_content, self.mode,
                                 widgets.HBox([self.paste_back, self.only_masked]), self.padding, self.run_button])
        compare = widgets.HBox([widgets.VBox([widgets.HTML("<b>before</b>"), self.before]),
                                widgets.VBox([widgets.HTML("<b>after</b>"), self.image])])
        export = widgets.HBox([self.export_path, self.export_overwrite, self.export_button])
        self.children = [widgets.HBox([painting, settings]), compare, widgets.HBox([self.stop_button, self.status]),
                         self.notice, self.error, export]
        if image is not None:
            self.set_image(image)
        self._set_status("paint the area to repaint, then Inpaint")

    # -- the image ----------------------------------------------------------------------------------
    def set_image(self, image) -> None:
        """Work on ``image`` (PIL, image file bytes, or another app's ``frame.image``); the mask is cleared.
        Its sides must be divisible by the VAE's factor."""
        image = read_image("studio", image, _size_of(image))
        f = self.model.vae_scale_factor
        if image.width % f or image.height % f:
            raise ValueError(f"the image is {image.width}x{image.height}; this model's VAE needs both sides "
                             f"divisible by {f}. Crop or resize it first.")
        self.source = image
        self.mask = np.zeros((image.height, image.width), np.float32)
        self._undo.clear()
        self.before.value = png_bytes(image, self.display_height)
        scale = self._scale()
        self.canvas.width, self.canvas.height = image.width * scale, image.height * scale
        big = np.asarray(image.resize((image.width * scale, image.height * scale), PIL.Image.NEAREST))
        self.canvas[0].put_image_data(big, 0, 0)
        self._draw_overlay()

    def set_scene(self, seed: int) -> None:
        """Work on scene ``seed`` of the shapes world's test split, at the model's size."""
        from latentlib import shapes

        self.set_image(shapes.render(shapes.sample_scene(int(seed), "test"), size=self.model.default_size[0]))

    def _scale(self) -> int:
        return max(1, self.display_height // self.source.height) if self.source is not None else 1

    # -- painting -----------------------------------------------------------------------------------
    def _need_image(self) -> None:
        if self.source is None:
            raise ValueError("there is no image yet: upload one, pick a scene, or call set_image.")

    def _dab(self, x: float, y: float) -> None:
        """Paint (or erase) a disk of the brush's radius at image pixel (x, y)."""
        h, w = self.mask.shape
        r = self.brush.value
        yy, xx = np.ogrid[:h, :w]
        disk = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        self.mask[disk] = 0.0 if self.eraser.value else 1.0

    def _segment(self, a, b) -> None:
        steps = max(1, int(np.ceil(np.hypot(b[0] - a[0], b[1] - a[1]))))
        for t in np.linspace(0, 1, steps + 1):
            self._dab(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))

    def _to_image(self, x, y) -> tuple[float, float]:
        """Canvas pixels -> image pixels (the centre of image pixel i is canvas (i + 0.5) * scale)."""
        s = self._scale()
        return x / s - 0.5, y / s - 0.5

    def _down(self, x, y) -> None:
        self._need_image()
        self._undo.append(self.mask.copy())
        self._drawing, self._last = True, self._to_image(x, y)
        self._dab(*self._last)
        self._draw_overlay(raw=True)

    def _move(self, x, y) -> None:
        if not self._drawing:
            return
        point = self._to_image(x, y)
        self._segment(self._last, point)
        self._last = point
        self._draw_overlay(raw=True)  # while painting: the brush marks only (grow/feather on a big image are slow)

    def _up(self, x, y) -> None:
        if self._drawing:
            self._drawing, self._last = False, None
            self._draw_overlay()

    def stroke(self, points, *, erase: bool = False) -> None:
        """Paint a stroke through ``points`` (image pixels, (x, y)), as a mouse drag on the canvas would."""
        s = self._scale()
        points = [(float(x) + 0.5, float(y) + 0.5) for x, y in points]  # image pixel centres
        if not points:
            raise ValueError("`points` is empty; give at least one (x, y).")
        previous = self.eraser.value
        self.eraser.value = erase
        try:
            self._down(points[0][0] * s, points[0][1] * s)
            for x, y in points[1:]:
                self._move(x * s, y * s)
            self._up(points[-1][0] * s, points[-1][1] * s)
        finally:
            self.eraser.value = previous

    def undo(self) -> None:
        """Take back the last stroke (or Clear)."""
        if not self._undo:
            raise ValueError("nothing to undo.")
        self.mask = self._undo.pop()
        self._draw_overlay()

    def clear(self) -> None:
        """Empty the mask (Undo brings it back)."""
        self._need_image()
        self._undo.append(self.mask.copy())
        self.mask[:] = 0.0
        self._draw_overlay()

    def shaped_mask(self) -> np.ndarray:
        """The mask as inpainting will use it: painted, grown, eroded and feathered ``(H, W)`` in [0, 1]."""
        from latentlib import masks

        self._need_image()
        if not self.mask.any():
            return self.mask.copy()
        m = masks.grow(self.mask, self.grow.value)
        if self.erode.value:
            try:
                m = masks.erode(m, self.erode.value)
            except ValueError:  # eroded to nothing: shown as empty; Inpaint will say why
                return np.zeros_like(self.mask)
        return masks.feather(m, self.feather.value).numpy()

    def _draw_overlay(self, *, raw: bool = False) -> None:
        if self.source is None:
            return
        shaped = self.mask if raw else self.shaped_mask()
        s = self._scale()
        alpha = (np.kron(shaped, np.ones((s, s), np.float32)) * 140).astype(np.uint8)
        rgba = np.zeros((*alpha.shape, 4), np.uint8)
        rgba[..., :3] = OVERLAY
        rgba[..., 3] = alpha
        layer = self.canvas[1]
        layer.clear()
        layer.put_image_data(rgba, 0, 0)

    # -- inpainting ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Inpaint the painted area with the settings shown (off the kernel's thread); returns the request id."""
        self._need_image()
        if not self.mask.any():
            raise ValueError("the mask is empty: paint the area to repaint first.")
        return self.refresh("full")

    def _params(self) -> dict:
        self._need_image()
        return {"image": self.source, "mask": self.mask.copy(), "prompt": self.prompt.value,
                "negative_prompt": self.negative_prompt.value or None, "seed": self.seed.value,
                "steps": self.steps.value, "guidance": self.guidance.value, "strength": self.strength.value,
                "grow": self.grow.value, "erode": self.erode.value, "feather": self.feather.value,
                "masked_content": self.masked_content.value, "mode": self.mode.value,
                "paste_back": self.paste_back.value, "only_masked": self.only_masked.value,
                "padding": self.padding.value}

    def _render(self, p: dict, quality: str, interrupt, progress):
        settings = {k: v for k, v in p.items() if k not in ("image", "mask", "prompt")}
        return self.model.inpaint(p["image"], p["mask"], p["prompt"], interrupt=interrupt, progress=False,
                                  callback=lambda step: progress(step.index + 1, step.total), **settings)[0]

    def _record(self, frame: Frame) -> tuple[dict, str]:
        import base64
        import hashlib

        from latentlib import export

        p = frame.params
        mask_png = io.BytesIO()
        PIL.Image.fromarray((p["mask"] * 255).astype(np.uint8)).save(mask_png, "PNG")
        recipe = {k: v for k, v in p.items() if k not in ("image", "mask")}
        recipe["image_sha256"] = hashlib.sha256(p["image"].tobytes()).hexdigest()
        recipe["mask_png_base64"] = base64.b64encode(mask_png.getvalue()).decode("ascii")
        metadata = {"format": 1, "figure": "inpaint", "recipe": recipe, "model": export.model_record(self.model),
                    "versions": export.versions()}
        h, w = p["image"].height, p["image"].width
        parameters = export.parameters_text(
            p["prompt"], negative_prompt=p["negative_prompt"], steps=p["steps"],
            sampler=export.scheduler_name(self.model.scheduler), guidance=p["guidance"], seed=p["seed"], width=w,
            height=h, model_name=self.model.name, model_hash=export.weights_sha256(self.model),
            extra={"Denoising strength": p["strength"], "Mask blur": p["feather"],
                   "Inpaint": json.dumps({k: p[k] for k in ("grow", "erode", "masked_content", "mode",
                                                          "only_masked", "padding", "paste_back")})})
        return metadata, parameters

    def export(self, path=None, *, overwrite: bool | None = None):
        """Save the result (PNG with its parameters, the mask inside the metadata) and the mask beside it
        as ``<name>.mask.png``. Neither file is overwritten unless asked."""
        from pathlib import Path

        from latentlib import export as ex

        frame, path, overwrite = self._export_target(path, overwrite)  # one frame: its result and its mask
        mask_path = Path(str(path)).with_suffix(".mask.png")
        if mask_path.exists() and not overwrite:
            raise FileExistsError(f"{mask_path} exists; tick 'overwrite' to replace it (nothing was written).")
        saved = self._export_frame(frame, path, overwrite)
        mask_image = PIL.Image.fromarray((frame.params["mask"] * 255).astype(np.uint8))
        ex.save_image(mask_image, mask_path, metadata={"mask_of": saved.name}, overwrite=overwrite)
        self._set_status(f"saved {saved} and {mask_path.name}")
        return saved


def _size_of(image) -> tuple[int, int]:
    """(height, width) of an image (PIL or file bytes), so read_image accepts any size here."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            with PIL.Image.open(io.BytesIO(bytes(image))) as im:
                return im.height, im.width
        except (PIL.UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"the studio upload is not an image PIL can read ({exc}).") from None
    raise TypeError(f"the studio image must be a PIL image or image file bytes, got {type(image).__name__}.")
