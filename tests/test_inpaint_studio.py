"""lab.InpaintStudio without a browser: strokes paint exactly the brush's disks, undo/clear/eraser, the
overlay follows grow/erode/feather, Run gives model.inpaint's result, export keeps the mask, bad input."""

import datetime
import io

import numpy as np
import PIL.Image
import pytest

import latentlib as ll
from lab import InpaintStudio
from latentlib import export, masks, shapes

STEPS = 3


@pytest.fixture(scope="module")
def model():
    return ll.load()


@pytest.fixture
def studio(model):
    app = InpaintStudio(model, shapes.render(shapes.sample_scene(3, "test")), prompt="a blue square", steps=STEPS,
                        brush=3)
    yield app
    app.close()


def disk(h, w, x, y, r):
    yy, xx = np.ogrid[:h, :w]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def test_a_stroke_paints_the_brush_disks_along_its_path(studio):
    studio.stroke([(20, 30)])
    np.testing.assert_array_equal(studio.mask > 0, disk(64, 64, 20, 30, 3))
    studio.stroke([(40, 10), (50, 10)])
    expected = disk(64, 64, 20, 30, 3)
    for x in range(40, 51):
        expected |= disk(64, 64, x, 10, 3)
    np.testing.assert_array_equal(studio.mask > 0, expected)
    studio.stroke([(45, 10)], erase=True)
    expected &= ~disk(64, 64, 45, 10, 3)
    np.testing.assert_array_equal(studio.mask > 0, expected)
    studio.undo()  # the eraser stroke
    assert studio.mask[10, 45] == 1
    studio.clear()
    assert not studio.mask.any()
    studio.undo()
    assert studio.mask[30, 20] == 1


def test_canvas_mouse_events_paint_in_image_pixels(studio):
    s = studio._scale()
    assert s == 4  # 64 px shown at 256
    studio._down(82, 122)  # canvas pixels -> the centre of image pixel (20, 30)
    studio._move(102, 122)  # -> (25, 30)
    studio._up(102, 122)
    studio._move(200, 200)  # not drawing any more: nothing happens
    expected = np.zeros((64, 64), bool)
    for x in range(20, 26):
        expected |= disk(64, 64, x, 30, 3)
    np.testing.assert_array_equal(studio.mask > 0, expected)


def test_overlay_follows_grow_erode_and_feather(studio):
    studio.stroke([(32, 32)])
    painted = studio.mask.copy()
    studio.grow.value, studio.feather.value = 0, 0
    np.testing.assert_array_equal(studio.shaped_mask(), painted)
    studio.grow.value = 5
    np.testing.assert_array_equal(studio.shaped_mask() > 0, masks.grow(painted, 5).numpy() > 0)
    studio.feather.value = 4
    shaped = studio.shaped_mask()
    assert (shaped > 0).sum() > (masks.grow(painted, 5).numpy() > 0).sum()  # the feather reaches further out
    assert ((shaped > 0) & (shaped < 1)).any()  # a soft edge is shown


def test_run_gives_model_inpaint_and_export_keeps_the_mask(studio, model, tmp_path):
    studio.stroke([(28, 28), (36, 36)])
    studio.run()
    assert studio.wait(120)
    assert studio.error.value == "" and studio.frame is not None
    p = studio.frame.params
    expected = model.inpaint(studio.source, p["mask"], "a blue square", steps=STEPS, seed=0, grow=4, feather=2,
                             progress=False)[0]
    a, b = np.asarray(studio.frame.image).astype(int), np.asarray(expected).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.002  # one torch thread on the render worker
    saved = studio.export(tmp_path / "result.png")
    meta = export.read_metadata(saved)["latentlib"]["recipe"]
    import base64

    mask_back = np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(meta["mask_png_base64"]))))
    np.testing.assert_array_equal(mask_back > 0, p["mask"] > 0)
    assert (tmp_path / "result.mask.png").exists() and meta["grow"] == 4 and meta["steps"] == STEPS
    studio.export_path.value = str(tmp_path / "result.png")
    studio.export_button.click()
    assert "exists" in studio.error.value  # nothing overwritten unless asked


def test_settings_outside_the_sliders_are_refused_not_clamped(model):
    for kwargs, message in [({"grow": 100}, r"`grow` must be an integer in \[0, 64\], got 100"),
                            ({"padding": 300}, r"`padding` must be an integer in \[0, 256\], got 300"),
                            ({"brush": 100}, r"`brush` must be an integer in \[1, 64\], got 100")]:
        with pytest.raises(ValueError, match=message):
            InpaintStudio(model, **kwargs)


def test_bad_input_is_shown_in_the_studio(studio, model):
    studio.run_button.click()
    assert "the mask is empty" in studio.error.value
    studio.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},)
    assert "not an image PIL can read" in studio.error.value
    odd = io.BytesIO()
    PIL.Image.new("RGB", (60, 64)).save(odd, "PNG")
    studio.upload.value = ({"name": "odd.png", "type": "image/png", "size": 5, "content": memoryview(odd.getvalue()),
                            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},)
    assert "divisible by 8" in studio.error.value
    assert studio.source.size == (64, 64)  # the image already there is kept
    studio.stroke([(10, 10)])
    studio.erode.value = 10
    studio.run_button.click()
    assert studio.wait(60)
    assert "eroding by 10 px leaves nothing to repaint" in studio.error.value
    empty = InpaintStudio(model, steps=STEPS)
    empty.clear_button.click()
    assert "there is no image yet" in empty.error.value
    with pytest.raises(ValueError, match="there is no image yet"):
        empty.shaped_mask()
    empty.scene_button.click()
    assert empty.source is not None and empty.error.value == ""
    empty.close()
    with pytest.raises(ValueError, match=r"`strength` must be a number in \[0.01, 1\], got 0"):
        InpaintStudio(model, strength=0)
    with pytest.raises(ValueError, match="`masked_content` must be one of original, noise, fill; got 'blur'"):
        InpaintStudio(model, masked_content="blur")
