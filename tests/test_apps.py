"""The lab's apps on the default model, driven without a browser: set a control, wait, read the frame.

Each frame is checked against latentlib called directly with the same settings (same seed, same
device: the same pixels)."""

import datetime
import io

import numpy as np
import PIL.Image
import pytest
import torch

import latentlib as ll
from lab import EmbeddingMap, Explorer, Interpolator, PromptMixer
from latentlib import DirectionBank, export

STEPS, PREVIEW = 4, 2


@pytest.fixture(scope="module")
def model():
    return ll.load()


@pytest.fixture(scope="module")
def directions(model):
    return [ll.text_direction(model, "a small circle", "a large circle", name="size"),
            ll.text_direction(model, "a red circle", "a blue circle", name="red to blue")]


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def assert_same(frame, expected):
    """The app's frame is latentlib's image for the same settings. The app renders with one torch thread on
    the CPU (lab.live), so float sums may round differently: one level in a few pixels, no more."""
    a, b = pixels(frame).astype(int), pixels(expected).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.002, (np.abs(a - b).max(), (a != b).mean())


def shown(app) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(bytes(app.image.value))).convert("RGB"))


def explorer(model, directions, **kwargs):
    app = Explorer(model, directions, prompt="a red circle", steps=STEPS, preview_steps=PREVIEW, settle=0.05, **kwargs)
    assert app.wait(60)
    return app


def test_explorer_slider_regenerates_with_the_edit(model, directions):
    app = explorer(model, directions)
    before = shown(app)
    assert app.frame.quality == "full"
    assert_same(app.frame.image, (model.generate(
        "a red circle", seed=0, steps=STEPS, progress=False)[0]))
    app.sliders["size"].value = 2.0
    assert app.wait(60)
    assert app.frame.quality == "full" and app.frame.params["strengths"]["size"] == 2.0
    expected = model.generate("a red circle", seed=0, steps=STEPS, edits=[(directions[0], 2.0)], progress=False)[0]
    assert_same(app.frame.image, expected)
    assert not np.array_equal(shown(app), before)
    assert shown(app).shape[0] == 256  # 64 px scaled up 4x for display
    stats = app.renderer.stats
    assert stats["frames"] >= 3 and stats["errors"] == 0  # first full, the slider's preview, its full frame
    app.close()


def test_explorer_gives_a_turn_a_slider(model, tmp_path):
    """A Turn (the edit for a circular factor) gets a slider like a direction, edits like one, and is
    exported with the frame so that the figure can be made again."""
    shape = ll.directions.space_shapes(model)["xT"]
    gen = torch.Generator().manual_seed(0)
    turn = ll.Turn.from_vectors(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen), "xT",
                                name="spin", degrees=30.0)
    app = explorer(model, [turn])
    app.sliders["spin"].value = 2.0
    assert app.wait(60)
    expected = model.generate("a red circle", seed=0, steps=STEPS, edits=[(turn, 2.0)], progress=False)[0]
    assert_same(app.frame.image, expected)
    assert not np.array_equal(pixels(expected), pixels(model.generate("a red circle", seed=0, steps=STEPS,
                                                                       progress=False)[0]))
    recipe = export.read_metadata(app.export(tmp_path / "turn.png"))["latentlib"]["recipe"]
    again = export.direction_from_record(recipe["edits"][0])
    assert isinstance(again, ll.Turn) and torch.equal(again.vectors, turn.vectors) and again.degrees == 30.0
    assert (again.centre, again.scales, again.name) == (turn.centre, turn.scales, "spin")
    app.close()


