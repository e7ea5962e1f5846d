"""Prompt embeddings you can do arithmetic on.

``model.embed("a red circle")`` returns a :class:`PromptEmbedding`: the text
encoder's token embeddings ``(B, L, D)`` (SDXL: both encoders' penultimate
hidden states concatenated along D, exactly as diffusers builds them), the
pooled embedding ``(B, P)`` where the model has one (SDXL), and the tokens.

Embeddings support ``+``, ``-``, ``*`` and ``/`` by a number, weighted mixing,
``slerp``/``lerp`` and concept removal, and remember how they were made
(``recipe``), so a figure can say what it shows.

Example:
    >>> e = model.embed("a red circle") - 0.5 * model.embed("red") + 0.5 * model.embed("blue")
    >>> e.recipe
    "'a red circle' - 0.5*'red' + 0.5*'blue'"
"""

from __future__ import annotations

import numbers
import operator
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ._checks import check_finite, check_int, check_number
from .interpolate import lerp as _lerp
from .vocabulary import unknown_words
from .interpolate import slerp as _slerp

__all__ = ["PromptEmbedding", "encode_prompts", "mix"]


@dataclass(frozen=True, eq=False)
class PromptEmbedding:
    """Text conditioning for a batch of ``B`` prompts.

    Attributes:
        embeds: ``(B, L, D)`` token embeddings, as fed to the UNet's cross-attention.
        pooled: ``(B, P)`` pooled embedding (SDXL's second encoder), or None.
        tokens: per prompt, the token strings including start/end (not padding); None when derived.
        prompts: the texts, or None when the embedding was computed from others.
        recipe: a readable formula of how the embedding was made.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    tokens: tuple[tuple[str, ...], ...] | None = None
    prompts: tuple[str, ...] | None = None
    recipe: str = ""

    def __post_init__(self):
        if not isinstance(self.embeds, torch.Tensor) or self.embeds.ndim != 3:
            shape = tuple(self.embeds.shape) if isinstance(self.embeds, torch.Tensor) else type(self.embeds).__name__
            raise ValueError(f"`embeds` must be a tensor (B, L, D), got {shape}.")
        check_finite("embeds", self.embeds)
        if self.pooled is not None:
            if self.pooled.ndim != 2 or self.pooled.shape[0] != self.embeds.shape[0]:
                raise ValueError(
                    f"`pooled` must be (B, P) with B = {self.embeds.shape[0]}, got {tuple(self.pooled.shape)}."
                )
            check_finite("pooled", self.pooled)

    # -- shape and access -------------------------------------------------
    def __len__(self) -> int:
        return self.embeds.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.embeds.shape

    def __getitem__(self, index) -> PromptEmbedding:
        """Select prompts along the batch: ``e[0]``, ``e[1:3]`` (keeps the batch dimension)."""
        if not isinstance(index, slice):
            try:
                position = operator.index(index)
            except TypeError as error:
                raise TypeError(f"index must be an int or a slice, got {type(index).__name__}.") from error
            if not -len(self) <= position < len(self):
                raise IndexError(f"index {position} is out of range for a batch of {len(self)} prompts.")
            position %= len(self)
            index = slice(position, position + 1)
        picked = range(len(self))[index]
        if len(picked) == 0:
            raise IndexError(f"slice {index} selects no prompt from a batch of {len(self)}.")
        return PromptEmbedding(
            embeds=self.embeds[index],
            pooled=None if self.pooled is None else self.pooled[index],
            tokens=None if self.tokens is None else tuple(self.tokens[i] for i in picked),
            prompts=None if self.prompts is None else tuple(self.prompts[i] for i in picked),
            recipe=self.recipe if len(picked) == len(self) else f"({self.recipe})[{index.start}:{index.stop}]",
        )

    def repeat(self, n: int) -> PromptEmbedding:
        """Repeat a batch-1 embedding ``n`` times (for ``n`` images with one prompt)."""
        if len(self) != 1:
            raise ValueError(f"`repeat` needs a batch-1 embedding, this one has batch {len(self)}.")
        n = check_int("n", n, minimum=1)
        return PromptEmbedding(
            embeds=self.embeds.expand(n, -1, -1),
            pooled=None if self.pooled is None else self.pooled.expand(n, -1),
            tokens=None if self.tokens is None else self.tokens * n,
            prompts=None if self.prompts is None else self.prompts * n,
            recipe=self.recipe,
        )

    def to(self, device=None, dtype=None) -> PromptEmbedding:
        return replace(
            self,
            embeds=self.embeds.to(device=device, dtype=dtype),
            pooled=None if self.pooled is None else self.pooled.to(device=device, dtype=dtype),
        )

    # -- arithmetic -------------------------------------------------------
    def _check_compatible(self, other, op: str) -> None:
        if not isinstance(other, PromptEmbedding):
            raise TypeError(
                f"PromptEmbedding {op} needs another PromptEmbedding, got {type(other).__name__} "
                f"(use * or / for scaling by a number)."
            )
        a, b = self.embeds.shape, other.embeds.shape
        if a[1:] != b[1:] or (a[0] != b[0] and 1 not in (a[0], b[0])):
            raise ValueError(
                f"cannot combine embeddings of shapes {tuple(a)} and {tuple(b)}: token length and width must match, "
                f"and batches must be equal or one of them 1 (were they made by the same model?)."
            )
        if (self.pooled is None) != (other.pooled is None):
            raise ValueError("cannot combine an embedding that has a pooled part with one that has none.")

    def _derived(self, embeds, pooled, recipe) -> PromptEmbedding:
        return PromptEmbedding(embeds=embeds, pooled=pooled, tokens=None, prompts=None, recipe=recipe)

    @property
    def _name(self) -> str:
        if self.recipe:
            return self.recipe if _is_atom(self.recipe) else f"({self.recipe})"
        return "<embedding>"

    def __add__(self, other):
        self._check_compatible(other, "+")
        pooled = None if self.pooled is None else self.pooled + other.pooled
        return self._derived(self.embeds + other.embeds, pooled, f"{self.recipe or '<embedding>'} + {other._name}")

    def __sub__(self, other):
        self._check_compatible(other, "-")
        pooled = None if self.pooled is None else self.pooled - other.pooled
        return self._derived(self.embeds - other.embeds, pooled, f"{self.recipe or '<embedding>'} - {other._name}")

    def __neg__(self):
        pooled = None if self.pooled is None else -self.pooled
        return self._derived(-self.embeds, pooled, f"-{self._name}")

    def _scalar(self, value, op: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"PromptEmbedding {op} needs a number, got {type(value).__name__}.")
        return check_number("scale", value)

    def __mul__(self, value):
        value = self._scalar(value, "*")
        pooled = None if self.pooled is None else self.pooled * value
        return self._derived(self.embeds * value, pooled, f"{value:g}*{self._name}")

    __rmul__ = __mul__

    def __truediv__(self, value):
        value = self._scalar(value, "/")
        if value == 0:
            raise ValueError("cannot divide a PromptEmbedding by 0.")
        pooled = None if self.pooled is None else self.pooled / value
        return self._derived(self.embeds / value, pooled, f"{self._name}/{value:g}")

    # -- interpolation ----------------------------------------------------
    def slerp(self, other: PromptEmbedding, t: float) -> PromptEmbedding:
        """Per-token spherical interpolation (each D-vector separately; pooled likewise)."""
        self._check_compatible(other, "slerp")
        t = check_number("t", t)
        a, b = torch.broadcast_tensors(self.embeds, other.embeds)
        embeds = _slerp(a, b, t, dim=-1)
        pooled = None
        if self.pooled is not None:
            pa, pb = torch.broadcast_tensors(self.pooled, other.pooled)
            pooled = _slerp(pa, pb, t, dim=-1)
        return self._derived(embeds, pooled, f"slerp({self._name}, {other._name}, {t:g})")

    def lerp(self, other: PromptEmbedding, t: float) -> PromptEmbedding:
        self._check_compatible(other, "lerp")
        t = check_number("t", t)
        a, b = torch.broadcast_tensors(self.embeds, other.embeds)
        pooled = None
        if self.pooled is not None:
            pooled = _lerp(*torch.broadcast_tensors(self.pooled, other.pooled), t)
        return self._derived(_lerp(a, b, t), pooled, f"lerp({self._name}, {other._name}, {t:g})")

    # -- concept removal --------------------------------------------------
    def concept_direction(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Unit vectors ``(D,)`` (and ``(P,)``) for this prompt's meaning: the mean of its content tokens.

        Content tokens are those between the start and end tokens, so ``"red"`` means the token(s)
        of the word, not the padding. Needs a single, non-derived prompt.
        """
        if self.tokens is None or len(self) != 1:
            raise ValueError(
                "a concept must be a single prompt embedded by `model.embed` (it needs its tokens), "
                f"got {'a derived embedding' if self.tokens is None else f'a batch of {len(self)}'}."
            )
        n = len(self.tokens[0])
        if n <= 2:
            raise ValueError(f"concept {self.prompts[0]!r} has no content tokens.")
        vector = self.embeds[0, 1 : n - 1].mean(0)  # tokens between <start> and <end>
        vector = vector / torch.linalg.vector_norm(vector)
        pooled = None
        if self.pooled is not None:
            pooled = self.pooled[0] / torch.linalg.vector_norm(self.pooled[0])
        return vector, pooled

    def remove(self, concept: PromptEmbedding, strength: float = 1.0) -> PromptEmbedding:
        """Project the concept's direction out of every token (except the start token).

        ``x <- x - strength * (x . u) u`` with ``u`` from :meth:`concept_direction`;
        ``strength=1`` removes the component exactly, larger values push away from it.
        The start token is left alone: under CLIP's causal attention it carries no
        prompt content, only a large constant that the UNet relies on.
        """
        if not isinstance(concept, PromptEmbedding):
            raise TypeError(f"`concept` must be a PromptEmbedding, got {type(concept).__name__}.")
        if concept.embeds.shape[-1] != self.embeds.shape[-1]:
            raise ValueError(
                f"`concept` has width {concept.embeds.shape[-1]}, this embedding {self.embeds.shape[-1]}; "
                f"were they made by the same model?"
            )
        strength = check_number("strength", strength)
        u, u_pooled = concept.concept_direction()
        u = u.to(self.embeds.dtype)
        body = self.embeds[:, 1:]
        body = body - strength * (body @ u)[..., None] * u
        embeds = torch.cat([self.embeds[:, :1], body], dim=1)
        pooled = self.pooled
        if pooled is not None and u_pooled is not None:
            u_pooled = u_pooled.to(pooled.dtype)
            pooled = pooled - strength * (pooled @ u_pooled)[:, None] * u_pooled
        label = concept.prompts[0] if concept.prompts else concept.recipe
        return self._derived(embeds, pooled, f"{self._name}.remove({label!r}, {strength:g})")


