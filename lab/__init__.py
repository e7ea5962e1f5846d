"""lab: the interactive layer of the latent lab (ipywidgets apps built on latentlib).

Holds UI state only; every computation is a call into ``latentlib``.

- :class:`Explorer`: a prompt, a seed, and a slider per direction of a bank; regenerates live.
- :class:`Interpolator`: slerp/lerp between two seeds, prompts or images; a t slider and a strip.
- :class:`PromptMixer`: prompt-embedding arithmetic, rows of (prompt, weight), concept removal.
- :class:`EmbeddingMap`: a UMAP/PCA map of collected samples; click to generate, select two groups to
  make a direction and send it to an Explorer.
- :class:`InpaintStudio`: paint a mask on a canvas, grow/erode/feather it, inpaint, before and after.
- :func:`show`: a plain image strip for notebooks.

Every app renders off the kernel's thread (:mod:`lab.live`): the newest request wins, a preview while
a slider moves and the full frame when it rests, a Stop button, errors shown in the app. Each is a
widget (display it) and a class a test can drive: set a control's ``value``, call ``wait()``, read
``app.frame``.
"""

from __future__ import annotations

from .embedding_map import EmbeddingMap
from .explorer import Explorer
from .inpaint_studio import InpaintStudio
from .interpolator import Interpolator
from .live import Frame, LiveRenderer
from .prompt_mixer import PromptMixer

__all__ = ["EmbeddingMap", "Explorer", "Frame", "InpaintStudio", "Interpolator", "LiveRenderer", "PromptMixer",
           "show"]


def show(images, *, labels=None, scale: int = 1):
    """Display PIL images side by side in a notebook (an ``ipywidgets.HBox`` of ``Image`` widgets).

    Args:
        images: a PIL image or a list of them.
        labels: optional caption per image.
        scale: integer upscaling for display only (nearest neighbour, pixels stay visible).
    """
    import io

    import ipywidgets as widgets
    import PIL.Image

    if isinstance(images, PIL.Image.Image):
        images = [images]
    images = list(images)
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"`labels` has {len(labels)} entries for {len(images)} images.")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"`scale` must be an integer >= 1, got {scale!r}.")
    cells = []
    for k, image in enumerate(images):
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(f"`images[{k}]` must be a PIL image, got {type(image).__name__}.")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        view = widgets.Image(value=buffer.getvalue(), format="png",
                             width=image.width * scale, height=image.height * scale)
        view.layout.object_fit = "contain"
        view.add_class("latentlib-pixelated")
        caption = widgets.Label(labels[k] if labels is not None else "")
        cells.append(widgets.VBox([view, caption]))
    return widgets.HBox(cells)