def test_explorer_turns_follow_each_seeds_object(model, directions, tmp_path):
    """With ``follow``, each seed's turns are rolled by what ``follow`` says of that seed's unedited image
    (made once per seed and settings); directions are not rolled; the checkbox turns it off; the export
    records each seed's shift."""
    from lab.app import tile

    shape = ll.directions.space_shapes(model)["xT"]
    gen = torch.Generator().manual_seed(0)
    turn = ll.Turn.from_vectors(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen), "xT",
                                name="spin", degrees=30.0)
    seen, answers = [], [(1, -2), (0, 0)]

    def follow(image):
        seen.append(image)
        return answers.pop(0) if answers else (0, 0)

    app = explorer(model, [turn, directions[0]], n=2, follow=follow)
    assert seen == []  # nothing to follow while every slider is at 0
    with app.holding():
        app.sliders["spin"].value = 2.0
        app.sliders["size"].value = 1.0
    app.refresh("full")
    assert app.wait(60)
    unedited = model.generate("a red circle", seed=[0, 1], steps=STEPS, output="pt", progress=False)
    assert len(seen) == 2 and all(torch.allclose(a, b, atol=1e-4) for a, b in zip(seen, unedited))
    expected = [model.generate("a red circle", seed=0, steps=STEPS, edits=[(turn.rolled(1, -2), 2.0),
                                                                          (directions[0], 1.0)], progress=False)[0],
                model.generate("a red circle", seed=1, steps=STEPS, edits=[(turn, 2.0), (directions[0], 1.0)],
                               progress=False)[0]]
    assert_same(app.frame.image, tile(expected))
    recipe = export.read_metadata(app.export(tmp_path / "followed.png"))["latentlib"]["recipe"]
    assert recipe["follow"] == {"0": [1, -2], "1": [0, 0]}
    assert torch.equal(export.direction_from_record(recipe["edits"][0]).vectors, turn.vectors)  # unrolled
    app.sliders["spin"].value = 1.0  # the same seeds and settings: follow is not asked again
    assert app.wait(60) and len(seen) == 2
    app.follow_box.value = False  # off: every seed gets the turn as fitted
    assert app.wait(60)
    assert_same(app.frame.image, tile(model.generate("a red circle", seed=[0, 1], steps=STEPS,
                                                     edits=[(turn, 1.0), (directions[0], 1.0)], progress=False)))
    assert export.read_metadata(app.export(tmp_path / "plain.png"))["latentlib"]["recipe"]["follow"] is None
    # a full memory keeps only the current settings' shifts: seeds 0 and 1 are remembered, seed 2 is new
    app._shifts.update({(("other settings", k), 0): (0, 0) for k in range(300)})
    with app.holding():
        app.follow_box.value = True
        app.n.value = 3
    app.refresh("full")
    assert app.wait(60) and app.renderer.stats["errors"] == 0 and len(seen) == 3
    assert app.frame.params["shifts"] == {0: (1, -2), 1: (0, 0), 2: (0, 0)} and len(app._shifts) == 3
    app.close()
    with pytest.raises(TypeError, match=r"`follow` must be None or a function image -> \(dy, dx\)"):
        Explorer(model, [turn], follow=(0, 1))


def test_explorer_preview_while_moving_then_full(model, directions):
    app = explorer(model, directions)
    seen = []
    app.image.observe(lambda change: seen.append(app.frame.quality), names="value")
    app.sliders["red to blue"].value = 1.0
    assert app.wait(60)
    assert seen == ["preview", "full"]
    app.close()


def test_large_previews_go_to_the_view_as_jpeg(model, directions):
    """Preview frames of 256x256 pixels or more are sent as JPEG (PNG encoding of a 512x512 frame takes longer
    than a GPU takes to make it); small ones, full frames and exports stay PNG; the setting is checked."""
    from types import SimpleNamespace

    app = explorer(model, directions)
    sent = []
    app.image.observe(lambda change: sent.append((app.frame.quality, app.image.format, bytes(change["new"])[:3])),
                      names="value")
    app.sliders["red to blue"].value = 1.0  # the default model's frames are small: PNG under "auto"
    assert app.wait(60)
    app.preview_format = "jpeg"
    app.sliders["red to blue"].value = 2.0
    assert app.wait(60)
    assert sent == [("preview", "png", b"\x89PN"), ("full", "png", b"\x89PN"), ("preview", "jpeg", b"\xff\xd8\xff"),
                    ("full", "png", b"\x89PN")]
    app.preview_format = "auto"
    big, small = PIL.Image.new("RGB", (512, 512)), PIL.Image.new("RGB", (128, 128))
    assert [app._format_for(SimpleNamespace(quality=q, image=im)) for q, im in
            (("preview", big), ("full", big), ("preview", small))] == ["jpeg", "png", "png"]
    with pytest.raises(ValueError, match=r"`preview_format` must be one of 'auto', 'png', 'jpeg', got 'gif'"):
        app.preview_format = "gif"
    assert app.preview_format == "auto"
    app.close()


