"""Big cells: encode time and peak memory at 1k, 4k, 20k and 100k atoms, and the CIF reader's speed.

Prints, in one run:

1. for rock-salt supercells written as P1 CIF text (the way a user's big cell arrives), the time of
   ``ScopeEncoder().encode(cif_text)`` split into reading + checks (``load_cell``) and the rest, the peak
   resident memory of a fresh process doing it, and the growth exponent ``b`` of ``time ∝ n^b``;
2. the overlap check against the quadratic all-pairs check it replaced (at the sizes where that finishes);
3. a big cell that is *not* a supercell (rock salt rattled by 0.3 Å, P1): the symmetry backends' own
   primitive-cell search is O(n²) there and dominates;
4. with ``--cif``: CIFs/s of gemmi (``read_cif_cell``) and of pymatgen's ``CifParser`` on 500 MP-20 CIFs of
   ``../shared/data``, and whether their site counts agree.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_structures.py            # 1k, 4k, 20k, 100k atoms
    OMP_NUM_THREADS=1 python benchmarks/bench_structures.py --sizes 1000 4000 --cif
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROCKSALT_BASIS = [(11, (0, 0, 0)), (11, (0, 0.5, 0.5)), (11, (0.5, 0, 0.5)), (11, (0.5, 0.5, 0)),
                  (17, (0.5, 0.5, 0.5)), (17, (0.5, 0, 0)), (17, (0, 0.5, 0)), (17, (0, 0, 0.5))]
A_ROCKSALT = 5.64  # Å


def supercell_arrays(n_atoms: int, rattle: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rock-salt m×m×m conventional supercell with about ``n_atoms`` atoms; optionally rattled (Å)."""
    m = max(1, round((n_atoms / 8) ** (1 / 3)))
    cells = np.stack(np.meshgrid(*(np.arange(m),) * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    basis = np.array([position for _, position in ROCKSALT_BASIS])
    frac = ((cells + basis) / m).reshape(-1, 3)
    numbers = np.tile([z for z, _ in ROCKSALT_BASIS], len(cells))
    if rattle:
        frac = frac + np.random.default_rng(0).normal(0, rattle / (m * A_ROCKSALT), frac.shape)
    return np.eye(3) * m * A_ROCKSALT, frac, numbers


def p1_cif(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray) -> str:
    symbols = {11: "Na", 17: "Cl"}
    a = lattice[0, 0]
    rows = "\n".join(f"{symbols[z]}{i} {symbols[z]} {x:.6f} {y:.6f} {w:.6f} 1" for i, (z, (x, y, w)) in enumerate(zip(numbers, frac)))
    return (f"data_big\n_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n_cell_angle_alpha 90\n"
            "_cell_angle_beta 90\n_cell_angle_gamma 90\n_space_group_IT_number 1\nloop_\n_atom_site_label\n"
            "_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
            f"_atom_site_occupancy\n{rows}\n")


def child(n_atoms: int, rattle: float) -> None:
    """Run in a fresh process: encode one big CIF, print times and peak memory as JSON."""
    import resource

    from cloud_hf.scope import ScopeEncoder
    from cloud_hf.structures import load_cell

    text = p1_cif(*supercell_arrays(n_atoms, rattle))
    encoder = ScopeEncoder()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cell = load_cell(text)
    read = time.perf_counter() - start
    scope = encoder.encode(cell)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": len(cell), "read": read, "total": total, "peak_mib": peak / 1024,
                      "baseline_mib": baseline / 1024, "scope": scope}))


def run_child(n_atoms: int, rattle: float = 0.0) -> dict:
    command = [sys.executable, __file__, "--child", str(n_atoms), "--rattle", str(rattle)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def quadratic_closest_pair(lattice: np.ndarray, frac_coords: np.ndarray, chunk: int = 64) -> float:
    """The all-pairs minimum-image check the KD-tree replaced (O(n²) time), for the ratio only."""
    shifts = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float) @ lattice
    best = math.inf
    n = len(frac_coords)
    for start in range(0, n - 1, chunk):
        stop = min(start + chunk, n - 1)
        delta = frac_coords[start:stop, None, :] - frac_coords[None, :, :]
        delta -= np.rint(delta)
        cart = (delta @ lattice)[:, :, None, :] + shifts
        squared = np.einsum("ijkl,ijkl->ijk", cart, cart).min(axis=2)
        rows = np.arange(stop - start)
        squared[rows, rows + start] = math.inf
        best = min(best, math.sqrt(squared.min()))
    return best


