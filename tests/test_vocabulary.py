"""Word-level tokenizers from a closed vocabulary: one token a word, unknown words named, embed warns."""

import pytest
from transformers import CLIPTokenizer

import latentlib as ll
from latentlib import shapes
from latentlib.testing import tiny_sd_components
from latentlib.vocabulary import build_word_tokenizer, is_word_level, unknown_words


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(shapes.vocabulary())


def test_every_caption_word_is_one_token(tokenizer):
    for seed in range(300):
        text = shapes.caption(shapes.sample_scene(seed), seed)
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)[1:-1]
        assert len(tokens) == len(text.replace(",", " , ").split()), text
        assert all(t.endswith("</w>") for t in tokens) and not unknown_words(tokenizer, text)


def test_unknown_words_are_named_and_survive_save_and_load(tokenizer, tmp_path):
    assert unknown_words(tokenizer, "a red rose on a black background") == ["rose"]
    assert unknown_words(tokenizer, "A RED Circle") == []  # CLIP lower-cases
    tokenizer.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert is_word_level(again) and unknown_words(again, "a violet star") == ["violet"]
    assert again("a red circle").input_ids == tokenizer("a red circle").input_ids


def test_byte_level_tokenizers_report_nothing():
    from latentlib.testing import build_clip_tokenizer

    assert unknown_words(build_clip_tokenizer(), "a red rose") == []


def test_embed_warns_about_unknown_words(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = tiny_sd_components()
    config = CLIPTextConfig(**{**parts["text_encoder"].config.to_dict(), "vocab_size": len(tokenizer),
                               "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                               "pad_token_id": tokenizer.pad_token_id})
    model = ll.Model(**{**parts, "tokenizer": tokenizer, "text_encoder": CLIPTextModel(config)})
    with pytest.warns(UserWarning, match=r"does not know: 'rose'"):
        model.embed("a red rose")


def test_bad_vocabulary():
    with pytest.raises(ValueError, match=r"`words` must be non-empty lower-case a-z words; got \['Red'\]"):
        build_word_tokenizer(["a", "Red"])


def test_the_tokenizer_is_the_same_in_every_process(tokenizer):
    # The merges are learnt in Python with fixed tie-breaks: tokenizers' BPE trainer numbered tokens
    # differently from one process to the next, so the text stage could not be reproduced from its seed.
    import json
    import subprocess
    import sys

    code = ("import json; from latentlib import shapes; from latentlib.vocabulary import learn_merges; "
            "v, m = learn_merges(shapes.vocabulary(), specials=['<|startoftext|>', '<|endoftext|>', '<|unk|>']); "
            "print(json.dumps([v, m]))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    vocab, _ = json.loads(runs[0])
    assert {k: v for k, v in tokenizer.get_vocab().items() if k in vocab} == vocab


def test_the_shipped_tokenizer_is_the_one_build_tokenizer_makes():
    # The default model (version 9, and version 10, which keeps its text encoder) was trained with the deterministic merges, so a retrained text stage
    # numbers every word as the shipped model does.
    from latentlib.shapes_model import MODEL_DIR, build_tokenizer

    shipped = CLIPTokenizer.from_pretrained(MODEL_DIR / "tokenizer")
    assert build_tokenizer().get_vocab() == shipped.get_vocab()
