"""EmbeddingMap: a 2-D map (UMAP or PCA) of collected samples as a plotly FigureWidget, coloured by a
probe reading or metadata; hover for a thumbnail, click to generate from a point, select two groups to
make a direction and send it to an Explorer."""

from __future__ import annotations

import dataclasses
import html

import ipywidgets as widgets
import numpy as np
import PIL.Image

from .app import LiveApp, check_common, png_bytes, tile
from .live import Frame

__all__ = ["EmbeddingMap"]

METHODS = ("umap", "pca")


class EmbeddingMap(LiveApp):
    """Look at samples on a map and go back from the map into their space.

    Args:
        model: the :class:`latentlib.Model` the samples came from.
        samples: :class:`latentlib.Samples` from :func:`latentlib.collect` (probe readings colour the map).
        map: a fitted :class:`latentlib.UMAPMap` / :class:`latentlib.PCAMap` of ``samples``; default: fitted
            here with ``method``.
        method: "umap" or "pca" (when ``map`` is not given).
        color_by: a probe reading or metadata key to colour points by (default: the first probe reading).
        images: optional thumbnails, one per sample (PIL), shown on hover and for the selection. Without
            them, z0 samples are decoded for their thumbnails (they are images' latents); other spaces show
            the sample's metadata and probe readings.
        explorer: an :class:`~lab.Explorer` that "Send to Explorer" adds the made direction to.
        steps, guidance: settings of the frame generated from a clicked point.

    Clicking a point generates from that sample: its own noise (xT), its own latents decoded (z0), or its
    seed and prompt (h, prompt). Selecting points (box or lasso) and pressing "group A" / "group B"
    fixes the two groups; "Make direction" gives the direction from A's mean to B's
    (:meth:`latentlib.UMAPMap.direction_between`), with strength in the samples' standard deviations.

    Example:
        >>> samples = ll.collect(model, "xT", seeds=range(300), prompts=["a circle"], probe=probe)
        >>> app = EmbeddingMap(model, samples, method="pca", color_by="x", explorer=explorer)
        >>> app.select(np.flatnonzero(samples.labels["x"] < 0.4)); app.set_group("a")
        >>> app.select(np.flatnonzero(samples.labels["x"] > 0.6)); app.set_group("b")
        >>> d = app.make_direction("left -> right")
    """

    def __init__(self, model, samples, *, map=None, method: str = "umap", color_by: str | None = None, images=None,
                 explorer=None, steps: int = 20, guidance: float = 5.0, settle: float = 0.0,
                 display_height: int = 256):
        import plotly.graph_objects as go

        from latentlib import PCAMap, SampleMap, UMAPMap

        X = getattr(samples, "X", None)
        if X is None or not hasattr(samples, "meta"):
            raise TypeError(f"`samples` must be latentlib.Samples (from latentlib.collect), got {type(samples).__name__}.")
        if method not in METHODS:
            raise ValueError(f"`method` must be 'umap' or 'pca'; got {method!r}.")
        if images is not None:
            if len(images) != len(samples):
                raise ValueError(f"`images` has {len(images)} entries for {len(samples)} samples; give one per sample.")
            if not all(isinstance(im, PIL.Image.Image) for im in images):
                raise TypeError("`images` must be PIL images, one per sample.")
        if map is not None and (not isinstance(map, SampleMap) or getattr(map, "embedding_", None) is None
                                or len(map.embedding_) != len(samples)):
            raise ValueError(f"`map` must be a fitted UMAPMap or PCAMap of these samples ({len(samples)} of them).")
        check_common(steps=steps, guidance=guidance, seed=0, preview_steps=None, display_height=display_height)
        options = [*(samples.labels or {}), *_meta_keys(samples.meta)]
        if color_by is not None and color_by not in options:
            raise ValueError(f"`color_by` must be one of {', '.join(options) or 'nothing (no labels)'}; "
                             f"got {color_by!r}.")
        super().__init__(model, display_height=display_height, settle=settle, export_path="map_point.png")
        self.samples, self.images, self.explorer = samples, images, explorer
        self.steps, self.guidance = steps, guidance
        if map is None:
            map = (UMAPMap(random_state=0) if method == "umap" else PCAMap()).fit(X, space=samples.space)
        self.map = map
        self.groups: dict[str, np.ndarray] = {"a": np.zeros(0, int), "b": np.zeros(0, int)}
        self.selection = np.zeros(0, dtype=int)
        self.direction = None
        self.color_by = widgets.Dropdown(options=options, value=color_by or (options[0] if options else None),
                                         description="colour")
        xy = map.embedding_
        self.figure = go.FigureWidget(
            data=[go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", hoverinfo="text", marker={"size": 6})],
            layout={"width": 480, "height": 420, "margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "dragmode": "lasso",
                    "title": {"text": f"{type(map).__name__} of {len(samples)} {samples.space} samples"}})
        self._recolor()
        trace = self.figure.data[0]
        trace.on_click(self._handler(lambda tr, points, state: points.point_inds and self.click(points.point_inds[0])))
        trace.on_hover(self._quiet_handler(lambda tr, points, state: points.point_inds and self.hover(
            points.point_inds[0])))
        trace.on_selection(self._handler(lambda tr, points, state: self.select(points.point_inds)))
        self.color_by.observe(self._handler(lambda change: self._recolor()), names="value")
        self.thumbnail = widgets.Image(format="png", layout=widgets.Layout(width="96px", height="96px"))
        self.hover_text = widgets.HTML()
        self.selection_strip = widgets.Image(format="png")
        self._thumbs: dict[int, object] = {}
        self.group_text = widgets.HTML()
        self.direction_name = widgets.Text(value="map direction", description="name")
        self.a_button = widgets.Button(description="selection → group A")
        self.b_button = widgets.Button(description="selection → group B")
        self.make_button = widgets.Button(description="Make direction", icon="arrow-right")
        self.send_button = widgets.Button(description="Send to Explorer", icon="paper-plane",
                                          disabled=explorer is None)
        self.replace = widgets.Checkbox(value=False, description="replace a same-named direction", indent=False)
        self.a_button.on_click(self._handler(lambda _: self.set_group("a")))
        self.b_button.on_click(self._handler(lambda _: self.set_group("b")))
        self.make_button.on_click(self._handler(lambda _: self.make_direction(self.direction_name.value)))
        self.send_button.on_click(self._handler(lambda _: self.send()))
        self._update_groups()
        controls = widgets.VBox([
            self.color_by, self.figure, widgets.HBox([self.thumbnail, self.hover_text]), self.selection_strip,
            widgets.HBox([self.a_button, self.b_button]), self.group_text,
            widgets.HBox([self.direction_name, self.make_button, self.send_button, self.replace])])
        self._layout(controls)
        self._set_status("click a point to generate from it")

    def _quiet_handler(self, fn):
        """For hover: errors are shown, but moving the mouse does not clear the error already shown."""
        def run(*args):
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - shown in the app
                self._show_error(exc, "")
                return None

        return run

    # -- the map ------------------------------------------------------------------------------------
    def _values(self, key: str) -> list:
        labels = self.samples.labels or {}
        if key in labels:
            return list(np.asarray(labels[key]).tolist())
        return [m.get(key) for m in self.samples.meta]

    def _recolor(self) -> None:
        key = self.color_by.value
        trace = self.figure.data[0]
        if key is None:
            trace.hovertext = [f"#{i}" for i in range(len(self.samples))]
            return
        values = self._values(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            color, text = values, [f"#{i} {key}={v:.3g}" for i, v in enumerate(values)]
            marker = {"color": color, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": key}}
        else:
            names = sorted({str(v) for v in values})
            codes = {name: k for k, name in enumerate(names)}
            color = [codes[str(v)] for v in values]
            text = [f"#{i} {key}={v}" for i, v in enumerate(values)]
            marker = {"color": color, "colorscale": "Turbo", "showscale": False}
        with self.figure.batch_update():
            trace.marker.update(marker)
            trace.hovertext = text

    def _describe(self, index: int) -> str:
        meta = self.samples.meta[index]
        labels = self.samples.labels or {}
        parts = [f"{k}={v}" for k, v in meta.items()]
        parts += [f"{k}={_fmt(np.asarray(v)[index])}" for k, v in labels.items()]
        return f"#{index}: " + ", ".join(parts)

    def _check_index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.samples):
            raise ValueError(f"`index` must be a sample index in [0, {len(self.samples) - 1}], got {index!r}.")
        return int(index)

    def hover(self, index: int) -> None:
        """Show sample ``index``'s thumbnail (when images were given) and what is known about it."""
        index = self._check_index(index)
        self.hover_text.value = f"<small>{html.escape(self._describe(index))}</small>"
        thumb = self._thumbnail(index)
        if thumb is not None:
            self.thumbnail.value = png_bytes(thumb, 96)

    def _thumbnail(self, index: int):
        """Sample ``index``'s picture: from ``images``, or its decoded latents for z0; None otherwise."""
        if self.images is not None:
            return self.images[index]
        if self.samples.space != "z0":
            return None
        if index not in self._thumbs:
            sample = self.samples.X[index][None].to(self.model.device, self.model.dtype)
            self._thumbs[index] = self.model.decode(sample)[0]
        return self._thumbs[index]

    def click(self, index: int) -> int:
        """Generate from sample ``index`` (see the class docstring); returns the request id."""
        self.hover(index)
        self.clicked = self._check_index(index)
        return self.refresh("full")

    def select(self, indices) -> np.ndarray:
        """Make ``indices`` (what a box or lasso selected) the current selection."""
        self.selection = self.map.select(indices=np.asarray(indices))  # the map checks and explains
        self._update_groups()
        thumbs = [self._thumbnail(int(i)) for i in self.selection[:8]]
        self.selection_strip.value = png_bytes(tile(thumbs), 64) if thumbs and thumbs[0] is not None else b""
        return self.selection

    def set_group(self, which: str) -> np.ndarray:
        """The current selection becomes group ``which`` ("a" or "b")."""
        if which not in self.groups:
            raise ValueError(f"`which` must be 'a' or 'b', got {which!r}.")
        if self.selection.size == 0:
            raise ValueError("nothing is selected; select points on the map (box or lasso) first.")
        self.groups[which] = self.selection.copy()
        self._update_groups()
        return self.groups[which]

    def _update_groups(self) -> None:
        a, b = (self.groups[k].size for k in "ab")
        self.group_text.value = (f"<small>selected {self.selection.size}; group A {a} points, group B {b} points"
                                 "</small>")

    def make_direction(self, name: str = "map direction"):
        """The direction from group A's mean to group B's, in the samples' space (kept as ``direction``)."""
        if not str(name).strip():
            raise ValueError("`name` is empty; name the direction.")
        for k in "ab":
            if self.groups[k].size == 0:
                raise ValueError(f"group {k.upper()} is empty; select points and press 'selection → group {k.upper()}'.")
        direction = self.map.direction_between(self.groups["a"], self.groups["b"], name=str(name),
                                               space=self.samples.space)
        layer = (self.samples.settings or {}).get("h_layer")
        if self.samples.space == "h" and layer not in (None, "bottleneck"):
            direction = dataclasses.replace(direction, layer=layer)  # h taken at that block acts there too
        self.direction = direction
        self._set_status(f"made {name!r} ({self.samples.space}, from {self.groups['a'].size} to "
                         f"{self.groups['b'].size} samples)")
        return self.direction

    def send(self, *, replace: bool | None = None) -> None:
        """Add the made direction to the Explorer (it gets a slider there). A direction of the same name is
        replaced only when asked (``replace=True`` or the "replace" box)."""
        if self.explorer is None:
            raise ValueError("this map has no Explorer; pass explorer= when making it.")
        if self.direction is None:
            raise ValueError("make a direction first (two groups, then 'Make direction').")
        replace = self.replace.value if replace is None else replace
        self.explorer.add_directions([self.direction], overwrite=bool(replace))
        self._set_status(f"sent {self.direction.name!r} to the Explorer")

    # -- generating from a point -----------------------------------------------------------------------
    def _params(self) -> dict:
        index = getattr(self, "clicked", None)
        if index is None:
            raise ValueError("click a point first.")
        meta = self.samples.meta[index]
        return {"index": index, "space": self.samples.space, "seed": meta.get("seed", 0),
                "prompt": meta.get("prompt") or "", "steps": self.steps, "guidance": self.guidance}

    def _render(self, p: dict, quality: str, interrupt, progress):
        sample = self.samples.X[p["index"]][None].to(self.model.device, self.model.dtype)
        if p["space"] == "z0":
            return self.model.decode(sample)[0]
        latents = sample if p["space"] == "xT" else None
        return self.model.generate(p["prompt"], latents=latents, seed=p["seed"], steps=p["steps"],
                                   guidance=p["guidance"], interrupt=interrupt, progress=False,
                                   callback=lambda step: progress(step.index + 1, step.total))[0]

    def _record(self, frame: Frame) -> tuple[dict, str]:
        from latentlib import export

        p = frame.params
        decoded = p["space"] == "z0"  # a z0 sample is decoded as it is: no prompt, seed or steps made it
        recipe = {**p, "samples_key": self.samples.key,
                  "how": "the sample's latents decoded" if decoded else "generated from the sample"}
        metadata = {"format": 1, "figure": "embedding_map_point", "recipe": recipe,
                    "model": export.model_record(self.model), "versions": export.versions()}
        if decoded:
            return metadata, f"z0 sample #{p['index']} of {self.samples.key or 'collected samples'}, decoded by the VAE"
        h, w = self.model.default_size
        parameters = export.parameters_text(
            p["prompt"], steps=p["steps"], sampler=export.scheduler_name(self.model.scheduler), guidance=p["guidance"],
            seed=p["seed"], width=w, height=h, model_name=self.model.name, model_hash=export.weights_sha256(self.model),
            extra={"Map sample": f"{p['space']} #{p['index']}"})
        return metadata, parameters


def _meta_keys(meta: list[dict]) -> list[str]:
    keys = []
    for m in meta[:1]:
        keys += [k for k in m if k in ("seed", "prompt", "image")]
    return keys


def _fmt(value) -> str:
    return f"{float(value):.3g}" if np.issubdtype(np.asarray(value).dtype, np.number) else str(value)
