"""latentlib.masks: exact growth and erosion, a bounded feather, soft masks kept soft, clear errors."""

import numpy as np
import PIL.Image
import pytest
import torch

from latentlib import masks


def dot(size=32, at=(16, 16)):
    m = torch.zeros(size, size)
    m[at] = 1.0
    return m


def test_inputs_of_every_kind_read_the_same():
    a = np.zeros((8, 8), np.uint8)
    a[2:5, 3:6] = 255
    expected = torch.from_numpy(a.astype(np.float32) / 255)
    for given in (a, a > 0, a.astype(np.float32) / 255, torch.from_numpy(a), PIL.Image.fromarray(a),
                  PIL.Image.fromarray(a).convert("RGB"), a[None], a[..., None]):
        torch.testing.assert_close(masks.to_mask(given), expected)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = a  # a painted layer: black paint, alpha where painted
    torch.testing.assert_close(masks.to_mask(PIL.Image.fromarray(rgba, "RGBA")), expected)
    soft = np.full((4, 4), 0.25, np.float32)
    assert float(masks.to_mask(soft).max()) == 0.25  # never binarised


def test_grow_by_r_turns_a_dot_into_the_disk_of_radius_r():
    for r in (1, 2, 3.5, 5):
        grown = masks.grow(dot(), r)
        yy, xx = np.mgrid[:32, :32]
        disk = ((yy - 16) ** 2 + (xx - 16) ** 2) <= r * r
        np.testing.assert_array_equal(grown.numpy() > 0, disk)
    assert torch.equal(masks.grow(dot(), 0), dot())


def test_erode_undoes_grow_on_a_disk_and_refuses_to_empty_a_mask():
    yy, xx = np.mgrid[:64, :64]
    disk = torch.from_numpy((((yy - 32) ** 2 + (xx - 32) ** 2) <= 12**2).astype(np.float32))
    shrunk = masks.erode(disk, 4)
    inner = ((yy - 32) ** 2 + (xx - 32) ** 2) <= 8**2
    # a disk of radius 12 eroded by 4 is the disk of radius 8, up to pixels on the discretised rim
    assert (shrunk.numpy().astype(bool) ^ inner).sum() <= 8
    assert shrunk.sum() < disk.sum()
    with pytest.raises(ValueError, match=r"eroding by 13 px leaves nothing to repaint"):
        masks.erode(disk, 13)


def test_feather_is_soft_and_never_reaches_beyond_its_radius():
    m = masks.box((64, 64), 24, 24, 40, 40)
    f = masks.feather(m, 6)
    assert 0 < float(f[24, 20]) < 1 and float(f.max()) <= 1 and float(f.min()) >= 0  # soft edge
    beyond = masks.grow(m, 6) == 0
    assert float(f[beyond].max()) == 0.0  # nothing outside the mask grown by the feather radius
    assert float(f[32, 32]) > 0.99  # the middle stays repainted
    # it is scipy's Gaussian (sigma px/2, cut at px), but for the faint diagonal tails beyond the radius
    from scipy import ndimage

    ref = ndimage.gaussian_filter(m.numpy().astype(np.float64), 3.0, truncate=2.0, mode="constant")
    inside = ~beyond.numpy()
    np.testing.assert_allclose(f.numpy()[inside], ref[inside], atol=1e-6)
    assert ref[beyond.numpy()].max() < 0.01


def test_soft_masks_stay_soft_through_every_operation():
    soft = torch.zeros(16, 16)
    soft[4:12, 4:12] = 0.5
    for out in (masks.grow(soft, 2), masks.erode(soft, 1), masks.feather(soft, 2), masks.to_latent(soft, 8),
                masks.union(soft, torch.zeros(16, 16)), masks.intersection(soft, torch.ones(16, 16))):
        assert float(out.max()) <= 0.5 + 1e-6 and float(out.max()) > 0
    assert set(masks.threshold(soft, 0.5).unique().tolist()) == {0.0, 1.0}  # only threshold binarises


