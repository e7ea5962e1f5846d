"""PromptMixer: prompt-embedding arithmetic as rows of (prompt, weight), plus concept removal, shown live."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from .app import LiveApp, check_common, check_number
from .live import Frame

__all__ = ["PromptMixer"]


class PromptMixer(LiveApp):
    """Mix prompts as ``sum(weight_i * embed(prompt_i))``, then project concepts out, and generate live.

    Args:
        model: a :class:`latentlib.Model`.
        rows: the starting ``(prompt, weight)`` rows (default: one row, "a red circle" at 1).
        remove: the starting ``(concept, strength)`` removals (strength 1 removes the concept's direction
            exactly, more pushes away from it; see :meth:`latentlib.PromptEmbedding.remove`).
        seed, steps, guidance: generation settings; preview_steps: steps while a slider moves.

    Example:
        >>> app = PromptMixer(model, rows=[("a red circle", 1.0), ("red", -1.0), ("blue", 1.0)])
        >>> app.rows[2][1].value = 0.5; app.wait(); app.embedding().recipe
    """

    def __init__(self, model, rows: Sequence[tuple[str, float]] = (("a red circle", 1.0),),
                 remove: Sequence[tuple[str, float]] = (), *, seed: int = 0, steps: int = 20, guidance: float = 5.0,
                 preview_steps: int | None = None, weight_range: float = 2.0, settle: float = 0.3,
                 display_height: int = 256):
        preview_steps = check_common(steps=steps, guidance=guidance, seed=seed, preview_steps=preview_steps,
                                     display_height=display_height)
        weight_range = check_number("weight_range", weight_range, 1e-3, 100.0)
        for name, given, high in (("rows", rows, weight_range), ("remove", remove, 2.0)):
            if isinstance(given, (str, bytes)) or not all(
                    isinstance(r, (tuple, list)) and len(r) == 2 and isinstance(r[0], str) for r in given):
                raise TypeError(f"`{name}` must be a list of (prompt, weight) pairs, got {given!r}.")
            for text, weight in given:
                check_number(f"{name} weight of {text!r}", weight, -high if name == "rows" else 0.0, high)
        super().__init__(model, display_height=display_height, settle=settle, export_path="prompt_mix.png")
        self.weight_range = weight_range
        self.preview_steps = preview_steps
        self.rows: list[tuple[widgets.Text, widgets.FloatSlider]] = []
        self.removals: list[tuple[widgets.Text, widgets.FloatSlider]] = []
        box = widgets.Layout(width="300px")
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**32 - 1, description="seed", layout=box)
        self.steps = widgets.IntSlider(value=steps, min=1, max=max(100, steps), description="steps")
        self.guidance = widgets.FloatSlider(value=guidance, min=0.0, max=max(20.0, guidance), step=0.5,
                                            description="guidance")
        self.recipe = widgets.HTML()
        self.row_box, self.removal_box = widgets.VBox([]), widgets.VBox([])
        self.add_row_button = widgets.Button(description="Add prompt", icon="plus")
        self.add_row_button.on_click(self._handler(lambda _: self.add_row("", 1.0)))
        self.add_removal_button = widgets.Button(description="Remove a concept", icon="minus")
        self.add_removal_button.on_click(self._handler(lambda _: self.add_removal("", 1.0)))
        self.controls = widgets.VBox([
            widgets.HTML("<b>prompts</b> (weight each, then add)"), self.row_box, self.add_row_button,
            widgets.HTML("<b>concepts removed</b>"), self.removal_box, self.add_removal_button,
            self.seed, self.steps, self.guidance, self.recipe])
        self._layout(self.controls)
        self._watch([self.seed, self.guidance])
        self._watch([self.steps], quality="full")
        with self.holding():
            for text, weight in rows:
                self.add_row(text, weight)
            for text, strength in remove:
                self.add_removal(text, strength)
        self.refresh("full")

    # -- rows ---------------------------------------------------------------------------------------
    def _row(self, text: str, value: float, low: float, high: float, label: str, into: list, box: widgets.VBox):
        if not isinstance(text, str):
            raise TypeError(f"a {label} must be a string, got {type(text).__name__}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"a {label}'s weight must be a number in [{low:g}, {high:g}], got {value!r}.")
        prompt = widgets.Text(value=text, placeholder=label, continuous_update=False,
                              layout=widgets.Layout(width="220px"))
        weight = widgets.FloatSlider(value=float(value), min=low, max=high, step=0.05, readout_format="+.2f",
                                     layout=widgets.Layout(width="260px"))
        delete = widgets.Button(icon="times", tooltip="remove this row", layout=widgets.Layout(width="36px"))
        pair = (prompt, weight)
        row = widgets.HBox([prompt, weight, delete])

        def drop(_):
            into.remove(pair)
            box.children = tuple(c for c in box.children if c is not row)
            self.refresh("full")

        delete.on_click(self._handler(drop))
        into.append(pair)
        box.children = (*box.children, row)
        self._watch([weight])
        self._watch([prompt], quality="full")
        if not self._holding:
            self.refresh("full")
        return pair

    def add_row(self, prompt: str, weight: float = 1.0):
        """Add a ``(prompt, weight)`` row; returns its (Text, FloatSlider) widgets."""
        r = self.weight_range
        return self._row(prompt, weight, -r, r, "prompt", self.rows, self.row_box)

    def add_removal(self, concept: str, strength: float = 1.0):
        """Add a concept to project out, with its strength (0 to 2); returns its (Text, FloatSlider) widgets."""
        return self._row(concept, strength, 0.0, 2.0, "concept", self.removals, self.removal_box)

    # -- the embedding --------------------------------------------------------------------------------
    def embedding(self, params: dict | None = None):
        """The mixed :class:`latentlib.PromptEmbedding` the controls describe."""
        from latentlib import mix

        p = params or self._params()
        rows = [(self._embed(text), w) for text, w in p["rows"] if w != 0 and text.strip()]
        if not rows:
            raise ValueError("no prompt row has both text and a weight other than 0; type a prompt and give it a "
                             "weight.")
        e = mix(rows)
        for text, strength in p["removals"]:
            if text.strip() and strength != 0:
                e = e.remove(self._embed(text), strength)
        return e

    def _params(self) -> dict:
        p = {"rows": [(t.value, w.value) for t, w in self.rows],
             "removals": [(t.value, s.value) for t, s in self.removals],
             "seed": self.seed.value, "steps": self.steps.value, "guidance": self.guidance.value}
        p["embedding"] = self.embedding(p)
        self.recipe.value = f"<code>{p['embedding'].recipe}</code>"
        texts = [t for t, _ in p["rows"]] + [t for t, _ in p["removals"]]
        self._show_notice([line for t in dict.fromkeys(texts) for line in self._notes.get(t, [])])
        return p

    def _render(self, p: dict, quality: str, interrupt, progress):
        full = quality == "full"
        steps = p["steps"] if full else min(self.preview_steps, p["steps"])
        return self.model.generate(p["embedding"], seed=p["seed"], steps=steps, guidance=p["guidance"],
                                   decoder="full" if full else "preview", interrupt=interrupt,
                                   callback=lambda step: progress(step.index + 1, step.total), progress=False)[0]

    def _record(self, frame: Frame) -> tuple[dict, str]:
        from latentlib import export

        p = {k: v for k, v in frame.params.items() if k != "embedding"}
        recipe = frame.params["embedding"].recipe
        full = frame.quality == "full"
        steps = p["steps"] if full else min(self.preview_steps, p["steps"])
        metadata = {"format": 1, "figure": "prompt_mixer",
                    "recipe": {**p, "steps": steps, "decoder": "full" if full else "preview", "embedding": recipe,
                               "quality": frame.quality},
                    "model": export.model_record(self.model), "versions": export.versions()}
        h, w = self.model.default_size
        parameters = export.parameters_text(recipe, steps=steps, sampler=export.scheduler_name(self.model.scheduler),
                                            guidance=p["guidance"], seed=p["seed"], width=w, height=h,
                                            model_name=self.model.name, model_hash=export.weights_sha256(self.model))
        return metadata, parameters
