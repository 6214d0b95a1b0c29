"""End-to-end prediction throughput: CIF files → θ_D and C_v(300 K), cloud-hf against the reference approach.

Both sides start from the same CIF files on disk and end with θ_D (K) and C_v at 300 K (J/(mol·K)) per crystal,
with models of the same depth and width (those of the bundled model, or of ``--model``):

* **cloud-hf**: the ``crystal-property-prediction`` pipeline (canonical SCOPE: fast CIF reader + moyopy symmetry,
  word-level fast tokenizer with dynamic padding, the CloudDebyeModel with its Debye head), as ``cloud-hf predict``
  runs it;
* **reference approach** (written out below from SPEC.md): pymatgen ``Structure.from_file`` + ``SpacegroupAnalyzer``
  (symprec 0.01, angle tolerance 5) → reference SCOPE string, ``BertTokenizer`` (the released vocabulary) padded to
  64 tokens, a ``BertModel`` sized like the released ``BertForMaskedLM`` (vocabulary 30,522, 64 positions) with the
  reference head (Dropout → Linear + SiLU → Linear), θ_D = 1200·y + 1500 K and the 20-point Gauss–Legendre Debye
  quadrature.

Run from the repository root (reads ``../shared/data``; writes the CIF files to a temporary folder)::

    python benchmarks/bench_predict.py                  # 500 AFLOW test crystals, bundled model size
    python benchmarks/bench_predict.py --n 200 --batch-size 32 --repeats 3 --threads 2

Prints structures/s of both and their ratio (cloud-hf / reference). Untrained reference weights are used: the
speed of a forward pass does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from transformers import BertConfig, BertModel, BertTokenizer, pipeline

from bench_debye import reference_heat_capacity_and_energy
from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR, TASK_NAME
from cloud_hf.scope import ScopeEncoder
from cloud_hf.scope.reference import reference_generator_string
from cloud_hf.scope.tables import space_group_tables

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "structures" / "aflow" / "debye_temperature" / "test.csv.gz"
DEFAULT_REFERENCE_TOKENIZER = REPO_ROOT.parent / "shared" / "data" / "reference" / "tokenizer"
REFERENCE_MAX_LENGTH = 64
REFERENCE_VOCAB_SIZE = 30522  # the released checkpoint keeps BERT's default vocabulary size
TEMPERATURE = 300.0  # K


def write_cif_files(data: Path, n_crystals: int, folder: Path) -> list[Path]:
    """Write the first ``n_crystals`` CIFs of a ``cif``-column table into ``folder``; returns their paths."""
    with gzip.open(data, "rt", encoding="utf-8") if data.suffix == ".gz" else data.open(encoding="utf-8") as handle:
        table = pd.read_csv(handle, nrows=n_crystals)
    paths = []
    for index, cif in enumerate(table["cif"]):
        path = folder / f"crystal_{index:05d}.cif"
        path.write_text(cif, encoding="utf-8")
        paths.append(path)
    return paths


def reference_scope_string(path: Path) -> tuple[str, int]:
    """The reference encoder's steps: pymatgen parse, ``SpacegroupAnalyzer``, generator + Wyckoff + composition.

    Returns the SCOPE string and the number of atoms in the cell.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = Structure.from_file(path)
    dataset = SpacegroupAnalyzer(structure, symprec=0.01, angle_tolerance=5).get_symmetry_dataset()
    multiplicities = space_group_tables(dataset.number).multiplicities
    wyckoffs = list(dict.fromkeys(f"{multiplicities[letter]}{letter}" for letter in dataset.wyckoffs))
    composition = structure.composition.fractional_composition
    fractions = " ".join(f"{element} {np.round(amount, 2)}" for element, amount in composition.items())
    symmetry = " ".join(reference_generator_string(dataset.number))
    return f"{symmetry} | {' '.join(wyckoffs)} | {fractions}", len(structure)


