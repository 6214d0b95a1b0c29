"""Per-atom heat-capacity accuracy of CLOUD thermodynamics models against two peers, on the phonon crystals of
every source (Petretto, phonondb, JARVIS metals).

    OMP_NUM_THREADS=1 python benchmarks/bench_thermo.py [--model DIR ...] [--output outputs/bench_thermo] [--quick]

The crystals are ``cloud_hf.phonons.load_phonon_crystals`` (phonondb crystals with more than
``--max-imaginary-fraction`` imaginary modes left out, by default the package's rule), split by
``crystals_splits`` (the committed test ids of every source; validation seed 0). The two peers of
:mod:`thermo_peers` (the GB peer on composition + space group, the strong HGB peer on composition, cell
descriptors and space group) are trained here, one regressor per label
column (by default on every non-test crystal, as the bundled final fit; ``--validation-rows``: the training carve of
a validation run); each ``--model`` folder (default: the bundled model; repeatable) is only evaluated. Every row is scored on
the test crystals, in the splits of :func:`test_splits`:

* the random test split per source: phonondb non-metals, Petretto (its 160 original test ids, and every Petretto
  test row), JARVIS metals, the all-metal crystals of any source, and all test rows;
* a shifted split: test crystals unlike the training set, those with an element present in fewer than 1 % of the
  training crystals, and the metals.

Metrics, J/(mol·K) per mole of atoms: C_v MAE at every label temperature with labels (tables at 50, 100, 200,
300, 500, 800 K) and S(300 K) MAE; for models with a std, the share of truths within ±1σ and ±2σ; the ten worst
elements (C_v(300 K) MAE over the test crystals containing the element, at least ``--min-element-count`` of
them) for the first model and the strong peer; and peer MAE / model MAE per temperature. It prints the tables and
writes ``bench_thermo.json`` and ``bench_thermo.png`` (C_v MAE against temperature, one panel per split) under
``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_hf.phonons import (
    DEFAULT_TEST_IDS_FILE,
    UNSTABLE_IMAGINARY_FRACTION,
    PhononCrystals,
    crystals_splits,
    load_phonon_crystals,
    read_split_ids,
)
from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR
from thermo_peers import (
    PEERS,
    S_TEMPERATURE,
    column_mae,
    fit_peer,
    peer_features,
    peer_labels,
    predict_peer,
)

TABLE_TEMPERATURES = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0)
"""The C_v columns of the printed tables, K (the JSON has every label temperature)."""
RARE_ELEMENT_SHARE = 0.01
"""An element in fewer than this share of the training crystals makes a test crystal part of the shifted split."""
PLOT_SPLITS = ("phonondb non-metals", "Petretto (160 original test ids)", "metals (all sources)", "shifted")
STRONG_PEER = next(iter(PEERS))
QUICK_TRAIN_ROWS = 400
QUICK_TEST_STRIDE = 4


@dataclass
class Row:
    """One model's or peer's test predictions, per atom, in the columns of ``thermo_peers.peer_labels``."""

    name: str
    predicted: np.ndarray
    """``(n_test, n_T + 1)``: C_v at every label temperature, then S(300 K), J/(mol·K) per mole of atoms; NaN rows
    for crystals the model could not read."""
    std: np.ndarray | None = None
    """Same shape, the model's 1σ, or None."""
    unreadable: int = 0
    """Test crystals the model could not encode (left out of its scores)."""
    seconds: float = 0.0
    """Training (peers) or prediction (models) time, s."""


