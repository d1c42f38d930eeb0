"""Question-answering accuracy of the default text model, served and in-process, plus held-out
perplexity. Writes ``models/smollm2-eval.json``; ``make eval`` runs it.

1. In-process: the configured engine (smollm2: ``llamacpp`` on the Q4_1 GGUF, with the
   config's options, ``prompt_format: chat`` included) answers every question of
   ``questions.json``, greedy, ``--concurrency`` at a time, in this process (no Ray, no RPC).
   With ``--compare`` (a folder; ``make eval`` passes ``models/smollm2``, the same GGUF
   dequantized by ``make assets-transformers``) the transformers engine answers them too, so the
   report shows what serving the quantized file as it is changes.
2. Served: the same questions through the gRPC client (``aigc.Client``), as plain prompts,
   greedy. With ``--address`` the script asks a running stack (``make up``); without it, it
   starts a ``Stack`` serving only this model (Ray + gateway in this process, about
   40 s on 2 cores), asks, and stops it.
3. Perplexity: the model scores the first ``--heldout`` quotes of fortune's held-out set
   (``models/fortune/heldout.txt``, Debian ``fortunes``), one quote per row; reported per token
   and as bits per byte (comparable across tokenizers), beside the tiny ``fortune`` model on the
   same text. SmolLM2's pretraining data is web text and may contain some of these quotes.

An answer counts when it contains one of the question's answers (case-insensitive; a number
must appear as a whole number). The questions were written before any model answered them;
the prompt is the question alone.

    python scripts/demo_models/eval_smollm2.py                      # own stack
    python scripts/demo_models/eval_smollm2.py --address 127.0.0.1:50051   # `make up` running
    python scripts/demo_models/eval_smollm2.py --sides served --merge --heldout 0 --address ...

Each part is written to ``--out`` as soon as it is done; ``--merge`` keeps the others. On a
machine loaded far past its cores, Serve's own start can time out (seen once at a load average
of 25): then start the stack with ``make up`` and pass ``--address``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from aigc.client import text_request  # noqa: E402
from core.config import AigcConfig, load_config  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "questions.json"


def correct(answer: str, expected: list[str]) -> bool:
    text = answer.lower().replace(",", "")
    for e in expected:
        e = e.lower()
        if re.fullmatch(r"\d+", e):
            if re.search(rf"(?<![\d.]){e}(?![\d]|\.\d)", text):
                return True
        elif e in text:
            return True
    return False


def score(questions: list[dict[str, Any]], answers: list[str]) -> dict[str, Any]:
    marks = [correct(a, q["answers"]) for q, a in zip(questions, answers, strict=True)]
    kinds: dict[str, list[bool]] = {}
    for q, m in zip(questions, marks, strict=True):
        kinds.setdefault(q["kind"], []).append(m)
    return {
        "correct": sum(marks),
        "total": len(marks),
        "accuracy": sum(marks) / len(marks),
        "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in kinds.items()},
        "marks": marks,
    }


def transformers_twin(config: AigcConfig, name: str, weights: Path) -> AigcConfig:
    """The config with `name` served by the transformers engine from `weights` (same prompt
    format, token defaults and context)."""
    model = config.by_name()[name]
    keep = ("prompt_format", "default_max_tokens")
    options = {k: v for k, v in model.options.items() if k in keep}
    options["max_context"] = model.options.get("context_per_sequence", 2048)
    twin = model.model_copy(
        update={"engine": "transformers", "weights": str(weights), "options": options}
    )
    return config.model_copy(update={"models": [twin]})


async def in_process(
    config: AigcConfig, name: str, questions: list[str], max_tokens: int, concurrency: int
) -> tuple[list[str], float]:
    from core.registry import engine_class
    from gateway import convert

    model = config.by_name()[name]
    engine = engine_class(model.modality.value, model.engine)(model)
    await engine.start()
    gate = asyncio.Semaphore(concurrency)

    async def ask(i: int, q: str) -> str:
        req = text_request(q, model=name, max_tokens=max_tokens, temperature=0.0)
        async with gate:
            result = await engine.generate(convert.text_request(req, model, f"eval-{i}", None))
        return str(result.completions[0].text)

    t0 = time.perf_counter()
    answers = await asyncio.gather(*[ask(i, q) for i, q in enumerate(questions)])
    seconds = time.perf_counter() - t0
    await engine.stop()
    return list(answers), seconds


async def served(
    address: str, name: str, questions: list[str], max_tokens: int, concurrency: int
) -> tuple[list[str], float]:
    from aigc.client import AsyncClient

    gate = asyncio.Semaphore(concurrency)
    async with AsyncClient(address) as client:

        async def ask(q: str) -> str:
            async with gate:
                r = await client.generate_text(
                    q, model=name, max_tokens=max_tokens, temperature=0.0, timeout=300
                )
            return str(r.completions[0].text)

        t0 = time.perf_counter()
        answers = await asyncio.gather(*[ask(q) for q in questions])
        return list(answers), time.perf_counter() - t0


async def served_own_stack(
    config: AigcConfig, name: str, questions: list[str], max_tokens: int, concurrency: int
) -> tuple[list[str], float, float]:
    from control.stack import Stack

    only = config.model_copy(update={"models": [config.by_name()[name]]})
    with socket.socket() as s:  # a free port for Ray's metrics exporter
        s.bind(("127.0.0.1", 0))
        ray_metrics_port = s.getsockname()[1]
    stack = Stack(only, port=0, metrics_port=0, ray_metrics_port=ray_metrics_port)
    t0 = time.perf_counter()
    try:
        await stack.start(progress=lambda s: print(f"  stack: {s}", flush=True))
        ready_s = time.perf_counter() - t0
        assert stack.gateway is not None
        address = f"127.0.0.1:{stack.gateway.port}"
        answers, seconds = await served(address, name, questions, max_tokens, concurrency)
    finally:
        await stack.stop(0)
    return answers, seconds, ready_s


def rows_perplexity(texts: list[str], nll_of: Callable[[str], tuple[float, int]]) -> dict:
    """Per-token perplexity and bits per byte of `texts`, each scored as its own row;
    `nll_of(text)` gives a row's summed negative log-likelihood (nats) and tokens predicted."""
    nll, tokens, nbytes = 0.0, 0, 0
    for text in texts:
        row_nll, row_tokens = nll_of(text)
        nll, tokens, nbytes = nll + row_nll, tokens + row_tokens, nbytes + len(text.encode())
    return {
        "tokens": tokens,
        "bytes": nbytes,
        "perplexity": math.exp(nll / tokens),
        "bits_per_byte": nll / math.log(2) / nbytes,
    }