def _is_atom(recipe: str) -> bool:
    return recipe.startswith("'") and recipe.endswith("'") and recipe.count("'") == 2


def mix(weighted: Sequence[tuple[PromptEmbedding, float]]) -> PromptEmbedding:
    """Weighted sum ``sum(w_i * e_i)`` of embeddings, e.g. ``mix([(cat, 0.7), (dog, 0.3)])``.

    Weights are used as given (not normalised); pass weights that sum to 1 for an average.
    """
    if not isinstance(weighted, Sequence) or len(weighted) == 0:
        raise ValueError("`weighted` must be a non-empty list of (PromptEmbedding, weight) pairs.")
    total = None
    for k, pair in enumerate(weighted):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], PromptEmbedding)):
            raise TypeError(f"`weighted[{k}]` must be a (PromptEmbedding, weight) pair, got {pair!r}.")
        check_number(f"weighted[{k}] weight", pair[1])
        term = pair[0] * pair[1]
        total = term if total is None else total + term
    return total


def _token_strings(tokenizer, ids: list[int]) -> tuple[str, ...]:
    return tuple(tokenizer.convert_ids_to_tokens(ids))


#: Hugging Face fast tokenizers switch padding and truncation on the shared Rust object for each call, so two
#: threads tokenizing at once (a live app's render thread and the kernel's) can get each other's settings.
_TOKENIZER_LOCK = threading.RLock()


