"""Figures and files for reports that carry the parameters that made them, and can be made again.

Figures (each returns a :class:`Figure`: a PIL image plus its metadata; ``fig.save(path)`` writes it):

- :func:`grid`: prompts x seeds, generated;
- :func:`sweep`: a direction's strengths x seeds, or directions x strengths (edits of ``model.generate``);
- :func:`strip`: an interpolation between two seeds or two prompts (slerp or lerp);
- :func:`before_after`: two images side by side, a mask's outline drawn on both;
- :func:`image_grid`: any images with row and column labels (no model; its metadata is what you pass).

Files: PNG (text chunks), JPEG and WebP (EXIF + a sidecar ``.json``), PDF and SVG (document metadata),
maps as HTML (:func:`save_map`, always) and PNG/SVG/PDF, tables as CSV, Markdown and LaTeX
(:func:`save_table`). Every write is atomic (a temporary file, then a rename) and refuses to replace an
existing file unless ``overwrite=True``.

Metadata: a PNG text chunk ``parameters`` in the format other Stable Diffusion tools read (prompt, then
``Negative prompt: ...``, then ``Steps: 20, Sampler: ..., CFG scale: ..., Seed: ..., Size: WxH, Model
hash: ..., Model: ...``), and a chunk ``latentlib`` with everything as JSON: the model and a hash of its
weights, the scheduler config, seeds, directions (vectors included) with their strengths, library
versions and the figure's recipe. :func:`read_metadata` reads it back from any format, and
:func:`reproduce` makes the figure again from it: identical pixels on the same device.

Example:
    >>> import latentlib as ll
    >>> from latentlib import export
    >>> model = ll.load()
    >>> fig = export.grid(model, ["a red circle", "a blue star"], seeds=[0, 1, 2], steps=20)
    >>> fig.save("report/grid.png")
    >>> export.reproduce("report/grid.png").image == fig.image   # same pixels on the same device
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import numbers
import os
import platform
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import PIL.PngImagePlugin
import torch

from .edits import SPACES
from .interpolate import lerp, slerp

__all__ = [
    "FORMATS",
    "Figure",
    "before_after",
    "direction_from_record",
    "direction_record",
    "grid",
    "image_grid",
    "model_record",
    "parameters_text",
    "read_metadata",
    "reproduce",
    "save_image",
    "save_map",
    "save_table",
    "scatter_map",
    "scheduler_name",
    "strip",
    "sweep",
    "table_text",
    "weights_sha256",
]

#: image formats a Figure can be saved as (by file extension)
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".pdf": "PDF", ".svg": "SVG"}
TABLE_FORMATS = (".csv", ".md", ".tex")
MAP_FORMATS = (".html", ".png", ".svg", ".pdf")
JSON_KEY = "latentlib"
PARAMETERS_KEY = "parameters"
#: our scheduler names -> the sampler names A1111-style tools write
_SAMPLER_NAMES = {
    "ddim": "DDIM", "pndm": "PLMS", "euler": "Euler", "euler-karras": "Euler Karras", "euler-a": "Euler a",
    "heun": "Heun", "lms": "LMS", "dpm++2m": "DPM++ 2M", "dpm++2m-karras": "DPM++ 2M Karras",
    "dpm++2m-sde": "DPM++ 2M SDE", "dpm++2m-sde-karras": "DPM++ 2M SDE Karras", "unipc": "UniPC", "lcm": "LCM",
}
_GENERATE_KEYS = ("negative_prompt", "steps", "guidance", "guidance_rescale", "scheduler", "eta", "height", "width")


# -- provenance ---------------------------------------------------------------------------------------

def versions() -> dict:
    """Versions of the libraries that decide a figure's pixels."""
    import diffusers
    import transformers

    from . import __version__

    return {"latentlib": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
            "python": platform.python_version()}


