"""Masked-LM training and inference throughput of cloud-hf against the reference approach, plus tokenization.

Approaches, with models of the same depth and width:

* **reference**: ``BertTokenizer`` (the released vocabulary) padding every string to 64 tokens, ``BertForMaskedLM``
  with BERT's default vocabulary of 30,522 rows, 64 positions, one token type (the released checkpoint's setup);
* **cloud-hf, reference strings**: the same 10k reference SCOPE strings through [`CloudTokenizerFast`] (converted
  reference vocabulary, 564 ids) with dynamic padding and [`CloudForMaskedLM`] (SDPA attention, fused QKV);
* **cloud-hf, canonical strings**: canonical SCOPE strings of real crystals (Materials Project MP-20 CIFs), the
  repository's canonical tokenizer (585 ids), dynamic padding, [`CloudForMaskedLM`].

All use 15% MLM masking (``DataCollatorForLanguageModeling``), AdamW, the same batch size. Each (approach, size)
runs in a fresh subprocess so that its peak memory (CPU: peak RSS of the process; CUDA: peak allocated) is its own.
Run from the repository root (reads ``../shared/data``)::

    python benchmarks/bench_model.py --quick          # 6 × 256 only, few steps
    python benchmarks/bench_model.py                  # 6 × 256 and 12 × 768
    python benchmarks/bench_model.py --device cuda

Prints samples/s (from the median step time), peak memory and the ratios cloud-hf / reference. Weights are random: speed does not depend on
their values. Timings on a shared machine vary with its load; compare ratios from one run.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
REFERENCE_DIR = DATA / "reference"
REFERENCE_LENGTH = 64
APPROACHES = ("reference", "cloud-reference-strings", "cloud-canonical-strings")


def load_reference_strings(limit: int) -> list[str]:
    with (REFERENCE_DIR / "pretrain_cloud_10k.csv").open(newline="") as handle:
        return [row["cloud"] for _, row in zip(range(limit), csv.DictReader(handle))]


def load_canonical_strings(limit: int) -> list[str]:
    """Canonical SCOPE strings of the first `limit` MP-20 pilot-train crystals (rows that fail are skipped)."""
    from pymatgen.core import Structure

    from cloud_hf import ScopeEncoder

    encoder = ScopeEncoder(mode="canonical")
    strings = []
    with gzip.open(DATA / "structures" / "mp_20" / "pilot_train.csv.gz", "rt") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, row in zip(range(limit), csv.DictReader(handle)):
            try:
                strings.append(encoder.encode(Structure.from_str(row["cif"], fmt="cif")))
            except ValueError:
                continue
    return strings


def build_tokenizer(approach: str):
    from transformers import AutoTokenizer, BertTokenizer

    import cloud_hf

    if approach == "reference":
        return BertTokenizer.from_pretrained(REFERENCE_DIR / "tokenizer")
    if approach == "cloud-reference-strings":
        return cloud_hf.CloudTokenizerFast.from_reference_files(REFERENCE_DIR / "tokenizer")
    return AutoTokenizer.from_pretrained(REPO_ROOT / "tokenizer")


def tokenize(tokenizer, strings: list[str], approach: str):
    if approach == "reference":
        return tokenizer(strings, padding="max_length", truncation=True, max_length=REFERENCE_LENGTH)
    return tokenizer(strings, truncation=True)


def build_model(approach: str, layers: int, hidden: int, vocab_size: int):
    from transformers import BertConfig, BertForMaskedLM

    from cloud_hf import CloudConfig, CloudForMaskedLM

    shape = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                 intermediate_size=4 * hidden)
    if approach == "reference":
        return BertForMaskedLM(BertConfig(vocab_size=30522, max_position_embeddings=REFERENCE_LENGTH,
                                          type_vocab_size=1, **shape))
    positions = REFERENCE_LENGTH if approach == "cloud-reference-strings" else 128
    return CloudForMaskedLM(CloudConfig(vocab_size=vocab_size, max_position_embeddings=positions, **shape))


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(spec: dict) -> dict:
    """One approach at one size: tokenize, collate, then time training steps and inference batches."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    torch.manual_seed(0)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = spec["device"]
    strings = json.loads(Path(spec["strings_file"]).read_text())
    tokenizer = build_tokenizer(spec["approach"])
    encodings = tokenize(tokenizer, strings, spec["approach"])
    features = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(encodings["input_ids"], encodings["attention_mask"])]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    batch_size = spec["batch_size"]
    batches = [collator(features[i:i + batch_size]) for i in range(0, len(features) - batch_size + 1, batch_size)]
    model = build_model(spec["approach"], spec["layers"], spec["hidden"], len(tokenizer)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def synchronize() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def train_step(batch: dict) -> None:
        batch = {key: value.to(device) for key, value in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def inference_step(batch: dict) -> None:
        model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))

    def median_rate(step, timed_batches: list[dict]) -> float:
        """Samples/s from the median step time (robust to other processes' load on a shared machine)."""
        durations = []
        for batch in timed_batches:
            start = time.perf_counter()
            step(batch)
            synchronize()
            durations.append(time.perf_counter() - start)
        return batch_size / statistics.median(durations)

    warmup = spec["warmup"]
    model.train()
    for batch in batches[:warmup]:
        train_step(batch)
    train_rate = median_rate(train_step, batches[warmup:warmup + spec["train_steps"]])
    model.eval()
    with torch.inference_mode():
        for batch in batches[:warmup]:
            inference_step(batch)
        inference_rate = median_rate(inference_step, batches[: spec["inference_batches"]])
    return {
        "train_samples_per_s": train_rate,
        "inference_samples_per_s": inference_rate,
        "peak_memory_mb": peak_memory_mb(device),
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "mean_tokens": statistics.mean(float(b["attention_mask"].sum(1).float().mean()) for b in batches),
        "padded_length": statistics.mean(b["input_ids"].shape[1] for b in batches),
    }