def test_explorer_grid_seed_and_reset(model, directions):
    app = explorer(model, directions)
    app.n.value = 3
    app.seed.value = 5
    assert app.wait(60)
    assert app.frame.image.size == (3 * 64 + 2 * 2, 64) and app.frame.params["seeds"] == [5, 6, 7]
    app.sliders["size"].value = 1.5
    app.wait(60)
    app.reset()
    assert app.wait(60)
    assert all(s.value == 0 for s in app.sliders.values()) and app.edits() == []
    expected = model.generate("a red circle", seed=[5, 6, 7], steps=STEPS, progress=False)
    assert_same(app.frame.image.crop((0, 0, 64, 64)), expected[0])
    app.close()


def test_explorer_unknown_words_are_noticed(model):
    app = Explorer(model, prompt="a red circle", steps=STEPS, settle=0.05)
    app.prompt.value = "a red zebra"
    assert app.wait(60)
    assert "zebra" in app.notice.value and app.error.value == ""
    app.prompt.value = ""
    assert app.wait(60)
    assert app.notice.value == "" and app.frame.params["prompt"] == ""
    app.close()


def test_a_warning_from_elsewhere_meanwhile_is_not_a_notice(model, monkeypatch):
    """catch_warnings is process-wide: a warning another thread gives while a prompt is embedded is not about it."""
    import warnings

    app = Explorer(model, prompt="a red circle", steps=STEPS, settle=0.05)
    assert app.wait(60)
    embed = model.embed

    def embed_while_another_thread_warns(text):
        warnings.warn("the render thread's own warning", UserWarning, stacklevel=1)
        return embed(text)

    monkeypatch.setattr(model, "embed", embed_while_another_thread_warns)
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: shown.append(
        warnings.WarningMessage(message, *args)))
    app.prompt.value = "a blue zebra"
    assert app.wait(60)
    assert "zebra" in app.notice.value and "render thread" not in app.notice.value
    app.close()
    assert any("render thread" in str(w.message) for w in shown)  # given back, not lost


def test_explorer_refuses_a_bank_for_another_model_in_the_app(model, directions, sd, tmp_path):
    other = DirectionBank([ll.text_direction(sd, "a", "b", name="other")], model=sd)
    other.save(tmp_path / "other")
    app = Explorer(model, tmp_path / "other.safetensors", steps=STEPS, settle=0.05)
    assert app.wait(60)
    assert "made for" in app.error.value and app.sliders == {}
    assert app.frame is not None  # the app works without the bank
    app.bank_path.value = str(tmp_path / "missing.safetensors")
    app.bank_button.click()
    assert "no direction bank" in app.error.value
    ours = DirectionBank(directions, model=model)
    ours.save(tmp_path / "ours")
    app.bank_path.value = str(tmp_path / "ours.safetensors")
    app.bank_button.click()
    assert set(app.sliders) == {"size", "red to blue"}
    with pytest.raises(ValueError, match="already has a direction named 'size'"):
        app.add_directions(directions)
    wrong = ll.Direction.from_vector(torch.ones(7), "xT", name="wrong")
    with pytest.raises(ValueError, match=r"direction 'wrong' has 7 values .*xT samples have 256"):
        app.add_directions(wrong)
    app.close()


def test_explorer_shows_a_render_error_and_keeps_working(model, directions, monkeypatch):
    app = explorer(model, directions)
    before = bytes(app.image.value)
    real = model.generate
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky)
    app.refresh("full")
    assert app.wait(60)
    assert "OutOfMemoryError" in app.error.value and "keeps working" in app.error.value
    assert bytes(app.image.value) == before  # nothing already shown is lost
    app.sliders["size"].value = 1.0
    assert app.wait(60)
    assert app.error.value == "" and bytes(app.image.value) != before
    app.close()


def test_explorer_stop_button(model, directions):
    app = Explorer(model, directions, prompt="a red circle", steps=400, settle=0.0)
    app.stop_button.click()
    assert app.wait(60)
    stats = app.renderer.stats
    assert app.frame is None and stats["discarded"] + stats["dropped"] == 1 and "stopped" in app.status.value
    app.close()


