"""Interpolator: two endpoints (seeds, prompts or images), slerp or lerp, a t slider and a strip of frames."""

from __future__ import annotations

import hashlib

import ipywidgets as widgets
import PIL.Image
import torch

from .app import LiveApp, check_common, check_int, check_number, png_bytes, read_image, tile
from .live import Frame

__all__ = ["Interpolator"]

BETWEEN = ("seeds", "prompts", "images")
METHODS = ("slerp", "lerp")


class Interpolator(LiveApp):
    """Walk between two endpoints; ``t`` picks the frame shown, ``frames`` sets the strip below it.

    Args:
        model: a :class:`latentlib.Model`.
        between: "seeds" (their initial noise is interpolated; ``prompt`` fixed), "prompts" (their
            embeddings are interpolated; ``seed`` fixed) or "images" (their VAE latents are interpolated,
            then decoded, or re-noised and denoised with ``prompt`` when ``strength`` > 0).
        start, end: the endpoints: seeds (ints), prompts (str) or images (PIL, or set later by upload or
            :meth:`set_image`).
        method: "slerp" (keeps the norm of Gaussian noise) or "lerp".
        t: the position shown, in [0, 1]; frames: the strip's length (ends included), 2 to 16.
        strength: images only: how much of the schedule re-runs on the interpolated latents, in [0, 1].

    Example:
        >>> app = Interpolator(model, between="seeds", start=0, end=1, prompt="a red circle")
        >>> app.t.value = 0.5; app.wait(); app.frame.image
    """

    def __init__(self, model, *, between: str = "seeds", start=None, end=None, prompt: str = "", seed: int = 0,
                 method: str = "slerp", t: float = 0.5, frames: int = 8, strength: float = 0.0, steps: int = 20,
                 guidance: float = 5.0, preview_steps: int | None = None, settle: float = 0.3,
                 display_height: int = 256):
        if between not in BETWEEN:
            raise ValueError(f"`between` must be one of {', '.join(BETWEEN)}; got {between!r}.")
        if method not in METHODS:
            raise ValueError(f"`method` must be 'slerp' or 'lerp'; got {method!r}.")
        check_number("t", t, 0.0, 1.0)
        check_int("frames", frames, 2, 16)
        check_number("strength", strength, 0.0, 1.0)
        preview_steps = check_common(steps=steps, guidance=guidance, seed=seed, preview_steps=preview_steps,
                                     display_height=display_height)
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a string, got {type(prompt).__name__}.")
        for name, value in (("start", start), ("end", end)):
            if value is None:
                continue
            if between == "seeds":
                check_int(name, value, 0, 2**32 - 1)
            elif between == "prompts" and not isinstance(value, str):
                raise TypeError(f"`{name}` must be a prompt (str) when between='prompts', got {type(value).__name__}.")
        super().__init__(model, display_height=display_height, settle=settle, export_path="interpolation.png")
        default_start = {"seeds": 0, "prompts": "a red circle", "images": None}[between]
        default_end = {"seeds": 1, "prompts": "a blue square", "images": None}[between]
        start = default_start if start is None else start
        end = default_end if end is None else end
        box = widgets.Layout(width="300px")
        self.between = widgets.Dropdown(options=BETWEEN, value=between, description="between")
        self.start_seed = widgets.BoundedIntText(value=start if between == "seeds" else 0, min=0, max=2**32 - 1,
                                                 description="start seed", layout=box)
        self.end_seed = widgets.BoundedIntText(value=end if between == "seeds" else 1, min=0, max=2**32 - 1,
                                               description="end seed", layout=box)
        self.start_prompt = widgets.Text(value=start if between == "prompts" else "a red circle",
                                         description="start", continuous_update=False, layout=box)
        self.end_prompt = widgets.Text(value=end if between == "prompts" else "a blue square",
                                       description="end", continuous_update=False, layout=box)
        self.start_upload = widgets.FileUpload(accept="image/*", description="start image")
        self.end_upload = widgets.FileUpload(accept="image/*", description="end image")
        self.prompt = widgets.Text(value=prompt, description="prompt", continuous_update=False, layout=box)
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**32 - 1, description="seed", layout=box)
        self.method = widgets.ToggleButtons(options=METHODS, value=method, description="method")
        self.t = widgets.FloatSlider(value=t, min=0.0, max=1.0, step=0.01, description="t")
        self.frames = widgets.IntSlider(value=frames, min=2, max=16, description="frames")
        self.strength = widgets.FloatSlider(value=strength, min=0.0, max=1.0, step=0.05, description="strength")
        self.steps = widgets.IntSlider(value=steps, min=1, max=max(100, steps), description="steps")
        self.guidance = widgets.FloatSlider(value=guidance, min=0.0, max=max(20.0, guidance), step=0.5,
                                            description="guidance")
        self.preview_steps = preview_steps
        self.strip = widgets.Image(format="png")
        self.strip_frames: list[PIL.Image.Image] = []
        self._images: dict[str, PIL.Image.Image | None] = {"start": None, "end": None}
        self._versions = {"start": 0, "end": 0}  # bumped by set_image: part of every cache key
        self._strip_key = None
        self._cache: dict = {}
        self.endpoints = widgets.VBox([])
        self.controls = widgets.VBox([self.between, self.endpoints, self.method, self.t, self.frames, self.steps,
                                      self.guidance])
        self._layout(self.controls)
        self.children = (*self.children[:1], widgets.HTML("<b>strip</b>"), self.strip, *self.children[1:])
        self._show_endpoints()
        self.between.observe(self._handler(lambda change: self._show_endpoints()), names="value")
        self._watch([self.t, self.guidance])
        self._watch([self.between, self.start_seed, self.end_seed, self.start_prompt, self.end_prompt, self.prompt,
                     self.seed, self.method, self.frames, self.strength, self.steps], quality="full")
        self.start_upload.observe(self._handler(lambda change: self._uploaded("start", change)), names="value")
        self.end_upload.observe(self._handler(lambda change: self._uploaded("end", change)), names="value")
        if between == "images":
            for which, image in (("start", start), ("end", end)):
                if image is not None:
                    self.set_image(which, image, render=False)
        if between != "images" or all(v is not None for v in self._images.values()):
            self.refresh("full")

    # -- endpoints ----------------------------------------------------------------------------------
    def _show_endpoints(self) -> None:
        kind = self.between.value
        rows = {"seeds": [self.start_seed, self.end_seed, self.prompt],
                "prompts": [self.start_prompt, self.end_prompt, self.seed],
                "images": [self.start_upload, self.end_upload, self.prompt, self.strength]}[kind]
        self.endpoints.children = rows

    def set_image(self, which: str, image, *, render: bool = True) -> None:
        """Use ``image`` (PIL, or bytes of an image file) as the ``which`` ("start" or "end") endpoint.

        It must have the model's image size (nothing is resized without being asked)."""
        if which not in ("start", "end"):
            raise ValueError(f"`which` must be 'start' or 'end', got {which!r}.")
        image = read_image(which, image, self.model.default_size)
        self._images[which] = image
        self._versions[which] += 1
        if render and all(v is not None for v in self._images.values()):
            self.refresh("full")

    def _uploaded(self, which: str, change) -> None:
        files = change["new"]
        if files:
            self.set_image(which, files[-1]["content"])

    # -- rendering ----------------------------------------------------------------------------------
    def _params(self) -> dict:
        kind = self.between.value
        if kind == "images":
            missing = [w for w, im in self._images.items() if im is None]
            if missing:
                raise ValueError(f"upload the {' and '.join(missing)} image{'s' if len(missing) > 1 else ''} first.")
        start, end = {"seeds": (self.start_seed.value, self.end_seed.value),
                      "prompts": (self.start_prompt.value, self.end_prompt.value),
                      "images": (f"start image v{self._versions['start']}", f"end image v{self._versions['end']}")}[kind]
        return {"between": kind, "start": start, "end": end, "prompt": self.prompt.value, "seed": self.seed.value,
                "method": self.method.value, "t": self.t.value, "frames": self.frames.value,
                "strength": self.strength.value, "steps": self.steps.value, "guidance": self.guidance.value,
                "images": dict(self._images),
                "image_sha256": {w: hashlib.sha256(im.tobytes()).hexdigest() if im is not None else None
                                 for w, im in self._images.items()} if kind == "images" else None}

    def _endpoints(self, p: dict):
        """The two endpoint tensors (noise, embeddings or latents), cached while they stay the same (worker
        thread only; an image's version is part of its key, so a replaced image is never served stale)."""
        key = (p["between"], p["start"], p["end"])
        if key not in self._cache:
            self._cache.clear()
            if p["between"] == "seeds":
                noise = self.model.noise(seed=[p["start"], p["end"]])
                value = (noise[0:1], noise[1:2])
            elif p["between"] == "prompts":
                value = (self.model.embed(p["start"]), self.model.embed(p["end"]))
            else:
                z = self.model.encode([p["images"]["start"], p["images"]["end"]])
                value = (z[0:1], z[1:2])
            self._cache[key] = value
        return self._cache[key]

    def _frames_at(self, p: dict, ts: list[float], steps: int, decoder: str, interrupt) -> list[PIL.Image.Image]:
        from latentlib import lerp, slerp

        a, b = self._endpoints(p)
        mix = slerp if p["method"] == "slerp" else lerp
        common = {"steps": steps, "guidance": p["guidance"], "decoder": decoder, "interrupt": interrupt,
                  "progress": False}
        if p["between"] == "seeds":
            latents = torch.cat([mix(a, b, t) for t in ts])
            return self.model.generate(p["prompt"], latents=latents, seed=[p["start"]] * len(ts), **common)
        if p["between"] == "prompts":
            out = []
            for t in ts:  # generate raises latentlib.Interrupted once the interrupt is set
                out += self.model.generate(getattr(a, p["method"])(b, t), seed=p["seed"], **common)
            return out
        z = torch.cat([mix(a, b, t) for t in ts])
        if p["strength"] == 0:
            return self.model.decode(z)
        return self.model.generate(p["prompt"], image=z, strength=p["strength"], seed=[p["seed"]] * len(ts), **common)

    def _render(self, p: dict, quality: str, interrupt, progress):
        full = quality == "full"
        steps = p["steps"] if full else min(self.preview_steps, p["steps"])
        image = self._frames_at(p, [p["t"]], steps, "full" if full else "preview", interrupt)[0]
        if full:
            key = tuple((k, v) for k, v in p.items() if k not in ("t", "images", "image_sha256"))
            if key != self._strip_key and not interrupt.is_set():
                ts = torch.linspace(0, 1, p["frames"]).tolist()
                progress(0, len(ts))
                frames = self._frames_at(p, ts, steps, "full", interrupt)
                if not interrupt.is_set():
                    self.strip_frames, self._strip_key = frames, key
                    self.strip.value = png_bytes(tile(frames), min(128, self.display_height))
        return image

    def _record(self, frame: Frame) -> tuple[dict, str]:
        from latentlib import export

        p = {k: v for k, v in frame.params.items() if k != "images"}
        full = frame.quality == "full"
        steps = p["steps"] if full else min(self.preview_steps, p["steps"])
        recipe = {**p, "steps": steps, "decoder": "full" if full else "preview", "quality": frame.quality}
        metadata = {"format": 1, "figure": "interpolator", "recipe": recipe,
                    "model": export.model_record(self.model), "versions": export.versions()}
        h, w = self.model.default_size
        prompt = p["prompt"] if p["between"] != "prompts" else f"{p['start']} -> {p['end']}"
        seed = p["start"] if p["between"] == "seeds" else p["seed"]
        parameters = export.parameters_text(
            prompt, steps=steps, sampler=export.scheduler_name(self.model.scheduler), guidance=p["guidance"],
            seed=seed, width=w, height=h, model_name=self.model.name, model_hash=export.weights_sha256(self.model),
            extra={"Interpolation": f"{p['method']} between {p['between']} at t={p['t']:.2f}"})
        return metadata, parameters
