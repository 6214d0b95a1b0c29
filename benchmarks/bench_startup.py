"""Start-up costs of cloud-hf, and the SCOPE map's scaling over worker processes, printed as ratios in one run.

    python benchmarks/bench_startup.py                 # everything (reads ../shared/data for the num_proc part)
    python benchmarks/bench_startup.py --structures 2000 --repeats 3

Rows (each timing is the median of ``--repeats`` fresh Python processes):

* ``import cloud_hf`` against ``import torch, transformers`` and against torch + transformers with
  ``pipeline`` and ``PreTrainedModel`` imported (what registering a model type and a pipeline task needs);
* ``cloud-hf --help``;
* ``cloud-hf predict`` on one CIF file, end to end (bundled model);
* SCOPE encoding of ``--structures`` real CIFs (MP-20 / MPTS-52 / WBM) through ``ScopeEncoder.map_dataset`` with
  ``num_proc=1`` against ``num_proc=2`` (encoder preloaded in the parent, as ``map_dataset`` does before forking).

Timings on a shared machine vary with its load: compare the ratios of one run, and read the load average printed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data" / "structures"
CIF_TABLES = ("mp_20/biternary_val.csv.gz", "mp_20/biternary_test.csv.gz", "mpts_52/test.csv.gz", "wbm/wbm_val.csv.gz")


def wall_time(command: list[str], repeats: int) -> float:
    """Median wall time (s) of running ``command`` ``repeats`` times, each in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def cli(*arguments: str) -> list[str]:
    """The ``cloud-hf`` console script (as a user runs it: the package defers torch to the commands needing it)."""
    script = shutil.which("cloud-hf")
    if script is None:
        raise SystemExit("the cloud-hf console script is not on PATH: pip install -e . first")
    return [script, *arguments]


def read_cifs(limit: int) -> list[str]:
    import csv

    csv.field_size_limit(sys.maxsize)
    cifs: list[str] = []
    for table in CIF_TABLES:
        path = DATA / table
        if not path.is_file():
            continue
        with gzip.open(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                cifs.append(row["cif"])
                if len(cifs) == limit:
                    return cifs
    return cifs


def map_throughput(cifs: list[str], num_proc: int) -> float:
    """Structures/s of ``ScopeEncoder.map_dataset`` with ``num_proc`` workers (the parent already preloaded)."""
    from datasets import Dataset, disable_progress_bars

    from cloud_hf.scope import ScopeEncoder

    disable_progress_bars()
    encoder = ScopeEncoder()
    encoder.preload()
    dataset = Dataset.from_dict({"cif": cifs})
    start = time.perf_counter()
    encoded = encoder.map_dataset(dataset, input_column="cif", num_proc=num_proc if num_proc > 1 else None,
                                  batch_size=100, load_from_cache_file=False)
    elapsed = time.perf_counter() - start
    assert len(encoded) == len(cifs)
    return len(cifs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per timing (median)")
    parser.add_argument("--structures", type=int, default=20_000, help="CIFs for the num_proc comparison (0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of {args.repeats} runs\n")

    bare = wall_time(python("import torch, transformers"), args.repeats)
    with_pipeline = wall_time(
        python("import torch, transformers; from transformers import pipeline, PreTrainedModel"), args.repeats
    )
    package = wall_time(python("import cloud_hf"), args.repeats)
    helped = wall_time(cli("--help"), args.repeats)
    predict = wall_time(cli("predict", "examples/Si_diamond.cif"), args.repeats)
    rows = [
        ("import torch, transformers", bare, 1.0),
        ("import torch, transformers + pipeline, PreTrainedModel", with_pipeline, with_pipeline / bare),
        ("import cloud_hf, vs import torch, transformers", package, package / bare),
        ("import cloud_hf, vs the same + pipeline, PreTrainedModel", package, package / with_pipeline),
        ("cloud-hf --help", helped, None),
        ("cloud-hf predict examples/Si_diamond.cif (end to end)", predict, None),
    ]
    print(f"{'':58s} {'seconds':>8s} {'ratio':>7s}")
    for label, seconds, ratio in rows:
        print(f"{label:58s} {seconds:8.2f} {'' if ratio is None else f'{ratio:7.2f}':>7s}")

    if args.structures:
        cifs = read_cifs(args.structures)
        if not cifs:
            print(f"\nnum_proc comparison skipped: no CIF tables under {DATA}")
            return
        serial = map_throughput(cifs, 1)
        parallel = map_throughput(cifs, 2)
        print(f"\nSCOPE map over {len(cifs):,} CIFs (canonical, moyopy), structures/s")
        print(f"{'num_proc=1':58s} {serial:8.0f} {1.0:7.2f}")
        print(f"{'num_proc=2':58s} {parallel:8.0f} {parallel / serial:7.2f}")


if __name__ == "__main__":
    main()
