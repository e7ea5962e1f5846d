"""Word-level CLIP tokenizers built from a closed vocabulary (the default model's captions).

The tokenizer is a plain ``transformers.CLIPTokenizer`` (so diffusers loads it like Stable Diffusion's),
whose BPE merges assemble exactly the listed words: a known word is one token, a word outside the
vocabulary comes out in pieces (or as ``<|unk|>`` for characters never seen). The tokenizer records
``latentlib_word_level=True`` in its config, and :func:`unknown_words` uses that to name the words it
does not know, so ``model.embed`` can warn about them.

Example:
    >>> tok = build_word_tokenizer(["a", "red", "circle"])
    >>> tok.convert_ids_to_tokens(tok("a red circle").input_ids)
    ['<|startoftext|>', 'a</w>', 'red</w>', 'circle</w>', '<|endoftext|>']
    >>> unknown_words(tok, "a red rose")
    ['rose']
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

__all__ = ["build_word_tokenizer", "learn_merges", "is_word_level", "unknown_words", "UNK"]

UNK = "<|unk|>"
_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")  # how CLIP's pre-tokenizer splits lower-cased text


def build_word_tokenizer(words: Iterable[str], *, punctuation: str = ",", max_length: int = 77):
    """A CLIPTokenizer whose vocabulary is ``words`` (lower-case letters only) plus the pieces that build them.

    Args:
        words: the vocabulary, e.g. ``latentlib.shapes.vocabulary()``.
        punctuation: characters that are tokens of their own (captions use commas).
        max_length: ``model_max_length`` (token positions of the text encoder).
    """
    from transformers import CLIPTokenizer

    words = list(dict.fromkeys(words))
    bad = [w for w in words if not re.fullmatch(r"[a-z]+", w)]
    if bad or not words:
        raise ValueError(f"`words` must be non-empty lower-case a-z words; got {bad[:5] or words!r}.")
    vocab, merges = learn_merges(words, specials=["<|startoftext|>", "<|endoftext|>", UNK])
    for mark in punctuation:
        vocab.setdefault(mark + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, unk_token=UNK, latentlib_word_level=True)
    tokenizer.model_max_length = max_length
    return tokenizer


def learn_merges(words: list[str], *, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style BPE (``</w>`` word ends) that makes every word of ``words`` a single token.

    Byte-pair encoding learnt to completion: each round merges the most frequent adjacent pair of symbols
    (over the distinct words), ties going to the alphabetically first pair, so the same words always give
    the same merges and ids. The merges are ranked in the order they were learnt, which is how CLIP's BPE
    applies them (merges written word by word conflict: "r i" from "right" breaks "triangle").

    Returns:
        ``(vocab, merges)``: specials first, then the letters, then each merge's result in merge order.
    """
    seqs = [[*word[:-1], word[-1] + "</w>"] for word in dict.fromkeys(words) if word]
    symbols = list(specials) + sorted({s for seq in seqs for s in seq})
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in itertools.pairwise(seq):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        symbols.append(best[0] + best[1])
        for seq in seqs:  # left to right, non-overlapping, as CLIP's bpe() applies a merge
            i = 0
            while i < len(seq) - 1:
                if (seq[i], seq[i + 1]) == best:
                    seq[i:i + 2] = [best[0] + best[1]]
                i += 1
    return {s: i for i, s in enumerate(dict.fromkeys(symbols))}, merges


def is_word_level(tokenizer) -> bool:
    """True for tokenizers made by :func:`build_word_tokenizer` (also after save/load)."""
    return bool(getattr(tokenizer, "init_kwargs", {}).get("latentlib_word_level", False))


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of ``text`` that a word-level tokenizer does not have as single tokens (in order)."""
    if not is_word_level(tokenizer):
        return []
    unknown = []
    for word in _WORD.findall(text.lower()):
        if tokenizer.convert_tokens_to_ids(word + "</w>") in (None, tokenizer.unk_token_id):
            unknown.append(word)
    return unknown
