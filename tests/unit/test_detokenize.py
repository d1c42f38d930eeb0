"""The incremental detokenizer gives, after every token, exactly the text of decoding all of
them: random token sequences (multi-byte characters split across tokens included) and real
answers, with the test models' tokenizer and SmolLM2's."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from services.text.detokenize import Detokenizer
from tests.tiny_models import make_text_model

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "models" / "smollm2"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Café, naïve, 東京 and emoji 🎉🎉 — with \u2018quotes\u2019 and   spaces\n\nnew lines.",
    "def f(x):\n    return x ** 2  # a comment",
]


def tokenizers(tiny_dir: Path) -> list[Any]:
    found = [AutoTokenizer.from_pretrained(make_text_model(tiny_dir / "tiny-text"))]
    if (SMOLLM2 / "tokenizer.json").exists():  # `make assets-transformers`
        found.append(AutoTokenizer.from_pretrained(SMOLLM2))
    return found


def check(tokenizer: Any, ids: list[int]) -> None:
    detok = Detokenizer(tokenizer)
    for n, token in enumerate(ids, 1):
        text = detok.add(token, final=n == len(ids))
        whole = tokenizer.decode(ids[:n], skip_special_tokens=True)
        if n == len(ids):
            assert text == whole, ids  # the end flushes what was held back
        else:  # equal, but for a character still incomplete at the end, held back
            assert whole.startswith(text) and (text == whole or whole.endswith("\ufffd")), ids


@pytest.mark.parametrize("text", TEXTS)
def test_real_text_token_by_token(tiny_dir: Path, text: str) -> None:
    for tokenizer in tokenizers(tiny_dir):
        check(tokenizer, tokenizer(text, add_special_tokens=False).input_ids)


def test_random_token_sequences(tiny_dir: Path) -> None:
    rng = random.Random(0)
    for tokenizer in tokenizers(tiny_dir):
        for _ in range(40):
            ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 40))]
            check(tokenizer, ids)