def tokenization_rates(reference_strings: list[str], canonical_strings: list[str], repeats: int) -> dict:
    """Strings/s of each approach's tokenizer on its strings (best of `repeats`), as fed to the model.

    Also times the pure-Python ``BertTokenizer`` of transformers 4 (``BertTokenizerLegacy`` in transformers 5; same
    ids), the class the reference code got as ``BertTokenizer``; in transformers 5 ``BertTokenizer`` is Rust-backed.
    """
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    def best_rate(tokenizer, strings: list[str], approach: str) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            tokenize(tokenizer, strings, approach)
            best = min(best, time.perf_counter() - start)
        return len(strings) / best

    python_tokenizer = BertTokenizerLegacy.from_pretrained(REFERENCE_DIR / "tokenizer")
    rates = {"reference (python, tf 4)": best_rate(python_tokenizer, reference_strings, "reference")}
    for approach in APPROACHES:
        strings = canonical_strings if approach == "cloud-canonical-strings" else reference_strings
        rates[approach] = best_rate(build_tokenizer(approach), strings, approach)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 × 256 only, fewer steps")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 10, quick 5)")
    parser.add_argument("--inference-batches", type=int, default=None, help="timed batches (default 20, quick 10)")
    parser.add_argument("--structures", type=int, default=None, help="MP-20 crystals to encode (default 1000)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per run (default: torch's own)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return

    train_steps = args.train_steps or (5 if args.quick else 10)
    inference_batches = args.inference_batches or (10 if args.quick else 20)
    structures = args.structures or (600 if args.quick else 1000)
    sizes = [(6, 256)] if args.quick else [(6, 256), (12, 768)]
    needed = args.batch_size * (2 + max(train_steps, inference_batches))

    reference_strings = load_reference_strings(10_000)
    canonical_strings = load_canonical_strings(structures)
    print(f"strings: {len(reference_strings)} reference (pretrain_cloud_10k.csv), {len(canonical_strings)} canonical "
          f"(MP-20 pilot_train); device {args.device}, threads {args.threads or 'default'}")

    rates = tokenization_rates(reference_strings, canonical_strings, repeats=3)
    print("\ntokenization, strings/s (as fed to the model; reference pads to 64); ratios against the transformers 5 "
          "BertTokenizer (Rust) and the transformers 4 BertTokenizer (Python)")
    for approach, rate in rates.items():
        print(f"  {approach:26s} {rate:12,.0f}   x{rate / rates['reference']:.2f}   "
              f"x{rate / rates['reference (python, tf 4)']:.2f}")

    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for name, strings in (("reference", reference_strings), ("canonical", canonical_strings)):
            repeated = (strings * (needed // len(strings) + 1))[:needed]
            files[name] = Path(folder) / f"{name}.json"
            files[name].write_text(json.dumps(repeated))
        for layers, hidden in sizes:
            steps = 3 if (hidden >= 768 and args.quick) else train_steps
            results = {}
            for approach in APPROACHES:
                spec = {"approach": approach, "layers": layers, "hidden": hidden, "device": args.device,
                        "threads": args.threads,
                        "batch_size": args.batch_size, "train_steps": steps, "warmup": 2,
                        "inference_batches": inference_batches,
                        "strings_file": str(files["canonical" if approach == "cloud-canonical-strings" else "reference"])}
                completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                           capture_output=True, text=True, check=False)
                if completed.returncode != 0:
                    raise RuntimeError(f"worker {approach} {layers}x{hidden} failed:\n{completed.stderr[-3000:]}")
                results[approach] = json.loads(completed.stdout.strip().splitlines()[-1])
            print(f"\n{layers} layers × {hidden} hidden, batch {args.batch_size} (median of {steps} training steps "
                  f"and {inference_batches} inference batches; tokens = real tokens per string, padded = batch width)")
            print(f"  {'approach':26s} {'params M':>8s} {'tokens':>6s} {'padded':>6s} {'train/s':>9s} {'x':>6s} "
                  f"{'infer/s':>9s} {'x':>6s} {'peak MB':>8s} {'x':>6s}")
            base = results["reference"]
            for approach, result in results.items():
                print(f"  {approach:26s} {result['parameters_m']:8.1f} {result['mean_tokens']:6.1f} "
                      f"{result['padded_length']:6.1f} {result['train_samples_per_s']:9.1f} "
                      f"{result['train_samples_per_s'] / base['train_samples_per_s']:6.2f} "
                      f"{result['inference_samples_per_s']:9.1f} "
                      f"{result['inference_samples_per_s'] / base['inference_samples_per_s']:6.2f} "
                      f"{result['peak_memory_mb']:8.0f} {result['peak_memory_mb'] / base['peak_memory_mb']:6.2f}")


if __name__ == "__main__":
    main()
