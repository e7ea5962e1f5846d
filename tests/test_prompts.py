"""Prompt embeddings: equal to diffusers' encode_prompt, arithmetic, slerp, concept removal."""

import pytest
import torch

import latentlib as ll


def test_sd_embedding_matches_pipeline(sd, sd_pipe):
    prompts = ["a red circle", "a small blue square in the top left"]
    e = sd.embed(prompts)
    ref, _ = sd_pipe.encode_prompt(prompts, "cpu", 1, False)
    assert e.embeds.shape == (2, 77, 32) and e.pooled is None
    torch.testing.assert_close(e.embeds, ref, rtol=0, atol=0)
    assert e.tokens[0] == ("<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>")
    assert e.prompts == tuple(prompts)


def test_sdxl_embedding_matches_pipeline(sdxl, sdxl_pipe):
    prompts = ["a red circle", "a photo of a dog"]
    e = sdxl.embed(prompts)
    ref, _, pooled, _ = sdxl_pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
    assert e.embeds.shape == (2, 77, 64) and e.pooled.shape == (2, 32)
    torch.testing.assert_close(e.embeds, ref, rtol=0, atol=0)
    torch.testing.assert_close(e.pooled, pooled, rtol=0, atol=0)


def test_arithmetic_is_elementwise_and_keeps_a_recipe(sdxl):
    a, b, c = sdxl.embed("a red circle"), sdxl.embed("red"), sdxl.embed("blue")
    e = a - 0.5 * b + 0.5 * c
    torch.testing.assert_close(e.embeds, a.embeds - 0.5 * b.embeds + 0.5 * c.embeds)
    torch.testing.assert_close(e.pooled, a.pooled - 0.5 * b.pooled + 0.5 * c.pooled)
    assert e.recipe == "'a red circle' - (0.5*'red') + (0.5*'blue')"
    assert e.tokens is None and e.prompts is None
    torch.testing.assert_close((a / 4).embeds, a.embeds * 0.25)
    torch.testing.assert_close((-a).pooled, -a.pooled)
    torch.testing.assert_close((2 * a).embeds, (a * 2).embeds)


def test_mix_is_a_weighted_sum(sd):
    a, b = sd.embed("a cat"), sd.embed("a dog")
    m = ll.mix([(a, 0.7), (b, 0.3)])
    torch.testing.assert_close(m.embeds, 0.7 * a.embeds + 0.3 * b.embeds)


def test_batch_one_broadcasts_against_a_batch(sd):
    batch, one = sd.embed(["a cat", "a dog", "a star"]), sd.embed("red")
    out = batch + one
    assert out.embeds.shape == (3, 77, 32)
    torch.testing.assert_close(out.embeds[2], batch.embeds[2] + one.embeds[0])


def test_slerp_endpoints_and_per_token_norms(sdxl):
    a, b = sdxl.embed("a cat"), sdxl.embed("a dog")
    assert torch.equal(a.slerp(b, 0.0).embeds, a.embeds)
    assert torch.equal(a.slerp(b, 1.0).embeds, b.embeds)
    mid = a.slerp(b, 0.5)
    # per token, the slerp norm lies between the endpoint norms (equal norms stay equal)
    na, nb, nm = (x.embeds.norm(dim=-1) for x in (a, b, mid))
    assert bool(((nm >= torch.minimum(na, nb) - 1e-4) & (nm <= torch.maximum(na, nb) + 1e-4)).all())
    assert mid.pooled.shape == a.pooled.shape
    torch.testing.assert_close(a.lerp(b, 0.25).embeds, torch.lerp(a.embeds, b.embeds, 0.25))


def test_concept_removal_projects_out_the_concept(sd):
    e, concept = sd.embed("a red circle"), sd.embed("red")
    u, _ = concept.concept_direction()
    torch.testing.assert_close(u, concept.embeds[0, 1] / concept.embeds[0, 1].norm())  # the one content token
    removed = e.remove(concept)
    assert torch.equal(removed.embeds[:, 0], e.embeds[:, 0])  # the start token is untouched
    torch.testing.assert_close(removed.embeds[:, 1:] @ u, torch.zeros(1, 76), atol=1e-4, rtol=0)
    assert torch.equal(e.remove(concept, strength=0.0).embeds, e.embeds)
    pushed = e.remove(concept, strength=2.0)
    torch.testing.assert_close(pushed.embeds[:, 1:] @ u, -(e.embeds[:, 1:] @ u), atol=1e-4, rtol=1e-4)
    assert "remove('red', 1)" in removed.recipe