def weights_sha256(model) -> str:
    """SHA-256 over every weight of the model's networks (names, dtypes, shapes and bytes), cached.

    It identifies the weights whatever folder or hub id they came from; computed once per Model
    (a second or two for Stable Diffusion, milliseconds for the default model).
    """
    cached = getattr(model, "_weights_sha256", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    for part in ("vae", "unet", "text_encoder", "text_encoder_2"):
        module = getattr(model, part, None)
        if module is None:
            continue
        for name, tensor in sorted(module.state_dict().items()):
            # row-major bytes whatever the layout (a channels-last 1x1 kernel counts as contiguous but is not)
            t = tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
            digest.update(f"{part}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    model._weights_sha256 = digest.hexdigest()
    return model._weights_sha256


def model_record(model) -> dict:
    """What identifies a model: its name, weight hash, classes, device, dtype and scheduler config."""
    return {"name": model.name, "weights_sha256": weights_sha256(model), "device": str(model.device),
            "dtype": str(model.dtype).replace("torch.", ""), "unet": type(model.unet).__name__,
            "scheduler": {"class": type(model.scheduler).__name__, "config": _jsonable(dict(model.scheduler.config))}}


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value).tolist()
    return repr(value)


def direction_record(direction, strength: float | None = None) -> dict:
    """A direction (anything with ``space`` and ``vector``, see :mod:`latentlib.edits`) or a turn
    (:class:`latentlib.directions.Turn`) as JSON, vectors included (float32, base64), so the figure can be
    made again without the bank it came from."""
    vector = getattr(direction, "vector", None)
    space = getattr(direction, "space", None)
    turn = vector is None and isinstance(getattr(direction, "vectors", None), torch.Tensor)
    if turn:
        vector = direction.vectors
    if space not in SPACES or not isinstance(vector, torch.Tensor):
        raise TypeError(f"a direction needs `space` (one of {', '.join(SPACES)}) and a tensor `vector` (a turn: "
                        f"`vectors`); got {type(direction).__name__} with space {space!r}.")
    v = vector.detach().to("cpu", torch.float32).contiguous()
    raw = v.numpy().tobytes()
    record = {"name": getattr(direction, "name", None), "space": space, "shape": list(v.shape),
              "timesteps": list(direction.timesteps) if getattr(direction, "timesteps", None) is not None else None,
              "layer": getattr(direction, "layer", None),
              "vector_sha256": hashlib.sha256(raw).hexdigest(), "vector": base64.b64encode(raw).decode("ascii")}
    if turn:
        record.update(kind="turn", centre=[float(c) for c in direction.centre],
                      scales=[float(c) for c in direction.scales], degrees=float(direction.degrees))
    else:
        record["scale"] = float(getattr(direction, "scale", 1.0) or 1.0)
    bank = getattr(direction, "bank", None)
    if bank is not None:
        record["bank"] = _jsonable(bank)
    provenance = getattr(direction, "provenance", None)
    if provenance is not None:
        record["provenance"] = _jsonable(provenance)
    if strength is not None:
        record["strength"] = float(strength)
    return record


def direction_from_record(record: Mapping):
    """The direction (a ``SimpleNamespace``) or turn (a :class:`~latentlib.directions.Turn`) that
    :func:`direction_record` wrote, checked against its hash."""
    raw = base64.b64decode(record["vector"])
    if hashlib.sha256(raw).hexdigest() != record["vector_sha256"]:
        raise ValueError(f"direction {record.get('name')!r}: its vector does not match its hash; the file was altered.")
    vector = torch.from_numpy(np.frombuffer(raw, dtype=np.float32).copy()).reshape(record["shape"])
    timesteps = tuple(record["timesteps"]) if record.get("timesteps") is not None else None
    if record.get("kind", "direction") == "turn":
        from .directions import Turn

        return Turn(vectors=vector, space=record["space"], name=record.get("name") or "", centre=tuple(record["centre"]),
                    scales=tuple(record["scales"]), degrees=record["degrees"], timesteps=timesteps,
                    layer=record.get("layer"))
    return SimpleNamespace(name=record.get("name"), space=record["space"], vector=vector, scale=record["scale"],
                           timesteps=timesteps, layer=record.get("layer"))


def parameters_text(prompt: str, *, negative_prompt: str | None = None, steps: int, sampler: str, guidance: float,
                    seed: int, width: int, height: int, model_name: str, model_hash: str,
                    extra: Mapping | None = None) -> str:
    """The ``parameters`` text other Stable Diffusion tools write and read (A1111's layout)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    fields = {"Steps": steps, "Sampler": _SAMPLER_NAMES.get(sampler, sampler), "CFG scale": guidance, "Seed": seed,
              "Size": f"{width}x{height}", "Model hash": model_hash[:10], "Model": model_name, **(extra or {})}
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n".join(lines)


# -- atomic, non-clobbering writes -------------------------------------------------------------------

def _target(path, overwrite: bool, accepted: Sequence[str], what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a string or path, got {type(path).__name__}.")
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in accepted:
        raise ValueError(f"`path` {str(path)!r} has extension {suffix or '(none)'!r}; {what} can be saved as "
                         f"{', '.join(accepted)}.")
    if path.is_dir():
        raise ValueError(f"`path` {str(path)!r} is a directory; give a file name.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it.")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"`path` {str(path)!r}: {str(path.parent)!r} is a file, not a directory.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same directory, then rename: no half file is ever left."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _refuse_sidecar(path: Path, overwrite: bool) -> None:
    """Never replace an existing metadata sidecar unasked (the file beside ``path``)."""
    if _sidecar(path).exists() and not overwrite:
        raise FileExistsError(f"{str(_sidecar(path))!r} (the metadata sidecar) exists; pass overwrite=True.")


def _payload(blob: str) -> str:
    """The JSON as one base64 token, which ``_PAYLOAD`` finds again in a PDF, SVG or HTML file."""
    return "latentlib-json-base64:" + base64.b64encode(blob.encode()).decode("ascii")


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode()))


# -- saving images ------------------------------------------------------------------------------------

def save_image(image: PIL.Image.Image, path, *, metadata: Mapping | None = None, parameters: str | None = None,
               overwrite: bool = False, quality: int = 95) -> Path:
    """Save ``image`` with its metadata (format from the extension: png, jpg/jpeg, webp, pdf, svg).

    PNG holds ``parameters`` and the JSON in text chunks; JPEG and WebP hold ``parameters`` in EXIF
    (UserComment, as A1111 writes it) and the JSON in a sidecar ``<file>.json``; PDF and SVG hold both
    in their document metadata. Files are byte-identical for identical inputs (no timestamps).
    """
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"`image` must be a PIL image, got {type(image).__name__}.")
    path = _target(path, overwrite, tuple(FORMATS), "an image")
    fmt = FORMATS[path.suffix.lower()]
    metadata = _jsonable(dict(metadata or {}))
    blob = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
    vector_blob = json.dumps({**metadata, "_parameters": parameters}, sort_keys=True, separators=(",", ":"))
    rgb = image.convert("RGB")
    if fmt == "PNG":
        info = PIL.PngImagePlugin.PngInfo()
        if parameters is not None:
            info.add_text(PARAMETERS_KEY, parameters)
        info.add_itxt(JSON_KEY, blob, zip=True)
        _atomic_write(path, lambda f: rgb.save(f, "PNG", pnginfo=info))
    elif fmt in ("JPEG", "WEBP"):
        _refuse_sidecar(path, overwrite)
        exif = PIL.Image.Exif()
        if parameters is not None:
            exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + parameters.encode("utf-16-be")  # Exif UserComment
        _atomic_write(path, lambda f: rgb.save(f, fmt, quality=quality, exif=exif.tobytes()))
        _write_json(_sidecar(path), {PARAMETERS_KEY: parameters, JSON_KEY: metadata})
    else:
        _save_vector(rgb, path, fmt, parameters, vector_blob)
    return path


def _save_vector(image: PIL.Image.Image, path: Path, fmt: str, parameters: str | None, blob: str) -> None:
    """PDF/SVG through matplotlib: the image at 100 dpi, metadata in the document, no dates or random ids.

    Uses a bare matplotlib Figure (no pyplot), so a notebook's plotting backend is left alone.
    """
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    payload = _payload(blob)
    w, h = image.size
    title = parameters.splitlines()[0] if parameters else "latentlib figure"
    if fmt == "PDF":
        meta = {"Title": title, "Subject": payload, "Keywords": parameters or "", "Creator": "latentlib",
                "Producer": "latentlib", "CreationDate": None, "ModDate": None}
    else:
        meta = {"Title": title, "Description": payload, "Date": None, "Creator": "latentlib"}
        if parameters:
            meta["Source"] = parameters
    with matplotlib.rc_context({"svg.hashsalt": "latentlib", "svg.image_inline": True, "pdf.compression": 6}):
        fig = MplFigure(figsize=(w / 100, h / 100), dpi=100)
        fig.figimage(np.asarray(image), xo=0, yo=0, origin="upper")
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt.lower(), dpi=100, metadata=meta)
    data = buffer.getvalue()
    _atomic_write(path, lambda f: f.write(data))


# -- reading metadata back ----------------------------------------------------------------------------

def read_metadata(path) -> dict:
    """The metadata a latentlib file carries: ``{"parameters": str | None, "latentlib": dict}``.

    Reads PNG text chunks, a sidecar ``<file>.json`` (JPEG, WebP, CSV, HTML...), PDF and SVG
    document metadata. Raises ValueError when the file carries none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path` {str(path)!r} is not a file.")
    suffix = path.suffix.lower()
    if suffix == ".png":
        with PIL.Image.open(path) as im:
            text = dict(im.text)
        if JSON_KEY in text:
            return {PARAMETERS_KEY: text.get(PARAMETERS_KEY), JSON_KEY: json.loads(text[JSON_KEY])}
    elif suffix in (".pdf", ".svg", ".html"):
        found = _vector_metadata(path.read_bytes())
        if found is not None:
            return found
    if _sidecar(path).is_file():
        data = json.loads(_sidecar(path).read_text())
        return {PARAMETERS_KEY: data.get(PARAMETERS_KEY), JSON_KEY: data.get(JSON_KEY, {})}
    raise ValueError(f"{str(path)!r} carries no latentlib metadata (no text chunk, document metadata or sidecar).")


_PAYLOAD = re.compile(rb"latentlib-json-base64:([A-Za-z0-9+/=]+)")


def _vector_metadata(data: bytes) -> dict | None:
    found = _PAYLOAD.search(data)
    if found is None:
        return None
    meta = json.loads(base64.b64decode(found.group(1)))
    return {PARAMETERS_KEY: meta.pop("_parameters", None), JSON_KEY: meta}


# -- composing figures --------------------------------------------------------------------------------

@dataclass
class Figure:
    """A composed figure: ``image`` (PIL), ``metadata`` (JSON-able; its ``recipe`` makes it again), the
    ``parameters`` text, and the ``images`` it was composed of (row-major, at their own size)."""

    image: PIL.Image.Image
    metadata: dict = field(default_factory=dict)
    parameters: str | None = None
    images: list = field(default_factory=list, repr=False)

    def save(self, path, *, overwrite: bool = False, quality: int = 95) -> Path:
        """Write the figure (png, jpg, webp, pdf, svg) with its metadata; see :func:`save_image`."""
        return save_image(self.image, path, metadata=self.metadata, parameters=self.parameters, overwrite=overwrite,
                          quality=quality)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, "PNG")
        return buffer.getvalue()


def _font(size: int):
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return PIL.ImageFont.load_default()


def _as_pil(image) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return PIL.Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).convert("RGB")


def image_grid(images: Sequence, *, rows: int, cols: int, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, title: str | None = None, cell: int | None = None,
               pad: int = 4, font_size: int = 12, background=(255, 255, 255)) -> PIL.Image.Image:
    """Images in a ``rows`` x ``cols`` grid (row-major), with optional row labels (left), column
    labels (top) and a title. ``cell`` scales each image to that many pixels (nearest neighbour, so
    small images stay sharp); default: the images' own size."""
    images = [_as_pil(im) for im in images]
    if rows < 1 or cols < 1 or len(images) != rows * cols:
        raise ValueError(f"`images` has {len(images)} images; a {rows} x {cols} grid needs {rows * cols}.")
    for name, labels, n in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"`{name}` has {len(labels)} labels; the grid has {n}.")
    w, h = images[0].size
    if cell is not None:
        w, h = cell, round(cell * h / w)
        images = [im.resize((w, h), PIL.Image.Resampling.NEAREST) for im in images]
    font = _font(font_size)
    probe = PIL.ImageDraw.Draw(PIL.Image.new("RGB", (1, 1)))

    def text_size(text):
        box = probe.textbbox((0, 0), text, font=font)
        return box[2] - box[0], box[3] - box[1]

    left = max((text_size(t)[0] for t in row_labels), default=0) + 2 * pad if row_labels else 0
    line = text_size("Ag")[1] + pad
    top = (line + pad if col_labels else 0) + (line + pad if title else 0)
    canvas = PIL.Image.new("RGB", (left + cols * (w + pad) + pad, top + rows * (h + pad) + pad), background)
    draw = PIL.ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill=(0, 0, 0), font=font)
    for c, label in enumerate(col_labels or []):
        tw, _ = text_size(label)
        draw.text((left + pad + c * (w + pad) + max((w - tw) // 2, 0), top - line), label, fill=(0, 0, 0), font=font)
    for r, label in enumerate(row_labels or []):
        _, th = text_size(label)
        draw.text((pad, top + pad + r * (h + pad) + max((h - th) // 2, 0)), label, fill=(0, 0, 0), font=font)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas.paste(im, (left + pad + c * (w + pad), top + pad + r * (h + pad)))
    return canvas


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, Sequence) or not seeds or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"`seeds` must be a non-negative int or a non-empty list of them, got {seeds!r}.")
    return [int(s) for s in seeds]


def _check_prompt(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string (figures record their prompts as text), got {type(value).__name__}.")
    return value


def _generation(model, kwargs: Mapping) -> dict:
    unknown = set(kwargs) - set(_GENERATE_KEYS)
    if unknown:
        raise TypeError(f"unexpected generation argument(s) {', '.join(sorted(unknown))}; figures accept "
                        f"{', '.join(_GENERATE_KEYS)}.")
    out = {"steps": 20, "guidance": 5.0, "scheduler": "default", **kwargs}
    if not isinstance(out["scheduler"], str):
        raise TypeError("`scheduler` must be a scheduler name (figures record it as text), got "
                        f"{type(out['scheduler']).__name__}.")
    if out.get("negative_prompt") is not None:
        _check_prompt("negative_prompt", out["negative_prompt"])
    h, w = model.default_size
    out.setdefault("height", h)
    out.setdefault("width", w)
    return out


def _run(model, prompt, seeds, generation, edits=()) -> list[PIL.Image.Image]:
    return model.generate(prompt, seed=list(seeds), edits=list(edits), progress=False, output="pil", **generation)


def scheduler_name(scheduler) -> str:
    """A diffusers scheduler's sampler name as A1111-style tools write it ("DPM++ 2M Karras", "Euler a")."""
    config = scheduler.config
    cls = type(scheduler).__name__
    karras = " Karras" if config.get("use_karras_sigmas") else ""
    if cls == "DPMSolverMultistepScheduler":
        sde = " SDE" if "sde" in config.get("algorithm_type", "") else ""
        return f"DPM++ {config.get('solver_order', 2)}M{sde}{karras}"
    names = {"DDIMScheduler": "DDIM", "PNDMScheduler": "PLMS", "EulerDiscreteScheduler": "Euler",
             "EulerAncestralDiscreteScheduler": "Euler a", "HeunDiscreteScheduler": "Heun",
             "LMSDiscreteScheduler": "LMS", "UniPCMultistepScheduler": "UniPC", "LCMScheduler": "LCM"}
    return names[cls] + karras if cls in names else cls


def _sampler(model, generation) -> str:
    name = generation["scheduler"]
    return scheduler_name(model.scheduler) if name == "default" else name


def _metadata(model, kind: str, recipe: dict) -> dict:
    return {"format": 1, "figure": kind, "recipe": _jsonable(recipe), "model": model_record(model),
            "versions": versions()}


def _parameters(model, prompt: str, seed: int, generation: dict, extra=None) -> str:
    return parameters_text(prompt, negative_prompt=generation.get("negative_prompt"), steps=generation["steps"],
                           sampler=_sampler(model, generation), guidance=generation["guidance"], seed=seed,
                           width=generation["width"], height=generation["height"], model_name=model.name,
                           model_hash=weights_sha256(model), extra=extra)


def grid(model, prompts: str | Sequence[str], seeds: int | Sequence[int] = (0, 1, 2, 3), *, cell: int | None = None,
         title: str | None = None, **generation) -> Figure:
    """Prompts (rows) x seeds (columns), generated with the same settings.

    Args:
        prompts: one prompt or a list; each row uses one.
        seeds: each column uses one (image (r, c) is ``model.generate(prompts[r], seed=seeds[c])``).
        cell: pixel size each image is shown at (default: the model's size, at least 128).
        **generation: ``steps``, ``guidance``, ``scheduler`` (a name), ``negative_prompt``, ``eta``,
            ``guidance_rescale``, ``height``, ``width``.
    """
    prompts = [_check_prompt("prompts", prompts)] if isinstance(prompts, str) else [
        _check_prompt("prompts", p) for p in prompts]
    if not prompts:
        raise ValueError("`prompts` is empty; give at least one prompt.")
    seeds = _check_seeds(seeds)
    gen = _generation(model, generation)
    images = [im for p in prompts for im in _run(model, p, seeds, gen)]
    cell = cell or max(gen["width"], 128)
    image = image_grid(images, rows=len(prompts), cols=len(seeds), row_labels=prompts,
                       col_labels=[f"seed {s}" for s in seeds], title=title, cell=cell)
    recipe = {"prompts": prompts, "seeds": seeds, "cell": cell, "title": title, **gen}
    return Figure(image, _metadata(model, "grid", recipe), _parameters(model, prompts[0], seeds[0], gen), images)


def sweep(model, directions, strengths: Sequence[float] = (-3, -1.5, 0, 1.5, 3), *, seeds: int | Sequence[int] = 0,
          prompt: str = "", cell: int | None = None, title: str | None = None, **generation) -> Figure:
    """A direction sweep: strengths (columns) x seeds (rows) for one direction, or strengths x
    directions (rows) for several directions and one seed.

    Each image is ``model.generate(prompt, seed=s, edits=[(direction, strength)])``; strength is in units
    of the direction's ``scale`` (the samples' standard deviation along it, see :mod:`latentlib.edits`).
    """
    single = not isinstance(directions, (list, tuple))
    directions = [directions] if single else list(directions)
    if not directions:
        raise ValueError("`directions` is empty; give a direction or a list of them.")
    records = [direction_record(d) for d in directions]
    if not isinstance(strengths, Sequence) or not strengths or not all(
            isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) for s in strengths):
        raise ValueError(f"`strengths` must be a non-empty list of finite numbers, got {strengths!r}.")
    strengths = [float(s) for s in strengths]
    seeds = _check_seeds(seeds)
    if len(directions) > 1 and len(seeds) > 1:
        raise ValueError(f"sweep several directions with one seed, or one direction over several seeds; got "
                         f"{len(directions)} directions and {len(seeds)} seeds.")
    prompt = _check_prompt("prompt", prompt)
    gen = _generation(model, generation)
    rebuilt = [direction_from_record(r) for r in records]  # exactly what the metadata can rebuild
    images, row_labels = [], []
    if len(rebuilt) == 1:
        for seed in seeds:
            for s in strengths:
                images += _run(model, prompt, [seed], gen, [(rebuilt[0], s)])
            row_labels.append(f"seed {seed}")
    else:
        for k, d in enumerate(rebuilt):
            for s in strengths:
                images += _run(model, prompt, seeds, gen, [(d, s)])
            row_labels.append(d.name or f"direction {k}")
    cell = cell or max(gen["width"], 128)
    name = rebuilt[0].name or "direction"
    image = image_grid(images, rows=len(row_labels), cols=len(strengths), row_labels=row_labels,
                       col_labels=[f"{s:+g}" for s in strengths],
                       title=title if title is not None else (f"{name}: strength" if single else "strength"), cell=cell)
    recipe = {"directions": records, "single": single, "strengths": strengths, "seeds": seeds, "prompt": prompt,
              "cell": cell, "title": title, **gen}
    extra = {"Directions": "; ".join(r["name"] or "unnamed" for r in records)}
    return Figure(image, _metadata(model, "sweep", recipe), _parameters(model, prompt, seeds[0], gen, extra), images)


def strip(model, start, end, *, between: str = "seeds", n: int = 8, method: str = "slerp", prompt: str = "",
          seed: int = 0, cell: int | None = None, title: str | None = None, **generation) -> Figure:
    """An interpolation strip of ``n`` frames from ``start`` to ``end``.

    Args:
        between: ``"seeds"`` (``start``, ``end`` are seeds; their noise is interpolated, ``prompt`` fixed) or
            ``"prompts"`` (``start``, ``end`` are prompts; their embeddings are interpolated, ``seed`` fixed).
        method: ``"slerp"`` or ``"lerp"``.
    """
    if between not in ("seeds", "prompts"):
        raise ValueError(f"`between` must be 'seeds' or 'prompts', got {between!r}.")
    if method not in ("slerp", "lerp"):
        raise ValueError(f"`method` must be 'slerp' or 'lerp', got {method!r}.")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"`n` must be an integer >= 2 (frames, ends included), got {n!r}.")
    gen = _generation(model, generation)
    interpolate = slerp if method == "slerp" else lerp
    t = torch.linspace(0, 1, int(n))
    if between == "seeds":
        a, b = _check_seeds([start, end])
        prompt = _check_prompt("prompt", prompt)
        noise = model.noise(seed=[a, b], height=gen["height"], width=gen["width"])
        latents = interpolate(noise[0], noise[1], t)
        images = model.generate(prompt, latents=latents, seed=[a] * int(n), progress=False, **gen)
        first = (prompt, a)
    else:
        start, end = _check_prompt("start", start), _check_prompt("end", end)
        seed = _check_seeds(seed)[0]
        ea, eb = model.embed(start), model.embed(end)
        mix = [getattr(ea, method)(eb, float(x)) for x in t.tolist()]
        images = [model.generate(e, seed=seed, progress=False, **gen)[0] for e in mix]
        first = (start, seed)
    cell = cell or max(gen["width"], 128)
    default_title = f"{method} between {between}: {start!r} -> {end!r}"
    image = image_grid(images, rows=1, cols=int(n), col_labels=[f"{x:.2f}" for x in t.tolist()],
                       title=title if title is not None else default_title, cell=cell)
    recipe = {"start": start, "end": end, "between": between, "n": int(n), "method": method, "prompt": prompt,
              "seed": seed, "cell": cell, "title": title, **gen}
    return Figure(image, _metadata(model, "strip", recipe), _parameters(model, first[0], first[1], gen), list(images))


def before_after(before, after, mask=None, *, labels: Sequence[str] = ("before", "after"), cell: int | None = None,
                 outline=(255, 0, 255), metadata: Mapping | None = None) -> Figure:
    """Two images side by side; with ``mask`` (white = changed; PIL, array or tensor at the images' size)
    its outline is drawn on both. ``metadata`` is stored with the figure as given."""
    a, b = _as_pil(before), _as_pil(after)
    if a.size != b.size:
        raise ValueError(f"`before` is {a.size[0]}x{a.size[1]} but `after` is {b.size[0]}x{b.size[1]}; they must match.")
    mask_hash = None
    if mask is not None:
        m = np.asarray(_as_pil(mask).convert("L"), dtype=np.float32) / 255
        if m.shape != (a.size[1], a.size[0]):
            raise ValueError(f"`mask` is {m.shape[1]}x{m.shape[0]}; the images are {a.size[0]}x{a.size[1]}.")
        mask_hash = hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest()
        inside = m >= 0.5
        edge = inside & ~(np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1))
        a, b = (_outline(x, edge, outline) for x in (a, b))
    image = image_grid([a, b], rows=1, cols=2, col_labels=list(labels), cell=cell or max(a.size[0], 128))
    meta = {"format": 1, "figure": "before_after", "mask_sha256": mask_hash, "user": _jsonable(dict(metadata or {})),
            "versions": versions()}
    return Figure(image, meta, None, [a, b])


def _outline(image: PIL.Image.Image, edge: np.ndarray, colour) -> PIL.Image.Image:
    array = np.array(image)
    array[edge] = colour
    return PIL.Image.fromarray(array)


_BUILDERS = {"grid": grid, "sweep": sweep, "strip": strip}


def reproduce(path, model=None, *, check_weights: bool = True) -> Figure:
    """Make the figure saved at ``path`` again from its metadata.

    Args:
        model: the model to use; default: load the recorded one by name (``latentlib.load(name)``).
        check_weights: refuse a model whose weight hash differs from the recorded one.

    On the same device and library versions the pixels are identical.
    """
    meta = read_metadata(path)[JSON_KEY]
    kind = meta.get("figure")
    if kind not in _BUILDERS:
        raise ValueError(f"{str(path)!r} holds a {kind!r} figure, which is not made by a model; reproducible "
                         f"figures are {', '.join(_BUILDERS)}.")
    recorded = meta["model"]
    if model is None:
        from .model import load

        model = load(recorded["name"], device=recorded["device"], dtype=recorded["dtype"])
    if check_weights and weights_sha256(model) != recorded["weights_sha256"]:
        raise ValueError(f"the model's weights (sha256 {weights_sha256(model)[:12]}...) differ from the ones that made "
                         f"{str(path)!r} ({recorded['weights_sha256'][:12]}..., {recorded['name']!r}); pass the "
                         "right model, or check_weights=False to accept a different one.")
    recipe = dict(meta["recipe"])
    if kind == "sweep":
        directions = [direction_from_record(r) for r in recipe.pop("directions")]
        recipe["directions"] = directions[0] if recipe.pop("single") else directions
        fig = sweep(model, recipe.pop("directions"), recipe.pop("strengths"), **recipe)
    elif kind == "strip":
        fig = strip(model, recipe.pop("start"), recipe.pop("end"), **recipe)
    else:
        fig = grid(model, recipe.pop("prompts"), recipe.pop("seeds"), **recipe)
    return fig


# -- maps ---------------------------------------------------------------------------------------------

def _thumbnail_uri(image, size: int = 64) -> str:
    buffer = io.BytesIO()
    _as_pil(image).resize((size, size), PIL.Image.Resampling.NEAREST).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def scatter_map(xy, *, color: Sequence | None = None, labels: Sequence[str] | None = None,
                thumbnails: Sequence | None = None, title: str = "", color_name: str = "", metadata=None,
                thumbnails_on_map: bool = False, thumbnail_size: float = 0.06):
    """A plotly scatter of a 2-D map (UMAP, PCA...): points coloured by ``color``, ``labels`` on hover,
    and ``thumbnails`` (images, one per point) shown on hover in the HTML export. With
    ``thumbnails_on_map`` each thumbnail is also drawn at its point (``thumbnail_size``: a fraction of
    the axes' span), so static PNG/SVG/PDF exports show them too.

    Returns a ``plotly.graph_objects.Figure`` whose ``layout.meta`` holds ``metadata``.
    """
    import plotly.graph_objects as go

    xy = np.asarray(xy, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise ValueError(f"`xy` must have shape (N, 2) with N >= 1, got {xy.shape}.")
    for name, values in (("color", color), ("labels", labels), ("thumbnails", thumbnails)):
        if values is not None and len(values) != len(xy):
            raise ValueError(f"`{name}` has {len(values)} entries; `xy` has {len(xy)} points.")
    text = list(labels) if labels is not None else [str(i) for i in range(len(xy))]
    custom = [_thumbnail_uri(im) for im in thumbnails] if thumbnails is not None else None
    marker = {"size": 8}
    if color is not None:
        values = list(color)
        if all(isinstance(v, numbers.Real) for v in values):
            marker.update(color=values, colorscale="Viridis", showscale=True, colorbar={"title": color_name})
            traces = [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, text=text, customdata=custom,
                                 hovertemplate="%{text}<extra></extra>")]
        else:
            traces = []
            for group in sorted({str(v) for v in values}):
                idx = [i for i, v in enumerate(values) if str(v) == group]
                traces.append(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=group, marker={"size": 8},
                                         text=[text[i] for i in idx],
                                         customdata=[custom[i] for i in idx] if custom else None,
                                         hovertemplate="%{text}<extra>" + group + "</extra>"))
    else:
        traces = [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, text=text, customdata=custom,
                             hovertemplate="%{text}<extra></extra>")]
    fig = go.Figure(traces)
    if thumbnails_on_map and custom:
        span = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1e-9))
        for (x, y), uri in zip(xy, custom, strict=True):
            fig.add_layout_image(source=uri, x=float(x), y=float(y), xref="x", yref="y", sizex=thumbnail_size * span,
                                 sizey=thumbnail_size * span, xanchor="center", yanchor="middle", layer="above")
    fig.update_layout(title=title, template="plotly_white", width=720, height=560,
                      legend_title_text=color_name, meta=_jsonable(dict(metadata or {})))
    return fig


_HOVER_SCRIPT = """
<script>
(function () {
  var plot = document.getElementById('%(div)s');
  var tip = document.createElement('img');
  tip.style.cssText = 'position:fixed;display:none;width:96px;height:96px;image-rendering:pixelated;' +
                      'border:1px solid #888;background:#fff;pointer-events:none;z-index:10';
  document.body.appendChild(tip);
  plot.on('plotly_hover', function (e) {
    var p = e.points[0];
    if (!p.customdata) { return; }
    tip.src = p.customdata; tip.style.display = 'block';
    tip.style.left = (e.event.clientX + 12) + 'px'; tip.style.top = (e.event.clientY + 12) + 'px';
  });
  plot.on('plotly_unhover', function () { tip.style.display = 'none'; });
})();
</script>
"""


def save_map(fig, path, *, overwrite: bool = False, browser_path: str | None = None) -> dict:
    """Save a :func:`scatter_map` figure: ``.html`` (interactive, plotly.js inline, works offline) always;
    ``.png``/``.svg``/``.pdf`` through kaleido with a Chromium browser (``browser_path``, else the
    ``BROWSER_PATH`` environment variable, else ``chromium`` on the PATH), falling back to matplotlib
    (points and colours, no thumbnails) when no browser works, and saying so.

    Returns ``{"path": Path, "renderer": "plotly" | "kaleido" | "matplotlib", "note": str | None}``.
    The figure's ``layout.meta`` is written into the file (HTML, SVG, PDF) or a sidecar (PNG + .json).
    """
    import shutil

    path = _target(path, overwrite, MAP_FORMATS, "a map")
    if path.suffix.lower() in (".png", ".pdf"):  # these may get a sidecar
        _refuse_sidecar(path, overwrite)
    meta = fig.layout.meta if fig.layout.meta is not None else {}
    blob = json.dumps(_jsonable(meta), sort_keys=True, separators=(",", ":"))
    suffix = path.suffix.lower()
    if suffix == ".html":
        div = "latentlib-map"
        html = fig.to_html(include_plotlyjs=True, full_html=True, div_id=div)
        html = html.replace("</body>", (_HOVER_SCRIPT % {"div": div}) + "</body>", 1)
        payload = _payload(blob)
        html = html.replace("<head>", f'<head><meta name="latentlib" content="{payload}">', 1)
        _atomic_write(path, lambda f: f.write(html.encode()))
        return {"path": path, "renderer": "plotly", "note": None}
    browser = browser_path or os.environ.get("BROWSER_PATH") or shutil.which("chromium") \
        or shutil.which("chromium-browser") or shutil.which("google-chrome")
    note = None
    if browser is not None:
        try:
            data = _kaleido_bytes(fig, suffix[1:], browser)
            renderer = "kaleido"
        except Exception as error:  # noqa: BLE001 - any failure of the browser path falls back, and says why
            note = f"kaleido with {browser} failed ({type(error).__name__}: {error}); drawn with matplotlib instead"
            data = None
    else:
        note = "no Chromium found (set BROWSER_PATH or install chromium); drawn with matplotlib instead"
        data = None
    if data is None:
        data = _matplotlib_map(fig, suffix[1:], blob)
        renderer = "matplotlib"
    elif suffix in (".svg", ".pdf"):
        data = _stamp_vector(data, suffix, blob)
    _atomic_write(path, lambda f: f.write(data))
    if suffix == ".png" or (renderer == "kaleido" and suffix == ".pdf"):  # no room in the file for the JSON
        _write_json(_sidecar(path), {PARAMETERS_KEY: None, JSON_KEY: json.loads(blob), "renderer": renderer})
    if note is not None:
        import warnings

        warnings.warn(note, stacklevel=2)
    return {"path": path, "renderer": renderer, "note": note}


def _kaleido_bytes(fig, fmt: str, browser: str) -> bytes:
    import kaleido  # noqa: F401 - fail early with ImportError when it is not installed

    before = os.environ.get("BROWSER_PATH")
    os.environ["BROWSER_PATH"] = browser  # where kaleido's browser driver (choreographer) looks first
    try:
        return fig.to_image(format=fmt)
    finally:
        if before is None:
            os.environ.pop("BROWSER_PATH", None)
        else:
            os.environ["BROWSER_PATH"] = before


def _stamp_vector(data: bytes, suffix: str, blob: str) -> bytes:
    """Add the JSON to an SVG produced by another renderer (as an XML comment the reader finds)."""
    payload = _payload(blob).encode()
    if suffix == ".svg":
        at = data.find(b">", data.find(b"<svg")) + 1
        return data[:at] + b"<!-- " + payload + b" -->" + data[at:]
    return data


def _matplotlib_map(fig, fmt: str, blob: str) -> bytes:
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(7.2, 5.6), dpi=100)  # no pyplot: a notebook's backend is left alone
    ax = figure.add_subplot()
    for trace in fig.data:
        colors = trace.marker.color if trace.marker is not None else None
        ax.scatter(trace.x, trace.y, s=18, c=colors if colors is not None and not isinstance(colors, str) else None,
                   label=trace.name)
    if any(t.name for t in fig.data):
        ax.legend(title=fig.layout.legend.title.text or None, fontsize=8)
    ax.set_title(fig.layout.title.text or "")
    payload = _payload(blob)
    meta = {"PDF": {"Subject": payload, "CreationDate": None, "ModDate": None, "Producer": "latentlib"},
            "SVG": {"Description": payload, "Date": None}}.get(fmt.upper(), {})
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "latentlib"}):
        figure.savefig(buffer, format=fmt, metadata=meta or None)
    return buffer.getvalue()


# -- tables -------------------------------------------------------------------------------------------

def _rows(rows) -> tuple[list[str], list[list]]:
    if isinstance(rows, Mapping):  # {name: {column: value}} -> one row per name
        rows = [{"name": k, **(v if isinstance(v, Mapping) else {"value": v})} for k, v in rows.items()]
    rows = list(rows)
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("`rows` must be a non-empty list of dicts (one per row) or a dict of dicts.")
    columns: list[str] = []
    for r in rows:
        columns += [str(k) for k in r if str(k) not in columns]
    return columns, [[r.get(c, "") for c in columns] for r in rows]


def _cell(value, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}g}"
    return str(value)


def _latex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        text = text.replace(a, b) if a != "\\" else text.replace(a, "\0")
    return text.replace("\0", r"\textbackslash{}")


def table_text(rows, fmt: str, *, digits: int = 4, caption: str | None = None) -> str:
    """A table (list of dicts, or dict of dicts) as ``"csv"``, ``"md"`` (Markdown) or ``"tex"`` (LaTeX)."""
    columns, body = _rows(rows)
    cells = [[_cell(v, digits) for v in row] for row in body]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buffer.getvalue()
    if fmt == "md":
        esc = [[c.replace("|", r"\|") for c in row] for row in [columns, *cells]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in esc[1:]]
        return ("" if caption is None else f"{caption}\n\n") + "\n".join(lines) + "\n"
    if fmt == "tex":
        numeric = [all(isinstance(r[i], numbers.Real) and not isinstance(r[i], bool) for r in body)
                   for i in range(len(columns))]
        spec = "".join("r" if n else "l" for n in numeric)
        lines = [r"\begin{table}[ht]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\hline",
                 " & ".join(_latex(c) for c in columns) + r" \\", r"\hline"]
        lines += [" & ".join(_latex(c) for c in row) + r" \\" for row in cells]
        lines += [r"\hline", r"\end{tabular}"]
        if caption:
            lines.append(rf"\caption{{{_latex(caption)}}}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"`fmt` must be 'csv', 'md' or 'tex', got {fmt!r}.")


def save_table(rows, path, *, overwrite: bool = False, digits: int = 4, caption: str | None = None,
               metadata: Mapping | None = None) -> Path:
    """Write a table as CSV, Markdown or LaTeX (from the extension), with ``metadata`` in a sidecar ``.json``."""
    path = _target(path, overwrite, TABLE_FORMATS, "a table")
    _refuse_sidecar(path, overwrite)
    text = table_text(rows, path.suffix.lower()[1:], digits=digits, caption=caption)
    _atomic_write(path, lambda f: f.write(text.encode()))
    _write_json(_sidecar(path), {PARAMETERS_KEY: None,
                                 JSON_KEY: {"format": 1, "figure": "table", "user": _jsonable(dict(metadata or {})),
                                            "versions": versions()}})
    return path
