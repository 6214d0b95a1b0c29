"""MatBench, CLOUD against its peers on the same official folds, in one run.

    python benchmarks/bench_matbench.py                       # matbench_jdft2d, all 5 folds
    python benchmarks/bench_matbench.py --folds 1 --epochs 5  # a quick look
    python benchmarks/bench_matbench.py --backbone outputs/pretrain_small   # adds CLOUD from a pretrained backbone

Rows, each scored on the official test folds (MatBench v0.1, ``recipes/matbench.py``'s folds and ids):

* **CLOUD, scratch**: ``recipes/matbench.py`` with ``recipes/configs/matbench_jdft2d_small.yaml`` (4 × 128);
* **CLOUD, scratch + descriptors**: the same, with the head reading the composition descriptors and the
  vacuum-independent packing and mass descriptors (``--composition_features true --structure_features
  packing_descriptors mass_descriptors``);
* **CLOUD, backbone (+ descriptors)**: both again from ``--backbone`` where given;
* **GB peer**: ``GradientBoostingRegressor`` on composition + space group (:mod:`thermo_peers`' GB features);
* **strong peer**: ``HistGradientBoostingRegressor`` on composition statistics, the cell (here the packing
  descriptors, which a layer's vacuum does not set), space group, mean 1/√mass and the light-atom share.

Both peers are fitted on each fold's training rows (all of them: they carve no validation) and predict its test
rows. CrabNet (``crabnet``, the composition-only transformer the issue names) is not installed here and cannot be
fetched offline: its leaderboard figure is quoted, not rerun. Prints the table (mean ± std over folds, meV/atom
for jdft2d) and writes ``OUTPUT/bench_matbench.json`` and each CLOUD row's ``matbench_record.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "recipes"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from cloud_hf.cell_descriptors import packing_descriptors  # noqa: E402
from matbench import matbench_ids, matbench_task  # noqa: E402  (recipes/matbench.py)
from thermo_peers import crystal_features, gradient_boosting_peer, strong_peer  # noqa: E402

DESCRIPTOR_OPTIONS = ["--composition_features", "true", "--structure_features", "packing_descriptors",
                      "mass_descriptors"]
LEADERBOARD = {"matbench_jdft2d": {"CrabNet (leaderboard, not rerun)": 45.61, "MODNet (leaderboard)": 33.19}}
"""Published MatBench v0.1 mean MAEs quoted for context (matbench.materialsproject.org), not measured here."""


def peer_rows(structures: list[str], ids: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """GB and strong peer features of every row (``packing_descriptors`` as the strong peer's cell), and the count of
    rows where some part failed (its features NaN: imputed or read as missing)."""
    from cloud_hf.structures import load_structure

    gradient_boosting, strong, failed = [], [], 0
    for text, name in zip(structures, ids):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = load_structure(text, name=name)
        except Exception:  # an unreadable row: every feature NaN, counted
            structure = None
        gb, st, failures = crystal_features(None, name, packing_descriptors, structure=structure)
        gradient_boosting.append(gb)
        strong.append(st)
        failed += bool(failures) or structure is None
    return np.array(gradient_boosting), np.array(strong), failed


def peer_fold_maes(task: str, data_file: Path, n_folds: int) -> dict[str, list[float]]:
    """Test MAE per fold of both peers."""
    metadata, folds = matbench_task(task)
    table = pd.read_csv(data_file)
    ids = matbench_ids(task, len(table), folds)
    labels = table[metadata["target"]].to_numpy(float)
    gb_features, strong_features, failed = peer_rows(table["structure"].tolist(), ids)
    print(f"peer features: {len(ids)} rows, {failed} with a part that failed (NaN features)", flush=True)
    position = {mbid: index for index, mbid in enumerate(ids)}
    maes: dict[str, list[float]] = {"GB peer (composition + SG)": [], "strong peer (HGB: composition + cell + SG)": []}
    for fold_name in sorted(folds)[:n_folds]:
        train = np.array([position[m] for m in folds[fold_name]["train"]])
        test = np.array([position[m] for m in folds[fold_name]["test"]])
        for name, features, make in (("GB peer (composition + SG)", gb_features, gradient_boosting_peer),
                                     ("strong peer (HGB: composition + cell + SG)", strong_features, strong_peer)):
            model = make().fit(features[train], labels[train])
            maes[name].append(float(np.mean(np.abs(model.predict(features[test]) - labels[test]))))
    return maes


def cloud_fold_maes(name: str, output: Path, options: list[str], n_folds: int, epochs: int | None) -> list[float]:
    """Run ``recipes/matbench.py`` (small config) with ``options``; the test MAE of each fold."""
    command = [sys.executable, str(REPO_ROOT / "recipes" / "matbench.py"),
               str(REPO_ROOT / "recipes" / "configs" / "matbench_jdft2d_small.yaml"), "--output_dir", str(output),
               "--max_folds", str(n_folds), *options]
    if epochs is not None:
        command += ["--num_train_epochs", str(epochs)]
    print(f"{name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    log = output.with_suffix(".log")
    output.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, check=True)
    results = json.loads((output / "results.json").read_text())
    print(f"{name}: {time.perf_counter() - started:.0f} s (log {log})", flush=True)
    return [fold["mae"] for _, fold in sorted(results["folds"].items())]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="matbench_jdft2d")
    parser.add_argument("--data-file", type=Path,
                        default=REPO_ROOT.parent / "shared/data/structures/matbench/matbench_jdft2d.csv.gz")
    parser.add_argument("--folds", type=int, default=5, help="official folds to run (the first N)")
    parser.add_argument("--epochs", type=int, default=None, help="CLOUD epochs (default: the config's)")
    parser.add_argument("--backbone", default=None, help="a pretrained cloud-hf checkpoint: adds the backbone rows")
    parser.add_argument("--skip-cloud", action="store_true", help="the peers only")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "outputs" / "bench_matbench")
    args = parser.parse_args(argv)
    if not args.data_file.is_file():
        sys.exit(f"{args.data_file} is absent (the MatBench table sits in ../shared/data beside the project)")
    rows = peer_fold_maes(args.task, args.data_file, args.folds)
    if not args.skip_cloud:
        variants = {"CLOUD scratch": [], "CLOUD scratch + descriptors": DESCRIPTOR_OPTIONS}
        if args.backbone:
            variants |= {"CLOUD backbone": ["--checkpoint", args.backbone],
                         "CLOUD backbone + descriptors": ["--checkpoint", args.backbone, *DESCRIPTOR_OPTIONS]}
        for name, options in variants.items():
            folder = args.output / name.lower().replace(" + ", "_").replace(" ", "_")
            rows[name] = cloud_fold_maes(name, folder, options, args.folds, args.epochs)
    metadata, _ = matbench_task(args.task)
    unit = metadata.get("unit") or ""
    print(f"\n{args.task}, test MAE over {args.folds} official fold(s) ({unit}):")
    print(f"{'model':48s} {'mean':>8s} {'std':>7s}  folds")
    for name, maes in sorted(rows.items(), key=lambda item: np.mean(item[1])):
        print(f"{name:48s} {np.mean(maes):8.2f} {np.std(maes):7.2f}  {' '.join(f'{m:.1f}' for m in maes)}")
    for name, value in LEADERBOARD.get(args.task, {}).items():
        print(f"{name:48s} {value:8.2f}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "bench_matbench.json").write_text(json.dumps(
        {"task": args.task, "unit": unit, "folds": args.folds, "epochs": args.epochs,
         "test_mae": {name: {"mean": float(np.mean(m)), "std": float(np.std(m)), "folds": m} for name, m in rows.items()},
         "quoted": LEADERBOARD.get(args.task, {})}, indent=2))
    print(f"written {args.output / 'bench_matbench.json'}")


if __name__ == "__main__":
    main()
