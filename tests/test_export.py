"""latentlib.export: figures carry their parameters, can be made again, and are written safely."""

import json
import os
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

import latentlib as ll
from latentlib import export

STEPS = 4


@pytest.fixture(scope="module")
def model():
    return ll.load()


@pytest.fixture(scope="module")
def fig(model):
    return export.grid(model, ["a red circle", "a blue star on a white background"], seeds=[0, 1], steps=STEPS)


def _xt_direction(seed=0):
    vector = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return SimpleNamespace(name=f"xt{seed}", space="xT", vector=vector / vector.norm(), scale=4.0)


def _pixels(image):
    return np.asarray(image.convert("RGB"))


def _a1111_fields(text: str) -> dict:
    """Parse the last line of a ``parameters`` text as A1111-style readers do."""
    return dict(part.split(": ", 1) for part in text.splitlines()[-1].split(", "))


def test_png_parameters_are_in_the_format_other_tools_read(model, fig, tmp_path):
    path = fig.save(tmp_path / "grid.png")
    with PIL.Image.open(path) as im:
        text = im.text["parameters"]
    assert text.splitlines()[0] == "a red circle"
    fields = _a1111_fields(text)
    assert fields["Steps"] == str(STEPS) and fields["CFG scale"] == "5.0" and fields["Seed"] == "0"
    assert fields["Sampler"] == "DPM++ 2M" and fields["Size"] == "64x64" and fields["Model"] == "shapes"
    assert fields["Model hash"] == export.weights_sha256(model)[:10]
    negative = export.grid(model, "a red circle", seeds=[3], steps=STEPS, negative_prompt="a blue square")
    assert negative.parameters.splitlines()[1] == "Negative prompt: a blue square"
    assert _a1111_fields(negative.parameters)["Seed"] == "3"


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "pdf", "svg"])
def test_metadata_round_trips_in_every_format(fig, tmp_path, ext):
    path = fig.save(tmp_path / f"grid.{ext}")
    meta = export.read_metadata(path)
    assert meta["parameters"] == fig.parameters
    assert meta["latentlib"] == json.loads(json.dumps(fig.metadata))
    recipe = meta["latentlib"]["recipe"]
    assert recipe["prompts"] == ["a red circle", "a blue star on a white background"] and recipe["seeds"] == [0, 1]
    assert meta["latentlib"]["model"]["scheduler"]["class"] == "DPMSolverMultistepScheduler"
    assert set(meta["latentlib"]["versions"]) >= {"latentlib", "torch", "diffusers"}
    if ext in ("jpg", "webp"):
        assert (tmp_path / f"grid.{ext}.json").is_file()  # no room for the JSON inside: a sidecar
        with PIL.Image.open(path) as im:  # the parameters also sit in EXIF UserComment, as A1111 writes them
            comment = im.getexif().get_ifd(0x8769)[0x9286]
        assert comment[8:].decode("utf-16-be") == fig.parameters


def test_reproduce_gives_identical_pixels(model, tmp_path):
    figures = {
        "grid": export.grid(model, ["a small green cross", "a large yellow square"], seeds=[5, 6], steps=STEPS),
        "sweep": export.sweep(model, _xt_direction(), [-1, 0, 1], seeds=[0, 1], prompt="a red circle", steps=STEPS),
        "sweeps": export.sweep(model, [_xt_direction(0), _xt_direction(1)], [-1, 1], seeds=2, steps=STEPS),
        "strip_prompts": export.strip(model, "a red circle", "a blue square", between="prompts", n=3, steps=STEPS),
        "strip_seeds": export.strip(model, 0, 1, between="seeds", n=3, prompt="a star", method="lerp", steps=STEPS),
    }
    for name, made in figures.items():
        path = made.save(tmp_path / f"{name}.png")
        again = export.reproduce(path)  # loads the recorded model by name
        assert np.array_equal(_pixels(again.image), _pixels(made.image)), name
        assert again.metadata["recipe"] == made.metadata["recipe"], name