def test_splits(train: PhononCrystals, test: PhononCrystals, petretto_test_ids: set[str],
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The scored subsets of ``test`` (name → ``(n_test,)`` bool) and the rare elements that define the shifted
    split (in fewer than :data:`RARE_ELEMENT_SHARE` of the training crystals, or absent from them)."""
    train_elements = train.elements()
    counts = Counter(element for elements in train_elements for element in elements)
    test_elements = test.elements()
    present = sorted({element for elements in test_elements for element in elements})
    rare = [element for element in present if counts[element] < RARE_ELEMENT_SHARE * len(train)]
    has_rare = np.array([bool(elements & set(rare)) for elements in test_elements], dtype=bool)
    petretto = test.source_mask("petretto")
    splits = {
        "phonondb non-metals": test.source_mask("phonondb") & ~test.all_metal,
        "Petretto (160 original test ids)": petretto & np.isin(test.ids, sorted(petretto_test_ids)),
        "Petretto (all test rows)": petretto,
        "JARVIS metals": test.source_mask("jarvis"),
        "metals (all sources)": test.all_metal.copy(),
        "shifted": has_rare | test.all_metal,
        "all test rows": np.ones(len(test), dtype=bool),
    }
    return splits, rare


def train_peers(train: PhononCrystals, test: PhononCrystals) -> tuple[list[Row], dict]:
    """Both peers trained on ``train`` and their test rows; and the feature extraction's report."""
    started = time.perf_counter()
    features = peer_features(PhononCrystals.concatenate([train, test]), progress=True)
    extraction = {"seconds_this_run": time.perf_counter() - started, "cached": features.cached,
                  "seconds_when_made": features.seconds, "seconds_per_crystal": features.per_crystal_seconds,
                  "failures": features.failures}
    train_features, test_features = features.select(range(len(train))), features.select(
        range(len(train), len(train) + len(test)))
    labels = peer_labels(train)
    rows = []
    for name in PEERS:
        started = time.perf_counter()
        model = fit_peer(name, train_features, labels)
        rows.append(Row(name, predict_peer(name, model, test_features), seconds=time.perf_counter() - started))
        print(f"{name}: trained on {len(train)} rows in {rows[-1].seconds:.0f} s", flush=True)
    return rows, extraction


def model_labels(folders: list[Path]) -> list[str]:
    """A distinct name per model folder: its last part, or the path as given where two share it (then a number)."""
    names = [folder.name for folder in folders]
    names = [str(folder) if names.count(name) > 1 else name for folder, name in zip(folders, names)]
    return [f"{name} #{index + 1}" if names.count(name) > 1 else name for index, name in enumerate(names)]


def model_row(folder: Path, test: PhononCrystals, label: str) -> Row:
    """A CLOUD thermodynamics model folder's test predictions (per atom, with its std where it has one), named
    ``label`` and the model's head; crystals that fail to encode are counted and left as NaN rows."""
    from transformers import AutoTokenizer

    from cloud_hf.modeling_cloud_thermo import CloudThermoModel
    from cloud_hf.training.thermo_data import crystal_examples
    from cloud_hf.training.thermo_evaluation import crystal_prediction

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = CloudThermoModel.from_pretrained(folder)
    examples, unreadable = crystal_examples(  # the recipe's encoding, errors per crystal
        test, tokenizer, labels=[], features=model.config.structure_feature_names)
    for bad in unreadable:
        logging.getLogger(__name__).warning("%s: %s: %s", folder.name, bad.id, bad.reason)
    prediction = crystal_prediction(model, examples, test, test.temperatures.tolist())  # per atom, NaN unread
    s_column = test.label_column(S_TEMPERATURE)

    def per_atom(heat: str, entropy: str) -> np.ndarray:
        return np.column_stack([prediction[heat], prediction[entropy][:, s_column]])

    config = model.config
    name = f"{label} ({config.thermo_members} × {config.thermo_head})"
    std = per_atom("heat_capacity_std", "entropy_std")
    spread = bool(examples) and np.nanmax(std) > 0
    return Row(name, per_atom("heat_capacity", "entropy"), std if spread else None, unreadable=len(unreadable),
               seconds=time.perf_counter() - started)


def coverage(row: Row, truth: np.ndarray, rows: np.ndarray, sigmas: float) -> np.ndarray:
    """Share of the finite truths of ``rows`` within ±``sigmas``·σ of the prediction, per column (NaN where none)."""
    ratio = np.abs(row.predicted[rows] - truth[rows]) / np.maximum(row.std[rows], 1e-12)
    counts = np.isfinite(ratio).sum(0)
    return np.where(counts > 0, (np.nan_to_num(ratio, nan=np.inf) <= sigmas).sum(0) / np.maximum(counts, 1), np.nan)


def worst_elements(row: Row, truth: np.ndarray, test: PhononCrystals, minimum: int, count: int = 10,
                   ) -> list[dict]:
    """The ``count`` elements with the largest C_v(300 K) MAE over the test crystals containing them (at least
    ``minimum`` scored crystals), with their MAE (J/(mol·K) per atom) and crystal counts."""
    column = test.label_column(300.0)
    error = np.abs(row.predicted[:, column] - truth[:, column])
    per_element: dict[str, list[float]] = {}
    for elements, value in zip(test.elements(), error):
        if np.isfinite(value):
            for element in elements:
                per_element.setdefault(element, []).append(float(value))
    ranked = sorted(((float(np.mean(values)), element, len(values)) for element, values in per_element.items()
                     if len(values) >= minimum), reverse=True)
    return [{"element": element, "mae_300K": mae, "crystals": n} for mae, element, n in ranked[:count]]


def score(rows: list[Row], truth: np.ndarray, splits: dict[str, np.ndarray], temperatures: np.ndarray) -> dict:
    """Per row and split: n, MAE per column (C_v at each temperature, S last) over the rows with that label and over
    the rows with every label (``mae_curves``: the same crystals at every temperature), labelled counts, ±1σ/±2σ
    coverage."""
    report: dict[str, dict] = {}
    for row in rows:
        report[row.name] = {}
        for split, mask in splits.items():
            scored = mask & np.isfinite(row.predicted).all(1)
            curves = scored & np.isfinite(truth).all(1)
            entry = {"n": int(scored.sum()),
                     "labelled": np.isfinite(truth[scored]).sum(0).tolist(),
                     "mae": column_mae(row.predicted[scored], truth[scored]).tolist(),
                     "mae_curves": column_mae(row.predicted[curves], truth[curves]).tolist()}
            if row.std is not None:
                entry["within_1sigma"] = coverage(row, truth, scored, 1.0).tolist()
                entry["within_2sigma"] = coverage(row, truth, scored, 2.0).tolist()
            report[row.name][split] = entry
    report["columns"] = [*(f"cv_{t:g}K" for t in temperatures), f"s_{S_TEMPERATURE:g}K"]
    return report


def table_columns(temperatures: np.ndarray) -> list[int]:
    """Indices of :data:`TABLE_TEMPERATURES` among the label columns, then the S column."""
    return [int(np.flatnonzero(np.isclose(temperatures, t))[0]) for t in TABLE_TEMPERATURES] + [len(temperatures)]


def markdown(header: list[str], lines: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
                      *("| " + " | ".join(line) + " |" for line in lines)])