def _tokenize(tokenizer, prompts: list[str]):
    """Tokenize to ``model_max_length`` like diffusers, warning about truncation and unknown words.
    Thread-safe (one tokenizer call at a time, see ``_TOKENIZER_LOCK``)."""
    max_length = tokenizer.model_max_length
    with _TOKENIZER_LOCK:
        ids = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        full = tokenizer(prompts, padding=False, truncation=False).input_ids
    tokens = []
    for prompt, row in zip(prompts, full, strict=True):
        if len(row) > max_length:
            dropped = tokenizer.decode(row[max_length - 1 : -1])
            warnings.warn(
                f"prompt {prompt!r} is {len(row)} tokens; the text encoder reads {max_length}, "
                f"so this part was cut: {dropped!r}",
                stacklevel=4,
            )
            row = row[: max_length - 1] + [row[-1]]
        with _TOKENIZER_LOCK:
            unknown = unknown_words(tokenizer, prompt)
        unk = tokenizer.unk_token_id
        if unknown:
            warnings.warn(f"prompt {prompt!r} has words this model's vocabulary does not know: "
                          f"{', '.join(map(repr, unknown))}; they reach the model as pieces or as unknown.", stacklevel=4)
        elif unk is not None and unk not in (tokenizer.eos_token_id, tokenizer.pad_token_id) and unk in row:
            warnings.warn(f"prompt {prompt!r} has characters the tokenizer does not know (mapped to unknown).",
                          stacklevel=4)
        tokens.append(_token_strings(tokenizer, row))
    return ids.input_ids, tuple(tokens)