def growth_exponent(sizes: list[int], times: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def bench_big_cells(sizes: list[int], primitive_sizes: list[int]) -> None:
    print("1. P1 CIF of a rock-salt supercell -> ScopeEncoder().encode (fresh process each)")
    print(f"{'atoms':>8} {'read+checks s':>14} {'total s':>9} {'peak RSS MiB':>13} {'after import MiB':>17}  scope")
    results = [run_child(n) for n in sizes]
    for r in results:
        print(f"{r['n']:>8} {r['read']:>14.2f} {r['total']:>9.2f} {r['peak_mib']:>13.0f} {r['baseline_mib']:>17.0f}  {r['scope']}")
    if len(results) > 1:
        print(f"   growth exponent of the total time: {growth_exponent([r['n'] for r in results], [r['total'] for r in results]):.2f}")

    from cloud_hf.structures import closest_pair

    print("\n2. overlap check: KD-tree (closest_pair) vs the all-pairs check it replaced")
    for n in [size for size in sizes if size <= 4000]:
        lattice, frac, _ = supercell_arrays(n)
        start = time.perf_counter()
        closest_pair(lattice, frac, cutoff=0.5)
        fast = time.perf_counter() - start
        start = time.perf_counter()
        quadratic_closest_pair(lattice, frac)
        slow = time.perf_counter() - start
        print(f"   {len(frac):>6} atoms: KD-tree {fast:.3f} s, all pairs {slow:.2f} s, ratio {slow / fast:.0f}×")

    if primitive_sizes:
        print("\n3. a big cell that is no supercell (rattled 0.3 Å, P1): the backend's O(n²) search dominates")
        rattled = [run_child(n, rattle=0.3) for n in primitive_sizes]
        for r in rattled:
            print(f"   {r['n']:>6} atoms: read+checks {r['read']:.2f} s, total {r['total']:.2f} s, peak {r['peak_mib']:.0f} MiB, "
                  f"{' '.join(r['scope'].split()[:3])} ...")
        if len(rattled) > 1:
            print(f"   growth exponent: {growth_exponent([r['n'] for r in rattled], [r['total'] for r in rattled]):.2f}")


def bench_cif_readers(n_cifs: int) -> None:
    import pandas as pd
    from pymatgen.core import Structure

    from cloud_hf.structures import read_cif_cell

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "structures" / "mp_20" / "pilot_train.csv.gz"
    if not data.is_file():
        print(f"\n4. skipped: {data} is absent")
        return
    cifs = list(pd.read_csv(data, nrows=n_cifs)["cif"])
    start = time.perf_counter()
    cells = [read_cif_cell(text, "bench") for text in cifs]
    gemmi_time = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(text, fmt="cif") for text in cifs]
    pymatgen_time = time.perf_counter() - start
    agree = sum(len(cell) == len(structure) for cell, structure in zip(cells, structures))
    print(f"\n4. CIF readers on {len(cifs)} MP-20 CIFs: gemmi {len(cifs) / gemmi_time:,.0f} CIFs/s, pymatgen "
          f"{len(cifs) / pymatgen_time:,.0f} CIFs/s (ratio {pymatgen_time / gemmi_time:.0f}×); site counts agree on "
          f"{agree}/{len(cifs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 20000, 100000])
    parser.add_argument("--primitive-sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--cif", action="store_true", help="also time the CIF readers on real CIFs")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rattle", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.rattle)
        return
    bench_big_cells(args.sizes, args.primitive_sizes)
    if args.cif:
        bench_cif_readers(500)


if __name__ == "__main__":
    main()
