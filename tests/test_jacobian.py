"""The Jacobian basis against the exact Jacobian's SVD (torch.autograd.functional.jacobian + torch.linalg.svd)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import latentlib as ll
from latentlib.directions import space_shapes
from latentlib.edits import h_hook
from latentlib.jacobian import JacobianBasis
from latentlib.testing import tiny_sd_components


@pytest.fixture(scope="module")
def tiny():
    return ll.Model(**tiny_sd_components(), name="tiny")


def _exact_jacobian(model, prompt, seed, timestep, layer=None):
    """d h / d x_T at the first step, built column by column by autograd (DPM++'s first UNet input is the noise)."""
    x, text = model.noise(seed), model.embed(prompt).embeds

    def h_of(xx):
        hold = []
        handle = h_hook(model.unet, lambda h: hold.append(h), layer)
        try:
            model.unet(xx, torch.tensor(timestep), encoder_hidden_states=text, return_dict=False)
        finally:
            handle.remove()
        return hold[0].reshape(-1)

    with sdpa_kernel(SDPBackend.MATH):
        return torch.autograd.functional.jacobian(h_of, x).reshape(-1, x.numel()).double()


def test_power_iteration_finds_the_exact_singular_vectors(tiny):
    basis = JacobianBasis(3, iters=60, tol=1e-9).fit(tiny, "a cat", seed=1, step=0, steps=3, guidance=0.0)
    U, S, Vh = torch.linalg.svd(_exact_jacobian(tiny, "a cat", 1, basis.timestep_))
    torch.testing.assert_close(torch.as_tensor(basis.singular_values_), S[:3], rtol=1e-3, atol=0)
    for i in range(3):
        assert abs(float(Vh[i].float() @ basis.x_components_[i].flatten())) > 0.999, i
        assert abs(float(U[:, i].float() @ basis.h_components_[i].flatten())) > 0.999, i
    assert "step 0" in repr(basis)
    loose = JacobianBasis(3, iters=60, tol=0.05).fit(tiny, "a cat", seed=1, step=0, steps=3, guidance=0.0)
    assert loose.converged_ and loose.n_iter_ < 60  # the stopping rule ends the iteration early


def test_directions_edit_generation_and_carry_their_layer(tiny):
    basis = JacobianBasis(2, iters=5, layer="up_blocks.0").fit(tiny, "a cat", seed=0, step=0, steps=2)
    assert basis.h_components_.shape[1:] == space_shapes(tiny, ["up_blocks.0"])["h@up_blocks.0"]
    d = basis.direction(0)
    assert d.space == "h" and d.layer == "up_blocks.0" and d.scale == pytest.approx(basis.singular_values_[0])
    assert d.provenance["method"] == "jacobian (power iteration)" and d.provenance["timestep"] == basis.timestep_
    plain = tiny.generate("a cat", seed=0, steps=2, output="latent", progress=False)
    for direction in (d, basis.direction(1, space="xT")):
        moved = tiny.generate("a cat", seed=0, steps=2, output="latent", progress=False, edits=[(direction, 2.0)])
        still = tiny.generate("a cat", seed=0, steps=2, output="latent", progress=False, edits=[(direction, 0.0)])
        assert not torch.allclose(moved, plain) and torch.equal(still, plain)
    assert [x.name for x in basis.directions()] == ["jac0", "jac1"]


def test_bad_input_is_named(tiny):
    with pytest.raises(RuntimeError, match=r"not fitted yet"):
        JacobianBasis(2).direction(0)
    with pytest.raises(ValueError, match=r"`n_components` must be an integer >= 1, got 0"):
        JacobianBasis(0)
    with pytest.raises(ValueError, match=r"`step` must be a step index in \[0, 1\], got 2"):
        JacobianBasis(2).fit(tiny, "a cat", step=2, steps=2)
    with pytest.raises(ValueError, match=r"`n_components` is 300 but x_t has only 256 values"):
        JacobianBasis(300).fit(tiny, "a cat", steps=2)
    late = JacobianBasis(1, iters=2).fit(tiny, "a cat", step=1, steps=2)
    with pytest.raises(ValueError, match=r"an xT direction needs a basis fitted at step 0.*step 1"):
        late.direction(0, space="xT")
    with pytest.raises(ValueError, match=r"`layer` 'up_blocks.7' is not a module of this UNet"):
        JacobianBasis(1, layer="up_blocks.7").fit(tiny, "a cat", steps=2)
    with pytest.raises(ValueError, match=r"`space` must be 'h' or 'xT'"):
        late.direction(0, space="z0")
    with pytest.raises(ValueError, match=r"`i` must be a component index in \[0, 0\], got 1"):
        late.direction(1)