@torch.no_grad()
def encode_prompts(model, prompts: str | Sequence[str]) -> PromptEmbedding:
    """Run the model's text encoder(s) on ``prompts``; mirrors diffusers' ``encode_prompt``.

    SD 1.x/2.x: the last hidden state of ``text_encoder``. SDXL: penultimate hidden
    states of both encoders concatenated, and ``text_encoder_2``'s projected pooled output.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or len(prompts) == 0 or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"`prompt` must be a string or a non-empty list of strings, got {prompts!r}.")
    prompts = list(prompts)
    device = model.device
    pairs = [(model.tokenizer, model.text_encoder), (model.tokenizer_2, model.text_encoder_2)]
    pairs = [(t, e) for t, e in pairs if t is not None and e is not None]
    if not model.is_sdxl:
        tokenizer, encoder = pairs[0]
        input_ids, tokens = _tokenize(tokenizer, prompts)
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").attention_mask.to(device)
        embeds = encoder(input_ids.to(device), attention_mask=mask)[0]
        return PromptEmbedding(
            embeds=embeds.to(model.dtype), tokens=tokens, prompts=tuple(prompts), recipe=_recipe(prompts)
        )
    hidden, pooled, tokens = [], None, None
    for tokenizer, encoder in pairs:
        input_ids, these_tokens = _tokenize(tokenizer, prompts)
        tokens = tokens or these_tokens
        out = encoder(input_ids.to(device), output_hidden_states=True)
        if out[0].ndim == 2:  # the projected pooled output of CLIPTextModelWithProjection
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    embeds = torch.cat(hidden, dim=-1)
    if pooled is None:
        raise ValueError("this SDXL-style model has no text encoder with a projection, so no pooled embedding.")
    return PromptEmbedding(
        embeds=embeds.to(model.dtype),
        pooled=pooled.to(model.dtype),
        tokens=tokens,
        prompts=tuple(prompts),
        recipe=_recipe(prompts),
    )


def _recipe(prompts: list[str]) -> str:
    if len(prompts) == 1:
        return repr(prompts[0])
    return "[" + ", ".join(repr(p) for p in prompts) + "]"
