"""Explorer: one image (or a few seeds side by side) with a slider per direction; moving a slider
regenerates live (a preview while it moves, the full frame when it rests)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

import ipywidgets as widgets

from .app import LiveApp, check_common, check_int, check_number, tile
from .live import Frame

__all__ = ["Explorer"]


class Explorer(LiveApp):
    """Generate live from a prompt, a seed and a slider per direction.

    Args:
        model: a :class:`latentlib.Model`.
        bank: directions to give sliders to: a :class:`latentlib.DirectionBank`, a path to one (loaded and
            checked against ``model``), or a list of :class:`latentlib.Direction` (and :class:`latentlib.Turn`,
            whose slider turns round its ring, ``degrees`` per unit). A bank made for another model is refused
            with a message in the app; the app still works without it.
        prompt, negative_prompt, seed: the starting settings.
        n: images side by side (seeds ``seed .. seed + n - 1``), 1 to 8.
        steps, guidance, scheduler: the full-quality frame's settings (scheduler: a name from
            ``latentlib.SCHEDULERS`` or "default").
        preview_steps: steps of the preview rendered while a slider moves (default ``min(8, steps)``); the
            preview also uses the model's preview decoder when one is set (``model.set_preview_decoder``).
        strength_range: the sliders' range in units of each direction's standard deviation.
        image: an optional start image (image-to-image, needed by z0 directions): a PIL image of the model's
            size, or set later by upload or :meth:`set_image`; ``image_strength`` is how much of the schedule
            re-runs on it, in [0, 1].
        settle: seconds a control must rest before the full-quality frame is made.
        display_height: pixels the frame is shown at (nearest-neighbour upscaling of small models).
        follow: None, or a function that takes an image ``(3, H, W)`` in [0, 1] and returns ``(dy, dx)`` in
            whole cells (e.g. ``latentlib.report.follow_object(probe, centre=(x, y), cells=8)``). Each turn in
            xT, z0 or h is then rolled, per seed, to where that seed's unedited object is
            (:meth:`latentlib.Turn.rolled`), as ``report_card(follow=...)`` does: a turn fitted on objects in
            one place misses an object that landed elsewhere. The unedited image (full steps) is made once
            per seed and settings; the "turns follow the object" checkbox switches it off and on.

    Example:
        >>> app = Explorer(model, bank, prompt="a red circle")
        >>> app                                    # in a notebook: shows the app
        >>> app.sliders["size"].value = 2.0        # what dragging the slider does
        >>> app.wait(); app.frame.image            # the frame now shown
    """

    def __init__(self, model, bank=None, *, prompt: str = "", negative_prompt: str = "", seed: int = 0, n: int = 1,
                 steps: int = 20, guidance: float = 5.0, scheduler: str = "default", preview_steps: int | None = None,
                 strength_range: float = 3.0, image=None, image_strength: float = 0.6, settle: float = 0.3,
                 display_height: int = 256, follow=None):
        from latentlib import SCHEDULERS

        preview_steps = check_common(steps=steps, guidance=guidance, seed=seed, preview_steps=preview_steps,
                                     display_height=display_height)
        check_int("n", n, 1, 8)
        check_number("image_strength", image_strength, 0.0, 1.0)
        check_number("strength_range", strength_range, 1e-3, 100.0)
        for name, value in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if not isinstance(value, str):
                raise TypeError(f"`{name}` must be a string, got {type(value).__name__}.")
        if follow is not None and not callable(follow):
            raise TypeError(f"`follow` must be None or a function image -> (dy, dx) (e.g. "
                            f"latentlib.report.follow_object); got {type(follow).__name__}.")
        names = ["default", *SCHEDULERS]
        if scheduler not in names:
            raise ValueError(f"`scheduler` must be one of {', '.join(names)}; got {scheduler!r}.")
        super().__init__(model, display_height=display_height, settle=settle, export_path="explorer.png")
        self.strength_range = float(strength_range)
        self.directions: dict = {}
        self.sliders: dict[str, widgets.FloatSlider] = {}
        text = widgets.Layout(width="300px")
        self.prompt = widgets.Text(value=prompt, description="prompt", continuous_update=False, layout=text)
        self.negative_prompt = widgets.Text(value=negative_prompt, description="negative", continuous_update=False,
                                            layout=text)
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**32 - 1, description="seed", layout=text)
        self.n = widgets.IntSlider(value=n, min=1, max=8, description="images")
        self.steps = widgets.IntSlider(value=steps, min=1, max=max(100, steps), description="steps")
        self.preview_steps = widgets.IntSlider(value=preview_steps, min=1, max=max(100, preview_steps),
                                               description="preview")
        self.guidance = widgets.FloatSlider(value=guidance, min=0.0, max=max(20.0, guidance), step=0.5,
                                            description="guidance")
        self.scheduler = widgets.Dropdown(options=names, value=scheduler, description="sampler")
        self.start_image = None
        self.image_upload = widgets.FileUpload(accept="image/*", description="start image")
        self.image_strength = widgets.FloatSlider(value=image_strength, min=0.0, max=1.0, step=0.05,
                                                  description="strength")
        self.clear_image_button = widgets.Button(description="No start image", icon="times")
        self.image_upload.observe(self._handler(lambda change: change["new"] and self.set_image(
            change["new"][-1]["content"])), names="value")
        self.clear_image_button.on_click(self._handler(lambda _: self.set_image(None)))
        self._follow = follow
        self._shifts: dict = {}  # (settings, seed) -> (dy, dx) of its unedited object
        self.follow_box = widgets.Checkbox(value=follow is not None, description="turns follow the object",
                                           disabled=follow is None, indent=False)
        self.follow_box.layout.display = None if follow is not None else "none"
        self.reset_button = widgets.Button(description="Reset sliders", icon="undo")
        self.reset_button.on_click(self._handler(lambda _: self.reset()))
        self.bank_path = widgets.Text(placeholder="path/to/bank.safetensors", description="bank", layout=text)
        self.bank_button = widgets.Button(description="Load bank", icon="folder-open")
        self.bank_button.on_click(self._handler(lambda _: self.load_bank(self.bank_path.value)))
        self.slider_box = widgets.VBox([])
        self.controls = widgets.VBox([
            self.prompt, self.negative_prompt, self.seed, self.n, self.steps, self.preview_steps, self.guidance,
            self.scheduler, widgets.HBox([self.image_upload, self.clear_image_button]), self.image_strength,
            widgets.HTML("<b>directions</b> (strength in standard deviations; a turn's in its degrees per unit)"),
            self.slider_box, self.follow_box,
            self.reset_button, widgets.HBox([self.bank_path, self.bank_button])])
        self._layout(self.controls)
        self._watch([self.seed, self.n, self.guidance, self.preview_steps, self.image_strength])
        self._watch([self.follow_box], quality="full")
        self._watch([self.prompt, self.negative_prompt, self.steps, self.scheduler], quality="full")
        if image is not None:
            self.set_image(image, render=False)
        if bank is not None:
            try:
                self.add_directions(bank)
            except (ValueError, TypeError, FileNotFoundError) as exc:
                self._show_error(exc, "")
        self.refresh("full")

    # -- directions ---------------------------------------------------------------------------------
    def load_bank(self, path) -> None:
        """Add the directions of the bank at ``path`` (refused, with the reason, if made for another model)."""
        from latentlib import DirectionBank

        if not str(path).strip():
            raise ValueError("`path` is empty; give the bank's .safetensors file.")
        self.add_directions(DirectionBank.load(path, model=self.model))

    def add_directions(self, directions, *, overwrite: bool = False) -> list[str]:
        """Give each direction a slider (a bank, a path, one direction or a list). Returns their names.

        A direction whose vector does not fit this model's space is refused before any slider is added.
        """
        from latentlib import Direction, DirectionBank

        if isinstance(directions, (str, bytes)) or hasattr(directions, "__fspath__"):
            directions = DirectionBank.load(directions, model=self.model)
        if isinstance(directions, Direction) or hasattr(directions, "space") and (
                hasattr(directions, "vector") or hasattr(directions, "vectors")):  # one direction, or one turn
            directions = [directions]
        items = list(directions.items()) if isinstance(directions, Mapping) else [
            (getattr(d, "name", "") or f"direction {len(self.directions) + k}", d)
            for k, d in enumerate(_iterable("directions", directions))]
        names = [name for name, _ in items]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"two directions are both named {repeated[0]!r}; give each a unique name.")
        shapes = _space_sizes(self.model, [getattr(d, "layer", None) for _, d in items])
        for name, d in items:
            _check_fits(name, d, shapes)
            if name in self.directions and not overwrite:
                raise ValueError(f"the Explorer already has a direction named {name!r}; pass overwrite=True to "
                                 f"replace it.")
        replaced_live = [name for name, _ in items if name in self.sliders and self.sliders[name].value != 0]
        for name, d in items:
            self.directions[name] = d
            if name not in self.sliders:
                r = self.strength_range
                slider = widgets.FloatSlider(value=0.0, min=-r, max=r, step=0.1, description=_short(name),
                                             tooltip=f"{name} ({d.space})", continuous_update=True,
                                             readout_format="+.1f")
                self.sliders[name] = slider
                self._watch([slider])
        self.slider_box.children = tuple(self.sliders.values())
        if replaced_live:  # a direction in use was replaced: show what it does now
            self.refresh("full")
        return [name for name, _ in items]

    def set_image(self, image, *, render: bool = True) -> None:
        """Start from ``image`` (image-to-image; PIL or image file bytes of the model's size), or from noise
        again with None. z0 directions act on this image's latents."""
        from .app import read_image

        self.start_image = None if image is None else read_image("start", image, self.model.default_size)
        if render:
            self.refresh("full")

    def reset(self) -> None:
        """Every direction slider back to 0 (one new frame, not one per slider)."""
        with self.holding():
            for slider in self.sliders.values():
                slider.value = 0.0
        self.refresh("full")

    # -- rendering ----------------------------------------------------------------------------------
    def _params(self) -> dict:
        negative = self.negative_prompt.value
        params = {"prompt": self.prompt.value, "negative_prompt": negative, "embedding": self._embed(self.prompt.value),
                "negative_embedding": self._embed(negative) if negative else None,
                "seeds": [self.seed.value + i for i in range(self.n.value)], "steps": self.steps.value,
                "preview_steps": self.preview_steps.value, "guidance": self.guidance.value,
                "scheduler": self.scheduler.value, "image": self.start_image,
                "image_strength": self.image_strength.value,
                "strengths": {name: slider.value for name, slider in self.sliders.items()},
                "follow": self._follow is not None and self.follow_box.value}
        # the directions themselves, as they are now: a direction replaced later must not change what this
        # frame records (export) or renders
        params["directions"] = {name: self.directions[name] for name, s in params["strengths"].items() if s != 0}
        self._show_notice(self._notes.get(self.prompt.value, []) + self._notes.get(negative, []))
        return params

    def edits(self, params: dict | None = None) -> list:
        """The ``(direction, strength)`` pairs of the sliders that are not at 0."""
        p = params or self._params()
        return [(p["directions"][name], s) for name, s in p["strengths"].items() if s != 0]

    def _render(self, p: dict, quality: str, interrupt, progress):
        steps = p["steps"] if quality == "full" else min(p["preview_steps"], p["steps"])
        edits = self.edits(p)
        start = {}
        if p["image"] is not None:
            start = {"image": [p["image"]] * len(p["seeds"]), "strength": p["image_strength"]}
        elif any(d.space == "z0" for d, _ in edits):
            names = ", ".join(repr(getattr(d, "name", "")) for d, _ in edits if d.space == "z0")
            raise ValueError(f"{names} {'is a z0 direction' if ',' not in names else 'are z0 directions'}: it moves "
                             f"a start image's latents. Upload a start image (or call set_image), or set it to 0.")
        common = {"steps": steps, "guidance": p["guidance"], "scheduler": p["scheduler"], "interrupt": interrupt,
                  "callback": lambda step: progress(step.index + 1, step.total), "progress": False}
        shifts = self._follow_shifts(p, edits, interrupt, progress)
        if shifts is not None:
            p["shifts"] = shifts  # the frame records where each seed's turns were rolled to
        else:
            shifts = {seed: (0, 0) for seed in p["seeds"]}
        # seeds whose objects sit in the same cell share one call with the turns rolled there (one call for all
        # when nothing follows: a turn rolled by (0, 0) is itself)
        frames = {}
        for shift in dict.fromkeys(shifts.values()):
            seeds = [seed for seed in p["seeds"] if shifts[seed] == shift]
            rolled = [(d.rolled(*shift) if getattr(d, "rollable", False) else d, s) for d, s in edits]
            group = {k: v[: len(seeds)] if k == "image" else v for k, v in start.items()}
            images = self.model.generate(p["embedding"], p["negative_embedding"], seed=seeds, edits=rolled,
                                         decoder="full" if quality == "full" else "preview", **common, **group)
            frames.update(zip(seeds, images))
        return tile([frames[seed] for seed in p["seeds"]])

    def _follow_shifts(self, p: dict, edits: list, interrupt, progress) -> dict | None:
        """Each seed's ``(dy, dx)`` for the turns that follow (None when following is off or no edit is a turn
        on a grid): ``follow`` of the seed's unedited image at the full settings, made once and remembered
        (the status line shows its steps; a preview waits for it the first time)."""
        if not p["follow"] or not any(getattr(d, "rollable", False) for d, _ in edits):
            return None
        image_key = hashlib.sha256(p["image"].tobytes()).hexdigest() if p["image"] is not None else None
        settings = (p["prompt"], p["negative_prompt"], p["steps"], p["guidance"], p["scheduler"], image_key,
                    p["image_strength"] if p["image"] is not None else None)
        if len(self._shifts) > 256:  # settings change often while exploring; keep the memory small
            self._shifts = {key: shift for key, shift in self._shifts.items() if key[0] == settings}
        missing = [seed for seed in p["seeds"] if (settings, seed) not in self._shifts]
        if missing:
            start = {"image": [p["image"]] * len(missing), "strength": p["image_strength"]} if p["image"] else {}
            images = self.model.generate(p["embedding"], p["negative_embedding"], seed=missing, steps=p["steps"],
                                         guidance=p["guidance"], scheduler=p["scheduler"], interrupt=interrupt,
                                         callback=lambda step: progress(step.index + 1, step.total),
                                         output="pt", progress=False, **start)
            from latentlib.report import follow_shift

            for seed, image in zip(missing, images):
                self._shifts[(settings, seed)] = follow_shift(self._follow, image.float().cpu(), seed)
        return {seed: self._shifts[(settings, seed)] for seed in p["seeds"]}

    def _record(self, frame: Frame) -> tuple[dict, str]:
        from latentlib import export

        p = frame.params
        steps = p["steps"] if frame.quality == "full" else min(p["preview_steps"], p["steps"])
        h, w = self.model.default_size
        sampler = export.scheduler_name(self.model.scheduler) if p["scheduler"] == "default" else p["scheduler"]
        edits = [export.direction_record(p["directions"][n], s) for n, s in p["strengths"].items() if s != 0]
        recipe = {"prompt": p["prompt"], "negative_prompt": p["negative_prompt"], "seeds": p["seeds"], "steps": steps,
                  "guidance": p["guidance"], "scheduler": p["scheduler"], "quality": frame.quality, "edits": edits,
                  "decoder": "full" if frame.quality == "full" else "preview",
                  # each seed's (dy, dx): the turns in "edits" were rolled by it for that seed (Turn.rolled)
                  "follow": {str(seed): list(shift) for seed, shift in p["shifts"].items()} if "shifts" in p else None,
                  "start_image_sha256": hashlib.sha256(p["image"].tobytes()).hexdigest() if p["image"] else None,
                  "image_strength": p["image_strength"] if p["image"] is not None else None}
        metadata = {"format": 1, "figure": "explorer", "recipe": recipe, "model": export.model_record(self.model),
                    "versions": export.versions()}
        extra = {"Edits": "; ".join(f"{e['name']} {e['strength']:+g}" for e in edits)} if edits else None
        parameters = export.parameters_text(p["prompt"], negative_prompt=p["negative_prompt"] or None, steps=steps,
                                            sampler=sampler, guidance=p["guidance"], seed=p["seeds"][0], width=w,
                                            height=h, model_name=self.model.name,
                                            model_hash=export.weights_sha256(self.model), extra=extra)
        return metadata, parameters


def _iterable(name: str, value) -> list:
    if not isinstance(value, Iterable):
        raise TypeError(f"`{name}` must be a DirectionBank, a bank path, a Direction or a list of them; "
                        f"got {type(value).__name__}.")
    return list(value)


def _space_sizes(model, layers) -> dict[str, int]:
    """Values in one sample of each space of ``model`` (h at each named layer too)."""
    from latentlib.directions import space_shapes

    wanted = sorted({layer for layer in layers if layer})
    return {key: math.prod(shape) for key, shape in space_shapes(model, wanted).items()}


def _check_fits(name: str, direction, sizes: dict[str, int]) -> None:
    from latentlib.directions import shape_key

    space, vector = getattr(direction, "space", None), getattr(direction, "vector", None)
    if vector is None and getattr(direction, "vectors", None) is not None:  # a turn: its plane's first vector
        vector = direction.vectors[0]
    if vector is None or space is None:
        raise TypeError(f"direction {name!r} needs `space` and `vector` (or a turn's `vectors`); "
                        f"got {type(direction).__name__}.")
    key = shape_key(direction)
    if key not in sizes:
        raise ValueError(f"direction {name!r} is in space {key!r}, which this model does not have "
                         f"(it has {', '.join(sorted(sizes))}).")
    if vector.numel() != sizes[key]:
        raise ValueError(f"direction {name!r} has {vector.numel()} values (shape {tuple(vector.shape)}); this model's "
                         f"{key} samples have {sizes[key]}. It was made for another model.")


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