def test_sdxl_concept_removal_touches_pooled_too(sdxl):
    e, concept = sdxl.embed("a red circle"), sdxl.embed("red")
    removed = e.remove(concept)
    _, up = concept.concept_direction()
    torch.testing.assert_close(removed.pooled @ up, torch.zeros(1), atol=1e-4, rtol=0)


def test_indexing_and_repeat(sd):
    e = sd.embed(["a cat", "a dog", "a star"])
    assert e[1].prompts == ("a dog",) and e[1].embeds.shape == (1, 77, 32)
    assert e[-1].prompts == ("a star",)
    assert len(e[0:2]) == 2
    assert e[0].repeat(4).embeds.shape == (4, 77, 32)
    import numpy as np

    assert e[np.int64(2)].prompts == ("a star",)
    with pytest.raises(IndexError, match=r"index 5 is out of range for a batch of 3"):
        e[5]
    with pytest.raises(IndexError, match=r"index -4 is out of range"):
        e[-4]
    with pytest.raises(IndexError, match=r"selects no prompt"):
        e[3:]
    with pytest.raises(ValueError, match=r"`n` must be an integer >= 1, got 0"):
        e[0].repeat(0)


def test_mix_checks_its_pairs(sd):
    a = sd.embed("a cat")
    with pytest.raises(TypeError, match=r"`weighted\[0\]` must be a \(PromptEmbedding, weight\) pair"):
        ll.mix([(0.5, a)])
    with pytest.raises(TypeError, match=r"`weighted\[1\]` must be a \(PromptEmbedding, weight\) pair"):
        ll.mix([(a, 0.5), (a.embeds, 0.5)])
    with pytest.raises(TypeError, match=r"`weighted\[0\] weight` must be a number"):
        ll.mix([(a, "half")])


def test_long_prompt_warns_about_truncation(sd):
    long = " ".join(["circle"] * 100)
    with pytest.warns(UserWarning, match=r"is 102 tokens.*reads 77.*cut"):
        e = sd.embed(long)
    assert len(e.tokens[0]) == 77


@pytest.mark.parametrize(
    "op, error, match",
    [
        (lambda a, b, x: a + 1, TypeError, r"needs another PromptEmbedding, got int"),
        (lambda a, b, x: a * a, TypeError, r"needs a number, got PromptEmbedding"),
        (lambda a, b, x: a / 0, ValueError, r"divide .* by 0"),
        (lambda a, b, x: a * float("nan"), ValueError, r"`scale` must be a finite number"),
        (lambda a, b, x: a + x, ValueError, r"shapes \(1, 77, 32\) and \(1, 77, 64\)"),
        (lambda a, b, x: a.remove(a + b), ValueError, r"derived embedding"),
        (lambda a, b, x: a.remove(x), ValueError, r"width 64.*32"),
        (lambda a, b, x: a.slerp(b, "half"), TypeError, r"`t` must be a number"),
    ],
)
def test_bad_arithmetic(sd, sdxl, op, error, match):
    a, b, x = sd.embed("a cat"), sd.embed("a dog"), sdxl.embed("a cat")
    with pytest.raises(error, match=match):
        op(a, b, x)


def test_bad_prompt_types(sd):
    with pytest.raises(TypeError, match=r"`prompt` must be a string or a non-empty list of strings, got 3"):
        sd.embed(3)
    with pytest.raises(TypeError, match=r"non-empty list"):
        sd.embed([])
    with pytest.raises(ValueError, match=r"`embeds` contains non-finite values \(1 NaN"):
        e = sd.embed("a cat")
        bad = e.embeds.clone()
        bad[0, 3, 2] = float("nan")
        ll.PromptEmbedding(embeds=bad)


def test_embedding_from_several_threads_at_once_is_the_same_as_alone(sd):
    """A live app embeds on its render thread while the kernel embeds too; the tokenizer is shared."""
    from latentlib.testing import run_in_threads

    prompts = ["a red circle", "", "a blue square on a black background", "a zebra"]
    alone = {p: sd.embed(p).embeds for p in prompts}
    results = []

    def work(k):
        for i in range(30):
            p = prompts[(k + i) % len(prompts)]
            results.append((p, sd.embed(p).embeds))

    assert run_in_threads(work, 4) == [] and len(results) == 120
    for p, e in results:
        assert torch.equal(e, alone[p])
