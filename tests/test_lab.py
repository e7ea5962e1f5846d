import PIL.Image
import pytest

import lab


def test_show_builds_one_image_widget_per_picture():
    images = [PIL.Image.new("RGB", (8, 6), (255, 0, 0)), PIL.Image.new("RGB", (8, 6), (0, 0, 255))]
    box = lab.show(images, labels=["red", "blue"], scale=4)
    assert len(box.children) == 2
    view, caption = box.children[1].children
    assert bytes(view.value)[:4] == b"\x89PNG" and caption.value == "blue"
    assert view.width in (32, "32") and view.height in (24, "24")


def test_show_rejects_bad_input():
    with pytest.raises(ValueError, match=r"`labels` has 1 entries for 2 images"):
        lab.show([PIL.Image.new("RGB", (2, 2))] * 2, labels=["x"])
    with pytest.raises(TypeError, match=r"`images\[0\]` must be a PIL image, got str"):
        lab.show(["a"])
    with pytest.raises(ValueError, match=r"`scale` must be an integer >= 1, got 0"):
        lab.show(PIL.Image.new("RGB", (2, 2)), scale=0)
