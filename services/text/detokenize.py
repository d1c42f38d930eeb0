"""Incremental detokenization for the transformers engine: each sampled token adds only the
text it completes, decoding a short window (the tokens since the last emitted text and a few
before them, for context) instead of the whole answer every step (quadratic in its length).

The window method is the one TGI and vLLM use: the text of `ids[prefix:]` minus the text of
`ids[prefix:read]` is what the newest tokens add; while it ends in an incomplete UTF-8
character (U+FFFD) nothing is added yet. tests/unit/test_detokenize.py checks that the text
always equals decoding the whole answer, for the test tokenizer and SmolLM2's.
"""

from __future__ import annotations

from typing import Any


class Detokenizer:
    """The text of one completion's tokens so far (special tokens skipped)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # ids[_prefix:_read] give the context the new tokens are decoded in
        self._read = 0  # ids before this are in `text`

    def add(self, token: int | None, final: bool = False) -> str:
        """Appends a token (None: none, e.g. the end-of-sequence token that is not text);
        returns the whole text so far. `final`: the completion ends here, so bytes of an
        incomplete character are not held back any longer (they show as U+FFFD, as decoding
        the whole answer shows them)."""
        if token is not None:
            self.ids.append(token)
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        new_text = self._decode(self.ids[self._prefix :])
        if len(new_text) > len(prefix_text) and (final or not new_text.endswith("\ufffd")):
            self.text += new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.ids)
        return self.text

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))
