"""A GGUF model and its llama.cpp context through llama-cpp-python's C API
(`llama_cpp.llama_cpp`): loading, one unified KV cache for every sequence, the vocabulary
(tokenize, token pieces) and its chat template (the GGUF's own, or the config's); freed
together. The scheduling (which sequences decode in a step, the prefix cache, sampling) is the
engine's, `services/text/llamacpp_engine.py`."""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Any

_FLASH = {"auto": -1, "off": 0, "on": 1}  # LLAMA_FLASH_ATTN_TYPE_*


def gguf_file(weights: str) -> Path:
    """`weights` is a .gguf file, or a folder holding exactly one."""
    path = Path(weights)
    if path.is_file():
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(found) != 1:
        raise ValueError(f"weights {weights}: expected a .gguf file or a folder with one")
    return found[0]


class GgufChatTemplate:
    """The GGUF's chat template behind the tokenizer interface `prompt_text` uses."""

    def __init__(self, template: str | None, bos: str, eos: str) -> None:
        self.chat_template = template
        self._format: Any = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._format = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool,
        tokenize: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        assert self._format is not None and add_generation_prompt and not tokenize
        return str(self._format(messages=messages, tools=tools).prompt)


class LlamaModel:
    """The loaded model, its context and vocabulary. `ll` is the C API module; `model`,
    `ctx`, `vocab`, `memory` and `batch` its handles, used by one thread at a time."""

    def __init__(self, path: Path, name: str) -> None:
        ll: Any = importlib.import_module("llama_cpp.llama_cpp")
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's load chatter; errors still print
        self.ll = ll
        ll.llama_backend_init()
        model_params = ll.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = ll.llama_model_load_from_file(str(path).encode(), model_params)
        if not self.model:
            raise ValueError(f"model {name}: llama.cpp could not load {path}")
        self.name = name
        self.ctx: Any = None
        self.batch: Any = None
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.parameters = int(ll.llama_model_n_params(self.model))
        desc = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, desc, len(desc))
        self.description = desc.value.decode(errors="replace")
        self.trained_context = int(ll.llama_model_n_ctx_train(self.model))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._bos = self.piece(ll.llama_vocab_bos(self.vocab), special=True).decode(errors="ignore")
        self._eos = self.piece(ll.llama_vocab_eos(self.vocab), special=True).decode(errors="ignore")
        template = ll.llama_model_chat_template(self.model, None)
        self.chat_template = self.template(template.decode() if template else None)

    def template(self, text: str | None) -> GgufChatTemplate:
        """A chat template (the GGUF's own, or one the config names) with this vocabulary's
        BOS and EOS tokens."""
        return GgufChatTemplate(text, bos=self._bos, eos=self._eos)

    def grammar_tokenizer(self) -> Any:
        """The vocabulary as llguidance's grammars see it (built once: ~0.25 s for 49k
        tokens); every end-of-generation token ends a constrained answer."""
        from llguidance.llamacpp import lltokenizer_from_vocab

        ll = self.ll
        eog = [t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t)]
        return lltokenizer_from_vocab(self.vocab, eos_token=eog or None)

    def open_context(
        self, cells: int, batch_tokens: int, sequences: int, threads: int, flash: str
    ) -> int:
        """One context whose unified KV cache of `cells` is shared by up to `sequences`
        sequences, and a batch of `batch_tokens`; returns the cells llama.cpp gave it."""
        ll = self.ll
        params = ll.llama_context_default_params()
        params.n_ctx = cells
        params.n_batch = params.n_ubatch = batch_tokens
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # one pool of cells shared by every sequence
        params.flash_attn_type = _FLASH[flash]
        self.ctx = ll.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError(f"model {self.name}: llama.cpp could not make a context")
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(batch_tokens, 0, 1)
        return int(ll.llama_n_ctx(self.ctx))

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode()
        size = len(data) + 8
        while True:
            buf = (self.ll.llama_token * size)()
            n = self.ll.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = self._piece_buf
        n = self.ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def free(self) -> None:
        ll = self.ll
        if self.batch is not None:
            ll.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx is not None:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            ll.llama_model_free(self.model)
            self.model = None