def gguf_perplexity(path: Path, texts: list[str]) -> dict[str, float]:
    """`perplexity` of a GGUF file through llama.cpp (its quantized kernels), the same rows."""
    import numpy as np
    from llama_cpp import Llama

    from services.text.llamacpp_model import gguf_file

    llm = Llama(str(gguf_file(str(path))), n_ctx=2048, logits_all=True, verbose=False,
                n_threads=1)  # fmt: skip
    bos = llm.tokenize(b"<|endoftext|>", add_bos=False, special=True)

    def nll_of(text: str) -> tuple[float, int]:
        ids = bos + llm.tokenize(text.encode(), add_bos=False, special=False)
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        return -float(logp[np.arange(len(ids) - 1), ids[1:]].sum()), len(ids) - 1

    return rows_perplexity(texts, nll_of)


def perplexity(path: Path, texts: list[str]) -> dict[str, float]:
    """Per-token perplexity and bits per byte of `texts`, each scored as its own row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    # A document starts after the pretraining separator: SmolLM2's <|endoftext|> (its bos,
    # <|im_start|>, opens a chat turn), fortune's <|bos|>.
    bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if bos is None or (bos == tokenizer.unk_token_id and tokenizer.unk_token != "<|endoftext|>"):
        bos = tokenizer.bos_token_id

    @torch.no_grad()
    def nll_of(text: str) -> tuple[float, int]:
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
        ids = [bos, *ids] if bos is not None else ids
        x = torch.tensor([ids])
        logits = model(input_ids=x).logits[0, :-1].float()
        nll = float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
        return nll, len(ids) - 1

    return rows_perplexity(texts, nll_of)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "local.yaml")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--address", help="a running stack's gateway (else start one)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--heldout", type=int, default=100, help="held-out quotes to score")
    parser.add_argument(
        "--sides",
        default="in_process,served",
        help="which sides answer the questions: in_process, served, both, or none ('')",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the other figures already in --out"
    )
    parser.add_argument("--out", type=Path, default=REPO / "models" / "smollm2-eval.json")
    parser.add_argument(
        "--compare",
        type=Path,
        help="a transformers folder of the same model: its in-process answers and perplexity "
        "beside the configured engine's",
    )
    args = parser.parse_args()

    config = load_config(args.config)
    model = config.by_name()[args.model]
    spec = json.loads(QUESTIONS.read_text())["questions"]
    report: dict[str, Any] = {
        "model": args.model,
        "options": model.options,
        "questions": len(spec),
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "decoding": "greedy (temperature 0)",
    }

    if args.merge and args.out.exists():
        report = {**json.loads(args.out.read_text()), **report}
    questions_part(args, config, spec, report)
    if args.heldout:
        heldout = (REPO / "models" / "fortune" / "heldout.txt").read_text().removesuffix("\n")
        texts = heldout.split("\n%\n")[: args.heldout]
        print(f"perplexity on {len(texts)} held-out fortunes quotes", flush=True)
        score_fn = gguf_perplexity if model.engine == "llamacpp" else perplexity
        report["heldout"] = {
            "text": f"first {len(texts)} quotes of models/fortune/heldout.txt",
            args.model: score_fn(Path(str(model.weights)), texts),
            "fortune": perplexity(REPO / "models" / "fortune", texts),
        }
        if args.compare:
            report["heldout"][f"{args.model} transformers"] = perplexity(args.compare, texts)
    report["questions_file"] = [
        {"question": q["question"], "expected": q["answers"], "kind": q["kind"]} for q in spec
    ]
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{'':<12}{'correct':>10}{'accuracy':>10}")
    for side in ("in_process", "served", "in_process_transformers"):
        if side in report:
            r = report[side]
            print(
                f"{side:<12}{r['correct']:>7}/{r['total']:<2}{r['accuracy']:>10.1%}  {r['by_kind']}"
            )
    if "served_equals_in_process" in report:
        print(f"identical answers served vs in-process: {report['served_equals_in_process']}")
    if "transformers_equals_in_process" in report:
        print(f"identical answers transformers vs {model.engine}: "
              f"{report['transformers_equals_in_process']}")  # fmt: skip
    names = [k for k in report.get("heldout", {}) if k != "text"]
    for name in names:
        h = report["heldout"][name]
        print(
            f"held-out {name}: perplexity {h['perplexity']:.1f} per token "
            f"({h['tokens']} tokens), {h['bits_per_byte']:.3f} bits/byte"
        )
    print(f"wrote {args.out}")


def questions_part(
    args: argparse.Namespace, config: AigcConfig, spec: list[dict[str, Any]], report: dict
) -> None:
    questions = [q["question"] for q in spec]
    if "in_process" in args.sides:
        print(f"in-process: {len(questions)} questions, {args.concurrency} at a time", flush=True)
        local, local_s = asyncio.run(
            in_process(config, args.model, questions, args.max_tokens, args.concurrency)
        )
        report["in_process"] = {**score(spec, local), "seconds": round(local_s, 1)}
        report["in_process"]["answers"] = local
        print(f"  {report['in_process']['correct']}/{len(questions)} in {local_s:.0f} s")
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # kept if the next part fails
    if "served" in args.sides:
        print("served (gRPC):", flush=True)
        if args.address:
            remote, remote_s = asyncio.run(
                served(args.address, args.model, questions, args.max_tokens, args.concurrency)
            )
            report["served_address"] = args.address
        else:
            remote, remote_s, ready_s = asyncio.run(
                served_own_stack(config, args.model, questions, args.max_tokens, args.concurrency)
            )
            report["served_stack_ready_seconds"] = round(ready_s, 1)
        report["served"] = {**score(spec, remote), "seconds": round(remote_s, 1)}
        report["served"]["answers"] = remote
        print(f"  {report['served']['correct']}/{len(questions)} in {remote_s:.0f} s")
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if "in_process" in report and "served" in report:
        pairs = zip(report["in_process"]["answers"], report["served"]["answers"], strict=True)
        report["served_equals_in_process"] = sum(a == b for a, b in pairs)
    if args.compare:
        twin = transformers_twin(config, args.model, args.compare)
        print(f"in-process, transformers on {args.compare}:", flush=True)
        answers, seconds = asyncio.run(
            in_process(twin, args.model, questions, args.max_tokens, args.concurrency)
        )
        report["in_process_transformers"] = {**score(spec, answers), "seconds": round(seconds, 1)}
        report["in_process_transformers"]["answers"] = answers
        report["in_process_transformers"]["weights"] = str(args.compare)
        if "in_process" in report:
            pairs = zip(report["in_process"]["answers"], answers, strict=True)
            report["transformers_equals_in_process"] = sum(a == b for a, b in pairs)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