def test_to_latent_averages_each_cell_and_invert_union_intersection():
    m = masks.box((16, 16), 0, 0, 12, 8)  # covers cell (0,0) fully and half of cell (0,1)
    lat = masks.to_latent(m, 8)
    torch.testing.assert_close(lat, torch.tensor([[1.0, 0.5], [0.0, 0.0]]))
    torch.testing.assert_close(masks.to_latent(m * 0.5, 8, reduce="max"), torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="`reduce` must be 'mean' or 'max', got 'min'"):
        masks.to_latent(m, 8, reduce="min")
    torch.testing.assert_close(masks.invert(m) + m, torch.ones(16, 16))
    a, b = masks.box((8, 8), 0, 0, 4, 8), masks.box((8, 8), 2, 0, 8, 8)
    assert masks.union(a, b).sum() == 64 and masks.intersection(a, b).sum() == 16


def test_masks_that_touch_the_border_stay_whole_there():
    strip = masks.box((32, 32), 0, 0, 32, 8)  # the top 8 rows
    assert float(masks.feather(strip, 4)[0].min()) > 0.99  # the edge row stays repainted
    eroded = masks.erode(strip, 2)
    assert eroded[0].all() and not eroded[6:].any()  # eroded from its inner side only


def test_pil_masks_of_every_mode_are_read_or_refused():
    soft = (np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    torch.testing.assert_close(masks.to_mask(PIL.Image.fromarray(soft, "F")), torch.from_numpy(soft))
    la = PIL.Image.fromarray(np.stack([np.zeros((8, 8), np.uint8), (soft * 255).astype(np.uint8)], -1), "LA")
    torch.testing.assert_close(masks.to_mask(la), torch.from_numpy((soft * 255).astype(np.uint8) / 255.0).float())
    white_soft = np.zeros((8, 8, 4), np.uint8)
    white_soft[..., :3] = 255
    white_soft[..., 3] = 128  # half-transparent white paint
    assert abs(float(masks.to_mask(PIL.Image.fromarray(white_soft, "RGBA")).max()) - 128 / 255) < 1e-6
    with pytest.raises(TypeError, match="mode 'I;16'"):
        masks.to_mask(PIL.Image.fromarray(np.zeros((8, 8), np.uint16)))
    with pytest.raises(ValueError, match=r"float mask with values in \[2, 2\]"):
        masks.to_mask(PIL.Image.fromarray(np.full((4, 4), 2.0, np.float32), "F"))


def test_bad_masks_get_clear_errors():
    with pytest.raises(ValueError, match=r"float mask with values in \[0, 2\]"):
        masks.to_mask(np.array([[0.0, 2.0]]))
    with pytest.raises(TypeError, match="must be a PIL image, a numpy array or a torch tensor; got str"):
        masks.to_mask("mask.png")
    with pytest.raises(ValueError, match=r"`mask` is 8x4 \(width x height\); the image is 8x8"):
        masks.to_mask(np.zeros((4, 8)), size=(8, 8))
    with pytest.raises(ValueError, match=r"`px` must be a number of pixels >= 0, got -1"):
        masks.grow(dot(), -1)
    with pytest.raises(ValueError, match="masks `a` and `b` have different sizes"):
        masks.union(torch.zeros(4, 4), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="divisible by the VAE's factor 8"):
        masks.to_latent(torch.zeros(12, 16))
    with pytest.raises(ValueError, match="thresholding at 0.9 leaves nothing to repaint"):
        masks.threshold(torch.full((4, 4), 0.5), 0.9)
    with pytest.raises(TypeError, match="dtype torch.int64"):
        masks.to_mask(torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="inverting an all-white mask leaves nothing to repaint"):
        masks.invert(torch.ones(4, 4))
    with pytest.raises(ValueError, match="the intersection of masks that do not overlap leaves nothing"):
        masks.intersection(masks.box((8, 8), 0, 0, 2, 2), masks.box((8, 8), 4, 4, 6, 6))
