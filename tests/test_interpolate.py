import numpy as np
import pytest
import torch

import latentlib as ll


def closed_form(a, b, t):
    """Reference slerp in float64 numpy, one pair of flat vectors."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    cos = np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))
    theta = np.arccos(np.clip(cos, -1, 1))
    return np.sin((1 - t) * theta) / np.sin(theta) * a + np.sin(t * theta) / np.sin(theta) * b


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 4, 8, 8, generator=g), torch.randn(5, 4, 8, 8, generator=g)


def test_endpoints_are_exact(pair):
    a, b = pair
    out = ll.slerp(a, b, [0.0, 1.0])
    assert torch.equal(out[0], a)
    assert torch.equal(out[1], b)
    assert torch.equal(ll.slerp(a, b, 0.0), a)
    assert torch.equal(ll.lerp(a, b, 1.0), b)


def test_matches_closed_form_per_pair(pair):
    a, b = pair
    ts = [-0.25, 0.1, 0.5, 0.9, 1.3]
    out = ll.slerp(a, b, ts)
    assert out.shape == (5, *a.shape)
    for k, t in enumerate(ts):
        for i in range(a.shape[0]):
            expected = closed_form(a[i], b[i], t).reshape(a[i].shape)
            np.testing.assert_allclose(out[k, i].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_equal_norms_are_preserved(pair):
    a, b = pair
    b = b / b.flatten(1).norm(dim=1)[:, None, None, None] * a.flatten(1).norm(dim=1)[:, None, None, None]
    out = ll.slerp(a, b, torch.linspace(0, 1, 11))
    norms = out.flatten(2).norm(dim=2)  # (T, B)
    torch.testing.assert_close(norms, a.flatten(1).norm(dim=1).expand_as(norms), rtol=1e-5, atol=1e-5)


def test_lerp_of_norms_would_shrink_but_slerp_does_not(pair):
    a, b = pair
    mid_lerp = ll.lerp(a[0], b[0], 0.5).norm()
    mid_slerp = ll.slerp(a[0], b[0], 0.5, dim=(0, 1, 2)).norm()
    assert mid_lerp < 0.8 * a[0].norm()  # independent Gaussians: lerp loses ~30% norm at t=0.5
    assert abs(mid_slerp - (a[0].norm() + b[0].norm()) / 2) < 0.1 * a[0].norm()


def test_parallel_inputs_fall_back_to_lerp():
    a = torch.tensor([1.0, 2.0, 3.0])
    out = ll.slerp(a, 2 * a, [0.0, 0.5, 1.0])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ll.lerp(a, 2 * a, [0.0, 0.5, 1.0]))


def test_antiparallel_inputs_are_finite_and_keep_norm():
    a = torch.tensor([[3.0, 0.0, 4.0], [1.0, 1.0, 1.0]])
    b = -a
    out = ll.slerp(a, b, torch.linspace(0, 1, 9))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), a.norm(dim=-1).expand(9, 2))
    assert torch.equal(out[0], a) and torch.equal(out[-1], b)
    mid = out[4]
    torch.testing.assert_close((mid * a).sum(-1), torch.zeros(2), atol=1e-5, rtol=0)  # a quarter turn away


def test_batched_pairs_are_independent(pair):
    a, b = pair
    out = ll.slerp(a, b, 0.3)
    for i in range(a.shape[0]):
        single = ll.slerp(a[i : i + 1], b[i : i + 1], 0.3)
        torch.testing.assert_close(out[i : i + 1], single)


def test_dim_selects_the_vectors():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 7, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    out = ll.slerp(a, b, 0.4, dim=-1)
    for i in range(2):
        for j in range(7):
            np.testing.assert_allclose(out[i, j].numpy(), closed_form(a[i, j], b[i, j], 0.4), rtol=1e-5, atol=1e-6)


def test_numpy_in_numpy_out():
    a, b = np.ones(4, np.float32), np.array([1, -1, 1, -1], np.float32)
    out = ll.slerp(a, b, [0.0, 0.5])
    assert isinstance(out, np.ndarray) and out.shape == (2, 4)
    assert isinstance(ll.lerp(a, b, 0.5), np.ndarray)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.ones(3), torch.ones(4), 0.5), ValueError, "same shape"),
        ((torch.ones(3), torch.ones(3), [[0.1]]), ValueError, "1-D"),
        ((torch.ones(3), torch.ones(3), float("nan")), ValueError, "finite"),
        ((torch.ones(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64), 0.5), TypeError, "floating point"),
        ((torch.zeros(3), torch.ones(3), 0.5), ValueError, "zero vector"),
        (([1.0, 2.0], [1.0, 2.0], 0.5), TypeError, "torch.Tensor or numpy"),
        ((torch.ones(3), torch.ones(3), "half"), TypeError, "`t`"),
        ((torch.ones(2, 1), -torch.ones(2, 1), 0.5), ValueError, "opposite 1-element vectors"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        ll.slerp(*args)


def test_numpy_scalar_positions():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(ll.slerp(a, b, np.float32(0.5)), ll.slerp(a, b, 0.5))
    torch.testing.assert_close(ll.slerp(a, b, torch.tensor(0.5)), ll.slerp(a, b, 0.5))