def test_explorer_export_keeps_parameters_and_refuses_to_overwrite(model, directions, tmp_path):
    app = explorer(model, directions)
    app.sliders["size"].value = -1.0
    assert app.wait(60)
    path = app.export(tmp_path / "frame.png")
    meta = export.read_metadata(path)
    recipe = meta["latentlib"]["recipe"]
    assert recipe["edits"][0]["name"] == "size" and recipe["edits"][0]["strength"] == -1.0
    assert recipe["steps"] == STEPS and recipe["seeds"] == [0] and "Steps: 4" in meta["parameters"]
    again = export.direction_from_record(recipe["edits"][0])
    redone = model.generate(recipe["prompt"], seed=recipe["seeds"], steps=recipe["steps"],
                            edits=[(again, recipe["edits"][0]["strength"])], progress=False)[0]
    assert_same(PIL.Image.open(path), redone)
    app.export_path.value = str(path)
    app.export_button.click()
    assert "FileExistsError" in app.error.value
    app.export_overwrite.value = True
    app.export_button.click()
    assert "saved" in app.status.value
    app.close()


def test_explorer_z0_directions_need_a_start_image(model):
    samples = ll.collect(model, "z0", seeds=list(range(24)), prompts="a red square", steps=STEPS, cache=False,
                         progress=False)
    d = ll.PCADirections(2).fit(samples.X, space="z0").direction(0, name="z0 pc0")
    app = Explorer(model, [d], prompt="a red square", steps=STEPS, settle=0.05)
    assert app.wait(60)
    app.sliders["z0 pc0"].value = 1.0
    assert app.wait(60)
    assert isinstance(app.last_error, ValueError) and "'z0 pc0' is a z0 direction" in str(app.last_error)
    assert "start image" in app.error.value
    start = model.generate("a blue circle", seed=9, steps=STEPS, progress=False)[0]
    app.set_image(start)
    assert app.wait(60)
    assert app.error.value == ""
    expected = model.generate("a red square", image=[start], strength=0.6, seed=[0], steps=STEPS,
                              edits=[(d, 1.0)], progress=False)[0]
    assert_same(app.frame.image, expected)
    with pytest.raises(ValueError, match="the start image is 32x32; this model makes 64x64 images"):
        app.set_image(PIL.Image.new("RGB", (32, 32)))
    app.close()
    with pytest.raises(ValueError, match=r"`image_strength` must be a number in \[0, 1\], got 2"):
        Explorer(model, image_strength=2)


def test_explorer_bad_arguments(model):
    with pytest.raises(ValueError, match=r"`steps` must be an integer in \[1, 1000\], got 0"):
        Explorer(model, steps=0)
    with pytest.raises(ValueError, match=r"`scheduler` must be one of default, .*; got 'fast'"):
        Explorer(model, scheduler="fast")


def test_interpolator_between_seeds(model):
    app = Interpolator(model, between="seeds", start=3, end=4, prompt="a green star", t=0.0, frames=3, steps=STEPS,
                       settle=0.05)
    assert app.wait(60)
    assert_same(app.frame.image, (
        model.generate("a green star", seed=3, steps=STEPS, progress=False)[0]))
    assert len(app.strip_frames) == 3 and app.strip.value
    assert_same(app.strip_frames[-1], (
        model.generate("a green star", seed=4, steps=STEPS, progress=False)[0]))
    strip = bytes(app.strip.value)
    app.t.value = 0.5
    assert app.wait(60)
    noise = model.noise(seed=[3, 4])
    middle = model.generate("a green star", latents=ll.slerp(noise[0:1], noise[1:2], 0.5), steps=STEPS,
                            progress=False)[0]
    assert_same(app.frame.image, middle)
    assert bytes(app.strip.value) == strip  # moving t does not remake the strip
    app.method.value = "lerp"
    assert app.wait(60)
    assert app.frame.params["method"] == "lerp" and not np.array_equal(pixels(app.frame.image), pixels(middle))
    app.close()


def test_interpolator_between_prompts_and_images(model, tmp_path):
    app = Interpolator(model, between="prompts", start="a red circle", end="a blue square", t=1.0, frames=2,
                       steps=STEPS, settle=0.05)
    assert app.wait(60)
    assert_same(app.frame.image, (
        model.generate("a blue square", seed=0, steps=STEPS, progress=False)[0]))
    app.close()
    a = model.generate("a red circle", seed=1, steps=STEPS, progress=False)[0]
    b = model.generate("a yellow cross", seed=2, steps=STEPS, progress=False)[0]
    app = Interpolator(model, between="images", start=a, end=b, t=0.0, frames=2, settle=0.05)
    assert app.wait(60)
    assert_same(app.frame.image, (model.decode(model.encode(a))[0]))
    app.close()