def number(value: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def print_tables(report: dict, rows: list[Row], splits: dict[str, np.ndarray], temperatures: np.ndarray,
                 worst: dict[str, list[dict]]) -> None:
    """The MAE table per split, the calibration of models with a std, the worst elements and the peer ratios."""
    columns = table_columns(temperatures)
    names = [*(f"C_v {t:g} K" for t in TABLE_TEMPERATURES), "S 300 K"]
    for split in splits:
        lines = [[row.name, f"{report[row.name][split]['n']} ({report[row.name][split]['labelled'][columns[0]]})",
                  *(number(report[row.name][split]["mae"][c]) for c in columns)] for row in rows]
        print(f"\n{split}: per-atom MAE, J/(mol·K)\n" + markdown(["model", "n (with curves)", *names], lines))
    calibrated = [row for row in rows if row.std is not None]
    if calibrated:
        lines = [[row.name, split, *(f"{number(report[row.name][split]['within_1sigma'][c], 2)} / "
                                      f"{number(report[row.name][split]['within_2sigma'][c], 2)}" for c in columns)]
                 for row in calibrated for split in splits]
        print("\ncalibration: share of truths within ±1σ / ±2σ\n" + markdown(["model", "split", *names], lines))
    for name, elements in worst.items():
        lines = [[entry["element"], number(entry["mae_300K"]), str(entry["crystals"])] for entry in elements]
        print(f"\n{name}: the ten worst elements, C_v(300 K) MAE per atom over the test crystals containing them\n"
              + markdown(["element", "MAE 300 K", "crystals"], lines))
    models = [row for row in rows if row.name not in PEERS]
    for model in models:
        lines = []
        for peer in PEERS:
            for split in splits:
                ratio = np.asarray(report[peer][split]["mae"]) / np.asarray(report[model.name][split]["mae"])
                lines.append([peer, split, *(number(ratio[c], 2) for c in columns)])
        print(f"\npeer MAE / {model.name} MAE (above 1: the model is better)\n"
              + markdown(["peer", "split", *names], lines))


def plot_errors(report: dict, rows: list[Row], temperatures: np.ndarray, path: Path) -> None:
    """Per-atom C_v MAE against temperature, one panel per :data:`PLOT_SPLITS`, one line per model or peer: the
    line over the crystals with C_v at every temperature, a star at 300 K over every crystal with that label (those
    with C_v(300 K) only too: JARVIS metals, Petretto crystals with modes above its grid)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 8.5), layout="constrained")
    panels = figure.subplots(2, 2, sharex=True).ravel()
    column = int(np.flatnonzero(np.isclose(temperatures, 300.0))[0])
    for axes, split in zip(panels, PLOT_SPLITS):
        first = report[rows[0].name][split]
        for index, row in enumerate(rows):
            entry = report[row.name][split]
            axes.plot(temperatures, entry["mae_curves"][: len(temperatures)], marker="o", markersize=3,
                      color=f"C{index}", label=row.name)
            axes.plot([300.0], [entry["mae"][column]], marker="*", markersize=12, color=f"C{index}", linestyle="")
        axes.set(title=f"{split}: {first['labelled'][0]} with curves, {first['labelled'][column]} at 300 K (★)",
                 xlabel="T (K)", ylabel="per-atom $C_V$ MAE (J/(mol·K))", yscale="log")
    panels[0].legend(fontsize="small")
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "--ensemble", dest="models", action="append", type=Path,
                        help="a CLOUD thermodynamics model folder to evaluate (repeatable; default: the bundled one)")
    parser.add_argument("--output", default="outputs/bench_thermo")
    parser.add_argument("--max-imaginary-fraction", type=float, default=UNSTABLE_IMAGINARY_FRACTION,
                        help="leave out phonondb crystals with more imaginary modes than this (negative: keep all)")
    parser.add_argument("--min-element-count", type=int, default=5,
                        help="the worst-element table counts elements in at least this many test crystals")
    parser.add_argument("--validation-rows", action="store_true",
                        help="train the peers on the training carve only (as a validation run's model); default: "
                             "on every non-test crystal, the rows of a final fit such as the bundled model")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_TRAIN_ROWS} training rows, every {QUICK_TEST_STRIDE}th test row")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    models = arguments.models or [BUNDLED_MODEL_DIR]

    crystals, bad = load_phonon_crystals(
        max_imaginary_fraction=None if arguments.max_imaginary_fraction < 0 else arguments.max_imaginary_fraction)
    train, validation, test = crystals_splits(crystals, validation_fraction=0.1, seed=0)
    if not arguments.validation_rows:  # the bundled model is a final fit: every non-test crystal trained it
        train = PhononCrystals.concatenate([train, validation])
    if arguments.quick:
        train = train.select(sorted(np.random.default_rng(0).choice(len(train), QUICK_TRAIN_ROWS, replace=False)))
        test = test.select(range(0, len(test), QUICK_TEST_STRIDE))
    splits, rare = test_splits(train, test, set(read_split_ids(DEFAULT_TEST_IDS_FILE)))
    print(f"{len(crystals)} crystals ({len(bad)} rows left out or bad); train {len(train)} "
          f"({dict(Counter(train.sources))}), test {len(test)} ({dict(Counter(test.sources))})")
    print(f"shifted split: {int(splits['shifted'].sum())} test crystals ({int(test.all_metal.sum())} metals); rare "
          f"elements (< {RARE_ELEMENT_SHARE:.0%} of the training crystals): {' '.join(rare)}")

    peers, extraction = train_peers(train, test)
    print(f"peer features: {extraction['seconds_this_run']:.1f} s this run"
          f"{' (read from the cache)' if extraction['cached'] else ''}; the extraction that made them took "
          f"{extraction['seconds_when_made']:.0f} s, {1000 * extraction['seconds_per_crystal']:.0f} ms a crystal; "
          f"{len(extraction['failures'])} failed parts", flush=True)
    rows = []
    for folder, label in zip(models, model_labels(models)):
        rows.append(model_row(folder, test, label))
        print(f"{rows[-1].name}: predicted {len(test) - rows[-1].unreadable} test crystals in {rows[-1].seconds:.0f} "
              f"s; {rows[-1].unreadable} could not be encoded", flush=True)
    rows += peers  # the models first, then the peers

    truth = peer_labels(test)
    report = score(rows, truth, splits, test.temperatures)
    worst = {row.name: worst_elements(row, truth, test, arguments.min_element_count)
             for row in (rows[0], next(row for row in rows if row.name == STRONG_PEER))}
    print_tables(report, rows, splits, test.temperatures, worst)
    (output / "bench_thermo.json").write_text(json.dumps({
        "scores": report, "worst_elements": worst, "temperatures": test.temperatures.tolist(),
        "n_train": len(train), "n_test": len(test), "quick": arguments.quick,
        "max_imaginary_fraction": arguments.max_imaginary_fraction, "rare_elements": rare,
        "split_sizes": {name: int(mask.sum()) for name, mask in splits.items()},
        "unreadable": {row.name: row.unreadable for row in rows}, "seconds": {row.name: row.seconds for row in rows},
        "peer_features": extraction,
    }, indent=1, ensure_ascii=False))
    plot_errors(report, rows, test.temperatures, output / "bench_thermo.png")
    print(f"\nwrote {output / 'bench_thermo.json'} and {output / 'bench_thermo.png'}")


if __name__ == "__main__":
    main()
