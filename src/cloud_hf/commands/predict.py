"""``cloud-hf predict``: crystal properties from CIF/POSCAR files, folders or tables, in one command.

Examples::

    cloud-hf predict examples/                                   # bundled thermodynamics model: C_v, S at 300 K
    cloud-hf predict examples/ --temperatures 100 300 1000 --output predictions.csv --plot cv.png
    cloud-hf predict structures.csv.gz --model outputs/band_gap --output predictions.jsonl

One output row per input crystal, in input order: its values, or the reason it could not be predicted.
The exit code is non-zero only when no crystal at all could be predicted.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from cloud_hf.cli import plain_text
from cloud_hf.commands.outputs import RowWriter, output_path_problem, table_format

TERMINAL_LEFT_OUT = ("internal_energy", "free_energy", "entropy")
"""Properties the terminal table leaves out for width (they are in every ``--output`` file)."""
UNCERTAIN_TERMINAL_LEFT_OUT = ("internal_energy", "free_energy")
"""The same for models that give a std (the thermodynamics ensembles): C_v and S ± std are shown."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cloud-hf predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="predict crystal properties from structure files (bundled θ_D / heat-capacity model by default)",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH",
        help="CIF/POSCAR files, folders of them, or CSV/JSON/JSONL tables (optionally .gz) with a structure column",
    )
    parser.add_argument(
        "--model", default=None,
        help="checkpoint folder or Hub id (default: the thermodynamics model (CloudThermoModel) bundled with cloud-hf)",
    )
    parser.add_argument(
        "--temperatures", type=float, nargs="+", default=None, metavar="K",
        help="temperatures in K for C_v, U, S, F of a thermodynamics or Debye model (default: 300)",
    )
    parser.add_argument("--output", type=Path, default=None,
                        help="write all rows to a .csv, .json or .jsonl file (as they are predicted)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="plot C_v(T) of every predicted crystal to this image (.png, .pdf or .svg)")
    parser.add_argument("--batch-size", type=int, default=32, help="crystals per forward pass (default: 32)")
    parser.add_argument(
        "--input-column", default=None,
        help="structure column of table inputs (default: the first of structure, cif, poscar, atoms)",
    )
    parser.add_argument(
        "--id-column", default=None,
        help="row id column of table inputs, used in the input column of the output (default: id, material_id, ...)",
    )
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every input crystal, print or write one row each and a summary; exit 1 if none succeeded.

    Every argument and output path is checked before any crystal is read (one line on stderr and exit code 2);
    rows are written to ``--output`` as they are predicted, so memory is bounded by a batch, not by the input.
    """
    problems = [output_path_problem(path, option, kind) for path, option, kind in
                ((args.output, "--output", "table"), (args.plot, "--plot", "plot")) if path is not None]
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.temperatures is not None:
        from cloud_hf.errors import CloudDataError
        from cloud_hf.validation import temperature_values

        try:  # checked once, in float64, before any model runs
            args.temperatures = list(temperature_values(args.temperatures, "--temperatures"))
        except CloudDataError as error:
            problems.append(str(error))
    if args.model is not None and looks_like_local_path(args.model) and not Path(args.model).is_dir():
        what = "is a file, not a checkpoint folder" if Path(args.model).exists() else "folder does not exist"
        problems.append(f"cannot load the model {args.model}: the {what}")
    if any(problems):
        print(f"error: {next(problem for problem in problems if problem)}", file=sys.stderr)
        return 2
    from transformers import pipeline

    from cloud_hf.inputs import collect_crystals
    from cloud_hf.pipeline_cloud import BUNDLED_MODEL_DIR, TASK_NAME

    model = str(args.model or BUNDLED_MODEL_DIR)
    try:
        predictor = pipeline(TASK_NAME, model=model)
    except Exception as error:  # a bad checkpoint of any kind: one line, not a traceback
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not Path(model).exists():
            reason += f" (and no local folder {model} exists)"
        print(f"error: cannot load the model {model}: {reason}", file=sys.stderr)
        return 2
    inputs = list(collect_crystals(args.paths, structure_column=args.input_column, id_column=args.id_column))
    call_options = {"batch_size": args.batch_size}
    if args.temperatures is not None:
        call_options["temperatures"] = args.temperatures

    readable = [item for item in inputs if item.error is None]
    predictions = iter(predictor((item.crystal for item in readable), **call_options) if readable else ())
    summaries = []  # per crystal: what the plot and the summary line need (no property grids)
    table_rows = []  # the terminal table (without --output)
    with contextlib.ExitStack() as stack:
        writer = None
        if args.output is not None:
            flat = flatten_result if table_format(args.output) == "csv" else None
            writer = stack.enter_context(RowWriter(args.output, csv_row=flat, complete=lambda row: row["error"] is None))
        progress = stack.enter_context(tqdm(total=len(inputs), desc="Predicting", unit="crystal", file=sys.stderr))
        for item in inputs:
            result = {"input": item.name, **(next(predictions) if item.error is None else failed_result(item.error))}
            if writer is not None:
                writer.write(result)
            else:
                table_rows.append(result)
            summaries.append({**result, "properties": [record for record in result["properties"]
                                                       if record["property"] == "debye_temperature"]})
            progress.update()

    if args.output is not None:
        print(f"wrote {len(summaries)} rows to {args.output}")
    else:
        with_std = any("std" in record for result in table_rows for record in result["properties"])
        leave_out = UNCERTAIN_TERMINAL_LEFT_OUT if with_std else TERMINAL_LEFT_OUT
        print_table([flatten_result(result, leave_out=leave_out, join_std=True) for result in table_rows])
    from cloud_hf.modeling_cloud_thermo import CloudThermoModel  # here: `cloud-hf --help` imports no torch

    if args.plot is not None and isinstance(predictor.model, CloudThermoModel):
        plot_model_curves(predictor, summaries, args.plot, args.temperatures, [item.crystal for item in inputs])
    elif args.plot is not None:
        plot_heat_capacity(summaries, args.plot, args.temperatures)
    n_ok = sum(result["error"] is None for result in summaries)
    print(f"{n_ok} ok, {len(summaries) - n_ok} failed")
    return 0 if n_ok > 0 else 1


def looks_like_local_path(model: str) -> bool:
    """Whether ``--model`` names a local folder rather than a Hub id (``owner/name``): it exists, or is
    absolute, starts with ``.`` or ``~``, or has more than one ``/``."""
    return Path(model).exists() or model.startswith((".", "~", "/")) or model.count("/") > 1 or "\\" in model


def failed_result(error: str) -> dict[str, Any]:
    """A result in the pipeline's format for a crystal that never reached the pipeline."""
    return {"formula": None, "n_atoms": None, "scope": None, "error": error, "properties": []}


def property_column(record: dict[str, Any]) -> str:
    """Column name of a property record: ``heat_capacity@300K [J/(mol·K)]``, ``debye_temperature [K]``."""
    name = record["property"]
    if "temperature" in record:
        name = f"{name}@{record['temperature']:g}K"
    return f"{name} [{record['unit']}]" if record.get("unit") else name


def has_uncertainty(record: dict[str, Any]) -> bool:
    """Whether a record's ``std`` is shown: not for a dimensionless value known exactly (unit ``""``, std 0, such
    as ``unseen_element_share``), which gets neither ``± 0`` nor a ``std`` column."""
    return "std" in record and not (record["std"] == 0 and not record.get("unit"))


def flatten_result(result: dict[str, Any], leave_out: Sequence[str] = (), join_std: bool = False) -> dict[str, Any]:
    """One flat row: input, formula, n_atoms, one column per property (and score, and std), scope, error.

    ``leave_out`` names properties to omit (the terminal table shows θ_D, C_v and S only). A record's ``std``
    gets its own ``... std`` column, or with ``join_std`` is written into the value's cell as ``value ± std``
    (neither where :func:`has_uncertainty` says the value is exact).
    """
    row = {"input": result["input"], "formula": result["formula"], "n_atoms": result["n_atoms"]}
    for record in result["properties"]:
        if record["property"] in leave_out:
            continue
        row[property_column(record)] = record["value"]
        if has_uncertainty(record) and join_std:
            row[property_column(record)] = f"{record['value']:.4g} ± {record['std']:.2g}"
        elif has_uncertainty(record):
            row[f"{property_column(record)} std"] = record["std"]
        if "score" in record:
            row[f"{record['property']}_score"] = record["score"]
    row["scope"] = result["scope"]
    row["error"] = result["error"]
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows as an aligned table: input (file name), formula, property columns, then the error."""
    columns = list(dict.fromkeys(column for row in rows for column in row if column not in ("scope", "error")))
    columns.append("error")
    cells = [[format_cell(column, row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def format_cell(column: str, value: Any) -> str:
    """Text of one table cell: 4 significant digits for floats, file names without their folder."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if column == "input" and Path(str(value)).is_file():
        return Path(str(value)).name
    return str(value)


def plot_heat_capacity(results: list[dict[str, Any]], path: Path, temperatures: Sequence[float] | None) -> None:
    """Plot C_v(T) and U(T) of every crystal with a predicted θ_D (``cloud_hf.plotting.plot_thermo_curves``).

    The curves run from 1 K to 1.5 × the highest of 1000 K and the requested temperatures.
    """
    import torch

    from cloud_hf.plotting import plot_thermo_curves

    theta_by_crystal, atoms_by_crystal = {}, {}
    for row, result in enumerate(results, start=1):
        theta = next((r["value"] for r in result["properties"] if r["property"] == "debye_temperature"), None)
        if theta is None or not math.isfinite(theta):
            continue
        name = f"{row}. {result['formula']} ({Path(result['input']).name})"  # row numbers keep names unique
        theta_by_crystal[name], atoms_by_crystal[name] = theta, result["n_atoms"]
    if not theta_by_crystal:
        print(f"no θ_D predicted: {path} not written (the model must be a CloudDebyeModel)")
        return
    top = 1.5 * max([1000.0, *(temperatures or [])])
    grid = torch.linspace(1.0, top, 400, dtype=torch.float64)
    plot_thermo_curves(theta_by_crystal, atoms_by_crystal, temperatures=grid, path=path)
    print(f"wrote C_v(T) and U(T) curves to {path}")


def plot_model_curves(predictor: Any, results: list[dict[str, Any]], path: Path,
                      temperatures: Sequence[float] | None, crystals_in: Sequence[Any] | None = None) -> None:
    """Plot a thermodynamics model's per-atom C_v(T) with its ±2σ band beside its predicted DOS
    (``cloud_hf.plotting.plot_model_thermo``), from 1 K to 1.5 × the highest of 1000 K and the requested ones.
    ``crystals_in``: the crystals of ``results`` (same order), read again for a model with structure features."""
    import torch

    from cloud_hf.plotting import plot_model_thermo

    predicted = [(row, result) for row, result in enumerate(results, start=1) if result["error"] is None]
    crystals = [(f"{row}. {result['formula']} ({Path(result['input']).name})", result["scope"], result["n_atoms"])
                for row, result in predicted]
    if not crystals:
        print(f"no crystal predicted: {path} not written")
        return
    features = {}  # a model that reads structure features: the processor computes them again from the inputs
    if predictor.processor.feature_input_names:
        batch = predictor.processor([crystals_in[row - 1] for row, _ in predicted], return_tensors="pt")
        features = {name: batch[name] for name in predictor.processor.feature_input_names}
    top = 1.5 * max([1000.0, *(temperatures or [])])
    plot_model_thermo(predictor.model, predictor.tokenizer, crystals, path,
                      temperatures=torch.linspace(1.0, top, 300), features=features)
    print(f"wrote per-atom C_v(T) with ±2σ bands and the predicted DOS to {path}")