def test_figures_show_what_model_generate_makes(model):
    sweep = export.sweep(model, _xt_direction(), [-1, 0, 1], seeds=[4], prompt="a red circle", steps=STEPS)
    plain = model.generate("a red circle", seed=4, steps=STEPS, progress=False)[0]
    assert np.array_equal(_pixels(sweep.images[1]), _pixels(plain))  # strength 0 is no edit
    assert not np.array_equal(_pixels(sweep.images[0]), _pixels(plain))
    strip = export.strip(model, 7, 8, between="seeds", n=4, prompt="a blue circle", steps=STEPS)
    for image, seed in ((strip.images[0], 7), (strip.images[-1], 8)):
        ends = model.generate("a blue circle", seed=seed, steps=STEPS, progress=False)[0]
        assert np.abs(_pixels(image).astype(int) - _pixels(ends).astype(int)).max() <= 1


@pytest.mark.parametrize("ext", ["png", "pdf", "svg", "jpg"])
def test_same_inputs_give_byte_identical_files(model, tmp_path, ext):
    a = export.grid(model, "a red circle", seeds=[0, 1], steps=STEPS).save(tmp_path / f"a.{ext}")
    b = export.grid(model, "a red circle", seeds=[0, 1], steps=STEPS).save(tmp_path / f"b.{ext}")
    assert a.read_bytes() == b.read_bytes()


def test_existing_files_are_not_overwritten_unless_asked(fig, tmp_path):
    path = fig.save(tmp_path / "grid.png")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"grid.png' exists; pass overwrite=True"):
        fig.save(path)
    assert path.read_bytes() == before
    other = export.Figure(PIL.Image.new("RGB", (8, 8)), {"x": 1})
    other.save(path, overwrite=True)
    assert export.read_metadata(path)["latentlib"] == {"x": 1}
    fig.save(tmp_path / "grid.jpg")
    (tmp_path / "grid.jpg").unlink()  # the image is gone but its sidecar is still there
    with pytest.raises(FileExistsError, match="sidecar"):
        fig.save(tmp_path / "grid.jpg")