def test_interpolator_rejects_bad_uploads_in_the_app(model):
    a = model.generate("a red circle", seed=1, steps=STEPS, progress=False)[0]
    app = Interpolator(model, between="images", start=a, settle=0.05)
    assert app.frame is None  # no end image yet: nothing to render
    with pytest.raises(ValueError, match="the end upload is not an image"):
        app.set_image("end", b"plain text")
    big = io.BytesIO()
    PIL.Image.new("RGB", (100, 80)).save(big, "PNG")
    app.end_upload.value = ({"name": "big.png", "type": "image/png", "size": 1, "content": memoryview(big.getvalue()),
                             "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)},)
    assert "the end image is 100x80; this model makes 64x64 images" in app.error.value
    with pytest.raises(ValueError, match="`between` must be one of seeds, prompts, images; got 'videos'"):
        Interpolator(model, between="videos")
    app.close()


def test_prompt_mixer_rows_and_removal(model):
    app = PromptMixer(model, rows=[("a red circle", 1.0), ("red", -1.0), ("blue", 1.0)], steps=STEPS, settle=0.05)
    assert app.wait(60)
    swapped = model.embed("a red circle") - model.embed("red") + model.embed("blue")
    assert_same(app.frame.image, (
        model.generate(swapped, seed=0, steps=STEPS, progress=False)[0]))
    app.rows[1][1].value = 0.0
    app.rows[2][1].value = 0.0
    assert app.wait(60)
    assert_same(app.frame.image, (
        model.generate("a red circle", seed=0, steps=STEPS, progress=False)[0]))
    app.add_removal("red", 1.0)
    assert app.wait(60)
    removed = (model.embed("a red circle") * 1.0).remove(model.embed("red"), 1.0)
    assert_same(app.frame.image, (
        model.generate(removed, seed=0, steps=STEPS, progress=False)[0]))
    assert "remove('red', 1)" in app.recipe.value
    app.rows[0][1].value = 0.0
    assert "no prompt row has both text and a weight" in app.error.value
    app.close()


def test_embedding_map_click_select_and_send(model, directions, tmp_path):
    seeds = list(range(40))
    samples = ll.collect(model, "xT", seeds=seeds, prompts="a circle", cache=False, progress=False)
    explorer_app = explorer(model, directions)
    app = EmbeddingMap(model, samples, method="pca", explorer=explorer_app, steps=STEPS)
    xy = app.map.embedding_
    assert len(app.figure.data[0].x) == 40 and app.color_by.value == "seed"
    app.click(7)
    assert app.wait(60)
    expected = model.generate("a circle", latents=samples.X[7][None], steps=STEPS, progress=False)[0]
    assert_same(app.frame.image, expected)
    assert "#7" in app.hover_text.value
    with pytest.raises(ValueError, match="nothing is selected"):
        app.set_group("a")
    app.select(np.flatnonzero(xy[:, 0] < 0))
    app.set_group("a")
    app.select(np.flatnonzero(xy[:, 0] >= 0))
    app.set_group("b")
    d = app.make_direction("pc0 by hand")
    assert d.space == "xT"
    # the selection's mean difference lies along the map's first axis (PCA, checked against scikit-learn)
    from sklearn.decomposition import PCA

    axis = PCA(n_components=2, random_state=0).fit(samples.X.reshape(40, -1).numpy()).components_[0]
    assert abs(float(d.vector.flatten() @ torch.from_numpy(axis).float())) > 0.5
    app.send()
    assert "pc0 by hand" in explorer_app.sliders
    app.send_button.click()  # again: refused, nothing replaced without asking
    assert "already has a direction named 'pc0 by hand'" in str(app.last_error)
    app.replace.value = True
    app.send_button.click()
    assert app.error.value == "" and explorer_app.directions["pc0 by hand"] is d
    mask = xy[:, 1] > 0  # a boolean mask selects as the map reads it, not as indices 0 and 1
    assert list(app.select(mask)) == list(np.flatnonzero(mask))
    app.select([])
    app.a_button.click()
    assert "nothing is selected" in app.error.value
    app.hover(3)  # moving the mouse over the map does not clear the error
    assert "nothing is selected" in app.error.value
    app.close()
    explorer_app.close()


def test_embedding_map_thumbnails_of_z0_samples(model):
    samples = ll.collect(model, "z0", seeds=list(range(12)), prompts="a red square", steps=STEPS, cache=False,
                         progress=False)
    app = EmbeddingMap(model, samples, method="pca")
    app.hover(3)
    shown_thumb = np.asarray(PIL.Image.open(io.BytesIO(bytes(app.thumbnail.value))).convert("RGB"))
    decoded = pixels(model.decode(samples.X[3:4])[0])
    np.testing.assert_array_equal(shown_thumb, decoded)
    app.select([0, 1, 2])
    strip = PIL.Image.open(io.BytesIO(bytes(app.selection_strip.value)))
    assert strip.size == (3 * 64 + 2 * 2, 64)
    app.close()


def test_embedding_map_keeps_the_h_layer_of_its_samples(model):
    samples = ll.collect(model, "h", h_layer="up_blocks.0", seeds=list(range(12)), prompts="a red square",
                         steps=STEPS, cache=False, progress=False)
    app = EmbeddingMap(model, samples, method="pca")
    app.select(range(6))
    app.set_group("a")
    app.select(range(6, 12))
    app.set_group("b")
    d = app.make_direction("h at up_blocks.0")
    assert d.space == "h" and d.layer == "up_blocks.0"
    app.close()


def test_embedding_map_bad_input(model):
    samples = ll.collect(model, "xT", seeds=list(range(10)), prompts="a circle", cache=False, progress=False)
    with pytest.raises(TypeError, match="`samples` must be latentlib.Samples"):
        EmbeddingMap(model, [1, 2])
    with pytest.raises(ValueError, match="`color_by` must be one of seed, prompt; got 'size'"):
        EmbeddingMap(model, samples, method="pca", color_by="size")
    app = EmbeddingMap(model, samples, method="pca")
    app.make_button.click()
    assert "group A is empty" in app.error.value
    with pytest.raises(ValueError, match=r"`index` must be a sample index in \[0, 9\], got 10"):
        app.click(10)
    app.close()


def test_apps_refuse_bad_settings_before_starting(model):
    for make, kwargs, message in [
        (Interpolator, {"steps": 0}, r"`steps` must be an integer in \[1, 1000\], got 0"),
        (Interpolator, {"between": "seeds", "start": -3}, r"`start` must be an integer in \[0, 4294967295\], got -3"),
        (Interpolator, {"guidance": -2}, r"`guidance` must be a number in \[0, 100\], got -2"),
        (Interpolator, {"t": True}, r"`t` must be a number in \[0, 1\], got True"),
        (PromptMixer, {"seed": -1}, r"`seed` must be an integer in \[0, 4294967295\], got -1"),
        (PromptMixer, {"rows": [("a", 5.0)]}, r"`rows weight of 'a'` must be a number in \[-2, 2\], got 5.0"),
        (PromptMixer, {"preview_steps": 2.7}, r"`preview_steps` must be an integer in \[1, 1000\], got 2.7"),
        (Explorer, {"guidance": -1}, r"`guidance` must be a number in \[0, 100\], got -1"),
        (Explorer, {"display_height": 0}, r"`display_height` must be an integer in \[16, 4096\], got 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            make(model, **kwargs)
    with pytest.raises(TypeError, match=r"`rows` must be a list of \(prompt, weight\) pairs"):
        PromptMixer(model, rows="a red circle")


def test_a_replaced_interpolator_image_is_never_served_from_the_cache(model):
    a = model.generate("a red circle", seed=1, steps=STEPS, progress=False)[0]
    b = model.generate("a yellow cross", seed=2, steps=STEPS, progress=False)[0]
    c = model.generate("a blue square", seed=3, steps=STEPS, progress=False)[0]
    app = Interpolator(model, between="images", start=a, end=b, t=0.0, frames=2, settle=0.05)
    assert app.wait(60)
    app.set_image("start", c)
    assert app.wait(60)
    assert_same(app.frame.image, model.decode(model.encode(c))[0])
    assert_same(app.strip_frames[0], model.decode(model.encode(c))[0])
    assert app.frame.params["image_sha256"]["start"] != app.frame.params["image_sha256"]["end"]
    app.close()
