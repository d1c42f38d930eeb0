"""Train the offline text demo model ``fortune``: a tiny Llama on the Debian ``fortunes`` quotes.

Writes ``models/fortune/`` (safetensors weights, tokenizer, generation config), ``eval.json``
(held-out perplexity vs an add-one unigram baseline) and ``heldout.txt`` (the held-out quotes,
separated by ``%`` lines like the fortune files, so tests can recompute perplexity).

    python scripts/demo_models/train_fortune.py --minutes 4

Training stops at ``--minutes`` of wall time, or after ``--steps`` steps when given (use
``--steps`` for a bit-for-bit reproducible run; the time budget depends on the CPU's speed).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

REPO = Path(__file__).resolve().parents[2]
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# ASCII-art collections are pictures, not prose.
SKIP_FILES = {"art", "ascii-art"}
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
# Not a chat model: the conversation's message contents become the start of a quote.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['content'] }}{% if not loop.last %}\n{% endif %}"
    "{% endfor %}"
)
OVERSTRIKE = re.compile(r".\x08")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def ensure_fortunes() -> None:
    if FORTUNE_DIR.is_dir():
        return
    print("installing Debian package 'fortunes' ...", flush=True)
    if subprocess.run(["apt-get", "install", "-y", "fortunes"], check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "fortunes"], check=True)


def split_quotes(text: str) -> list[str]:
    quotes = []
    for chunk in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        quote = CONTROL.sub("", OVERSTRIKE.sub("", chunk)).strip("\n").rstrip()
        if quote.strip():
            quotes.append(quote)
    return quotes


def read_quotes() -> list[str]:
    quotes: list[str] = []
    for path in sorted(FORTUNE_DIR.iterdir()):
        if path.is_symlink() or path.suffix in {".dat", ".u8"} or path.name in SKIP_FILES:
            continue
        quotes.extend(split_quotes(path.read_text(encoding="utf-8", errors="replace")))
    return sorted(set(quotes))


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Plain tokenization (add_special_tokens=True) prepends <|bos|>, as in training.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=256,
        chat_template=CHAT_TEMPLATE,
    )


def encode(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """``<|bos|> quote <|eos|>`` ids per text."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return [[*row, tokenizer.eos_token_id] for row in ids]


def make_batches(
    seqs: list[list[int]], tokens_per_batch: int, rng: random.Random
) -> list[list[list[int]]]:
    """Length-bucketed batches (little padding), in random order."""
    order = list(range(len(seqs)))
    rng.shuffle(order)
    batches: list[list[list[int]]] = []
    for start in range(0, len(order), 2048):
        chunk = sorted(order[start : start + 2048], key=lambda i: len(seqs[i]))
        batch: list[list[int]] = []
        for i in chunk:
            longest = max([len(seqs[i])] + [len(s) for s in batch])
            if batch and longest * (len(batch) + 1) > tokens_per_batch:
                batches.append(batch)
                batch = []
            batch.append(seqs[i])
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(batch: list[list[int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


@torch.no_grad()
def model_nll(model: LlamaForCausalLM, seqs: list[list[int]], pad_id: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of every token after <|bos|>, and the count."""
    model.eval()
    total, count = 0.0, 0
    ordered = sorted(seqs, key=len)
    for start in range(0, len(ordered), 32):
        ids, mask, labels = collate(ordered[start : start + 32], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total += float(loss)
        count += int((labels[:, 1:] != -100).sum())
    return total, count


def unigram_nll(train: list[list[int]], test: list[list[int]], vocab: int) -> float:
    """Summed NLL of the test targets under an add-one unigram fitted on the train targets."""
    counts = Counter(t for seq in train for t in seq[1:])
    denom = sum(counts.values()) + vocab
    return -sum(math.log((counts[t] + 1) / denom) for seq in test for t in seq[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall-time budget")
    parser.add_argument("--steps", type=int, default=0, help="exact step count (overrides time)")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "fortune")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=3072)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tokens-per-batch", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    ensure_fortunes()

    quotes = read_quotes()
    rng = random.Random(args.seed)
    rng.shuffle(quotes)
    n_held = max(1, round(0.05 * len(quotes)))
    held_texts, train_texts = quotes[:n_held], quotes[n_held:]

    tokenizer = train_tokenizer(train_texts, args.vocab_size)
    max_len = 256
    train_all, held_all = encode(tokenizer, train_texts), encode(tokenizer, held_texts)
    train_seqs = [s for s in train_all if len(s) <= max_len]
    keep = [i for i, s in enumerate(held_all) if len(s) <= max_len]
    held_seqs = [held_all[i] for i in keep]
    held_texts = [held_texts[i] for i in keep]
    n_tokens = sum(len(s) for s in train_seqs)
    print(
        f"{len(quotes)} quotes: {len(train_seqs)} train ({n_tokens} tokens), "
        f"{len(held_seqs)} held out; dropped {len(train_all) - len(train_seqs)} train and "
        f"{n_held - len(held_seqs)} held-out quotes longer than {max_len} tokens",
        flush=True,
    )

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3 // 32 * 32,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95)
    )
    budget_s = args.minutes * 60.0
    warmup = 30
    step, epoch, tokens_seen = 0, 0, 0
    start = time.monotonic()
    done = False
    total = args.steps if args.steps else None
    bar = tqdm(
        total=total or int(budget_s),
        unit="step" if total else "s",
        dynamic_ncols=True,
        mininterval=5,
    )
    while not done:
        epoch += 1
        for batch in make_batches(train_seqs, args.tokens_per_batch, rng):
            elapsed = time.monotonic() - start
            progress = step / args.steps if args.steps else elapsed / budget_s
            if progress >= 1.0:
                done = True
                break
            lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            ids, mask, labels = collate(batch, tokenizer.pad_token_id)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            tokens_seen += int(mask.sum())
            bar.update(1 if total else int(time.monotonic() - start) - bar.n)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
    bar.close()
    train_s = time.monotonic() - start
    print(f"trained {step} steps, {tokens_seen} tokens, {epoch} epochs in {train_s:.0f} s")

    model.half()  # evaluate the weights as saved (float16), computing in float32
    nll, count = model_nll(model.float(), held_seqs, tokenizer.pad_token_id)
    model.half()
    uni = unigram_nll(train_seqs, held_seqs, len(tokenizer))
    report = {
        "heldout_quotes": len(held_seqs),
        "heldout_tokens": count,
        "perplexity": math.exp(nll / count),
        "unigram_perplexity": math.exp(uni / count),
        "train_quotes": len(train_seqs),
        "train_tokens": n_tokens,
        "parameters": n_params,
        "steps": step,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_s, 1),
        "seed": args.seed,
        "weights_dtype": "float16",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    print(json.dumps(report, indent=2))

    if args.out.exists():
        shutil.rmtree(args.out)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.8,
        top_p=0.95,
        max_new_tokens=64,
    )
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    (args.out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "heldout.txt").write_text("\n%\n".join(held_texts) + "\n")
    for path in args.out.iterdir():
        path.chmod(0o644)  # safetensors writes 0600 files
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB)")

    torch.manual_seed(args.seed)
    prompt = tokenizer(["A computer is", "Love is"], return_tensors="pt", padding=True)
    out = model.float().generate(**prompt, max_new_tokens=40)
    for text in tokenizer.batch_decode(out, skip_special_tokens=True):
        print("sample:", text.replace("\n", " / "))


if __name__ == "__main__":
    main()