class ReferencePredictor:
    """The reference CLOUD-DEBYE inference path at a given depth and width (see the module docstring)."""

    def __init__(self, tokenizer_folder: Path, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int):
        self.tokenizer = BertTokenizer.from_pretrained(str(tokenizer_folder))
        config = BertConfig(
            vocab_size=REFERENCE_VOCAB_SIZE, hidden_size=hidden_size, num_hidden_layers=num_layers,
            num_attention_heads=num_heads, intermediate_size=intermediate_size,
            max_position_embeddings=REFERENCE_MAX_LENGTH, type_vocab_size=1,
        )
        self.encoder = BertModel(config, add_pooling_layer=False).eval()
        self.head = torch.nn.Sequential(
            torch.nn.Dropout(0.1), torch.nn.Linear(hidden_size, hidden_size), torch.nn.SiLU(),
            torch.nn.Linear(hidden_size, 1),
        ).eval()

    @torch.no_grad()
    def predict(self, paths: list[Path], batch_size: int) -> list[tuple[float, float] | None]:
        """(θ_D in K, C_v(300 K) in J/(mol·K)) per file; ``None`` where the file cannot be encoded."""
        results: list[tuple[float, float] | None] = []
        for start in range(0, len(paths), batch_size):
            scopes, atom_counts, encoded = [], [], []
            for path in paths[start : start + batch_size]:
                try:
                    scope, n_atoms = reference_scope_string(path)
                except Exception:  # the reference approach has no error reporting; count the failure
                    encoded.append(False)
                    continue
                scopes.append(scope)
                atom_counts.append(n_atoms)
                encoded.append(True)
            predictions = iter(())
            if scopes:
                tokens = self.tokenizer(
                    scopes, padding="max_length", max_length=REFERENCE_MAX_LENGTH, truncation=True, return_tensors="pt"
                )
                hidden = self.encoder(**tokens).last_hidden_state[:, 0]
                theta = 1200.0 * self.head(hidden).squeeze(-1) + 1500.0
                heat_capacity, _ = reference_heat_capacity_and_energy(
                    theta, torch.full_like(theta, TEMPERATURE), torch.tensor(atom_counts, dtype=theta.dtype)
                )
                predictions = zip(theta.tolist(), heat_capacity.tolist())
            results.extend(next(predictions) if ok else None for ok in encoded)
        return results


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The shortest wall time (s) of ``repeats`` calls of ``run`` and the result of the last one."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="table with a 'cif' column")
    parser.add_argument("--n", type=int, default=500, help="number of crystals (default 500)")
    parser.add_argument("--model", default=str(BUNDLED_MODEL_DIR), help="cloud-hf checkpoint (default: bundled)")
    parser.add_argument("--reference-tokenizer", type=Path, default=DEFAULT_REFERENCE_TOKENIZER)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side; the best is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides (default 1: a per-core figure, steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    predictor = pipeline(TASK_NAME, model=args.model, device="cpu")
    config = predictor.model.config
    reference = ReferencePredictor(
        args.reference_tokenizer, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
        config.intermediate_size,
    )
    print(f"model size: {config.num_hidden_layers} layers x {config.hidden_size} hidden x "
          f"{config.num_attention_heads} heads; cloud-hf {predictor.model.num_parameters() / 1e6:.2f}M parameters, "
          f"reference {sum(p.numel() for p in reference.encoder.parameters()) / 1e6:.2f}M; "
          f"torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as folder:
        paths = write_cif_files(args.data, args.n, Path(folder))
        reference_encoder = ScopeEncoder(mode="reference")
        for path in paths[:20]:  # the reference steps written out here agree with cloud-hf's reference mode
            assert reference_scope_string(path)[0] == reference_encoder.encode(path), path
        predictor(paths[:16], batch_size=args.batch_size)  # warm-up
        reference.predict(paths[:16], args.batch_size)

        ours_s, ours = best_time(
            lambda: predictor(paths, batch_size=args.batch_size, temperatures=[TEMPERATURE]), args.repeats
        )
        reference_s, theirs = best_time(lambda: reference.predict(paths, args.batch_size), args.repeats)

    ours_ok = sum(result["error"] is None for result in ours)
    theirs_ok = sum(result is not None for result in theirs)
    ours_rate, reference_rate = len(paths) / ours_s, len(paths) / reference_s
    print(f"crystals: {len(paths)} CIF files from {args.data.name}, batch size {args.batch_size}")
    print(f"cloud-hf pipeline : {ours_rate:8.1f} structures/s ({ours_ok} predicted, {len(paths) - ours_ok} errors)")
    print(f"reference approach: {reference_rate:8.1f} structures/s ({theirs_ok} predicted, "
          f"{len(paths) - theirs_ok} failed)")
    print(f"ratio (cloud-hf / reference): {ours_rate / reference_rate:.2f}x")
    mean_tokens = statistics.mean(len(result["scope"].split()) for result in ours if result["scope"]) + 2
    print(f"mean tokens per crystal: cloud-hf {mean_tokens:.1f} (dynamic padding), reference {REFERENCE_MAX_LENGTH} (padded)")


if __name__ == "__main__":
    main()