def test_an_interrupted_write_leaves_no_half_file(fig, tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    original = PIL.Image.Image.save

    def crash(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(PIL.Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        fig.save(path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
    monkeypatch.setattr(PIL.Image.Image, "save", original)
    fig.save(path)
    kept = path.read_bytes()
    monkeypatch.setattr(PIL.Image.Image, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        fig.save(path, overwrite=True)
    assert path.read_bytes() == kept and [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_paths_are_checked_and_folders_created(fig, tmp_path):
    deep = fig.save(tmp_path / "a" / "b" / "grid.webp")
    assert deep.is_file()
    with pytest.raises(ValueError, match=r"extension '.gif'; an image can be saved as .png, .jpg"):
        fig.save(tmp_path / "grid.gif")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        fig.save(tmp_path / "file" / "grid.png")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ValueError, match="folder.csv' is a directory"):
        export.save_table([{"a": 1}], tmp_path / "folder.csv")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        export.read_metadata(tmp_path / "missing.png")
    PIL.Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="carries no latentlib metadata"):
        export.read_metadata(tmp_path / "plain.png")


def test_reproduce_refuses_other_weights(fig, tmp_path):
    path = fig.save(tmp_path / "grid.png")
    other = ll.load()
    with torch.no_grad():
        other.unet.conv_out.bias += 0.01
    with pytest.raises(ValueError, match="weights .* differ from the ones that made"):
        export.reproduce(path, other)
    assert export.reproduce(path, other, check_weights=False).image.size == fig.image.size
    before = export.before_after(fig.images[0], fig.images[1]).save(tmp_path / "ba.png")
    with pytest.raises(ValueError, match="'before_after' figure, which is not made by a model"):
        export.reproduce(before)


def test_directions_travel_with_the_figure_and_are_checked(tmp_path):
    d = _xt_direction(3)
    record = export.direction_record(d, strength=2.0)
    back = export.direction_from_record(record)
    assert torch.equal(back.vector, d.vector) and back.space == "xT" and back.scale == 4.0
    record["vector"] = export.direction_record(_xt_direction(4))["vector"]
    with pytest.raises(ValueError, match="does not match its hash"):
        export.direction_from_record(record)
    with pytest.raises(TypeError, match="a direction needs `space`"):
        export.direction_record(SimpleNamespace(space="w", vector=torch.ones(3)))


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match=r"`seeds` must be a non-negative int .* got \[-1\]"):
        export.grid(model, "a red circle", seeds=[-1])
    with pytest.raises(TypeError, match="unexpected generation argument.*latents"):
        export.grid(model, "a red circle", seeds=[0], latents=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="several directions with one seed"):
        export.sweep(model, [_xt_direction(0), _xt_direction(1)], [0, 1], seeds=[0, 1])
    with pytest.raises(ValueError, match=r"`strengths` must be a non-empty list of finite numbers, got \[nan\]"):
        export.sweep(model, _xt_direction(), [float("nan")])
    with pytest.raises(ValueError, match="`between` must be 'seeds' or 'prompts', got 'images'"):
        export.strip(model, 0, 1, between="images")
    with pytest.raises(ValueError, match="`n` must be an integer >= 2"):
        export.strip(model, 0, 1, n=1)


def test_before_after_outlines_the_mask(fig, tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    made = export.before_after(fig.images[0], fig.images[1], mask, metadata={"note": "test"})
    a = _pixels(made.images[0])
    assert (a[16, 16:48] == (255, 0, 255)).all() and (a[32, 32] != (255, 0, 255)).any()
    meta = export.read_metadata(made.save(tmp_path / "ba.png"))["latentlib"]
    assert meta["figure"] == "before_after" and meta["user"] == {"note": "test"} and len(meta["mask_sha256"]) == 64
    with pytest.raises(ValueError, match="`mask` is 8x8; the images are 64x64"):
        export.before_after(fig.images[0], fig.images[1], np.zeros((8, 8)))


def test_image_grid_layout():
    cells = [np.full((8, 8, 3), v, np.uint8) for v in (0, 80, 160, 240)]
    canvas = export.image_grid(cells, rows=2, cols=2, pad=2)
    assert canvas.size == (2 + 2 * 10, 2 + 2 * 10)
    assert _pixels(canvas)[2, 2].tolist() == [0, 0, 0] and _pixels(canvas)[12, 12].tolist() == [240, 240, 240]
    labelled = export.image_grid(cells, rows=2, cols=2, row_labels=["a", "b"], col_labels=["x", "y"], cell=16)
    assert labelled.size[0] > 2 * 16 and labelled.size[1] > 2 * 16
    with pytest.raises(ValueError, match="`images` has 4 images; a 3 x 2 grid needs 6"):
        export.image_grid(cells, rows=3, cols=2)


ROWS = [{"direction": "size", "monotonic": 0.98, "effect": 1.23456, "n": 64},
        {"direction": "x_pos", "monotonic": 1.0, "effect": -0.5, "n": 64}]


def test_tables_in_csv_markdown_and_latex(tmp_path):
    assert export.table_text(ROWS, "csv").splitlines() == ["direction,monotonic,effect,n", "size,0.98,1.235,64",
                                                           "x_pos,1,-0.5,64"]
    md = export.table_text(ROWS, "md").splitlines()
    assert md[0] == "| direction | monotonic | effect | n |" and md[1] == "|---|---|---|---|"
    assert md[2] == "| size | 0.98 | 1.235 | 64 |"
    tex = export.table_text(ROWS, "tex", caption="Report card")
    assert r"\begin{tabular}{lrrr}" in tex and r"x\_pos & 1 & -0.5 & 64 \\" in tex and r"\caption{Report card}" in tex
    for ext in ("csv", "md", "tex"):
        path = export.save_table(ROWS, tmp_path / f"card.{ext}", metadata={"bank": "b1"})
        assert path.read_text() == export.table_text(ROWS, ext)
        assert export.read_metadata(path)["latentlib"]["user"] == {"bank": "b1"}
        with pytest.raises(FileExistsError):
            export.save_table(ROWS, path)
    with pytest.raises(ValueError, match="non-empty list of dicts"):
        export.table_text([], "csv")


def _map(fig):
    rng = np.random.default_rng(0)
    return export.scatter_map(rng.normal(size=(6, 2)), color=["circle", "star"] * 3, labels=[f"s{i}" for i in range(6)],
                              thumbnails=fig.images[:2] * 3, title="map", metadata={"space": "xT", "method": "pca"})


def test_map_html_is_interactive_and_carries_metadata(fig, tmp_path):
    out = export.save_map(_map(fig), tmp_path / "map.html")
    html = out["path"].read_text()
    assert out["renderer"] == "plotly" and "plotly_hover" in html and "data:image/png;base64," in html
    assert 'src="http' not in html and len(html) > 1_000_000  # plotly.js is inline: the file works offline
    assert export.read_metadata(out["path"]) == {"parameters": None, "latentlib": {"space": "xT", "method": "pca"}}


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_static_map_falls_back_to_matplotlib_without_a_browser(fig, tmp_path, monkeypatch, ext):
    monkeypatch.setenv("BROWSER_PATH", "")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no Chromium found .* drawn with matplotlib instead"):
        out = export.save_map(_map(fig), tmp_path / f"map.{ext}")
    assert out["renderer"] == "matplotlib" and out["path"].stat().st_size > 1000
    assert export.read_metadata(out["path"])["latentlib"] == {"space": "xT", "method": "pca"}


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_static_map_with_chromium(fig, tmp_path, ext):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run); it is missing")
        pytest.skip("chromium is not installed on this machine (CI installs it)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning: kaleido must have worked
        out = export.save_map(_map(fig), tmp_path / f"map.{ext}", browser_path=browser)
    assert out["renderer"] == "kaleido"
    data = out["path"].read_bytes()
    if ext == "png":
        with PIL.Image.open(out["path"]) as im:
            assert im.size[0] >= 700 and len(np.unique(np.asarray(im.convert("L")))) > 10
    else:
        assert data.startswith(b"%PDF" if ext == "pdf" else b"<svg")
    assert export.read_metadata(out["path"])["latentlib"] == {"space": "xT", "method": "pca"}


def test_thumbnails_can_sit_on_the_map(fig):
    plain = _map(fig)
    assert len(plain.layout.images) == 0
    rng = np.random.default_rng(0)
    on = export.scatter_map(rng.normal(size=(4, 2)), thumbnails=fig.images, thumbnails_on_map=True)
    assert len(on.layout.images) == 4 and on.layout.images[0].source.startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="`thumbnails` has 4 entries; `xy` has 3 points"):
        export.scatter_map(np.zeros((3, 2)), thumbnails=fig.images)


def test_vector_export_leaves_the_plotting_backend_alone(fig, tmp_path, monkeypatch):
    import matplotlib

    calls = []
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: calls.append(a))
    fig.save(tmp_path / "grid.pdf")
    monkeypatch.setenv("BROWSER_PATH", "")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.warns(UserWarning):
        export.save_map(_map(fig), tmp_path / "map.svg")
    assert calls == []  # a notebook's inline backend is never switched


def test_static_map_never_replaces_a_sidecar_unasked(fig, tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (tmp_path / "map.png.json").write_text("{}")
    with pytest.raises(FileExistsError, match="sidecar"):
        export.save_map(_map(fig), tmp_path / "map.png")
    assert (tmp_path / "map.png.json").read_text() == "{}" and not (tmp_path / "map.png").exists()
