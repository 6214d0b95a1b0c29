"""Peak memory of the pretraining corpus path, old (pandas → lists → ``Dataset.from_dict``, a Python set) vs new
(chunked reading into a memory-mapped Arrow file, digest de-duplication), at 100k and 1M rows.

Two corpora of each size are built from real data beside the project (``../shared/data``), in ``--workdir``:

- ``cif``: real CIFs (MP-20, WBM, MPTS-52, perov-5, carbon-24 tables) repeated to the size; every other repeat of
  a CIF has its ``data_`` block renamed, so about half the rows are distinct. The step measured is the first
  of ``recipes/pretrain_mlm.py``'s: read the table, drop duplicate structures. (SCOPE-encoding a million
  structures takes hours on two cores, so it is not part of the run.)
- ``scope``: the 10,000 real reference SCOPE strings of ``reference/pretrain_cloud_10k.csv`` repeated the same
  way (a repeat made distinct by one or two extra Wyckoff tokens). The steps measured are the recipe's
  last ones: read, drop duplicate strings, tokenize them (the reference tokenizer, 64 positions), split off
  the bad rows (strings too long for the model).

Each (corpus, size, path) runs in a fresh process that prints its peak resident memory
(``resource.getrusage(...).ru_maxrss``) and its peak anonymous memory (``RssAnon`` of ``/proc/self/status``,
sampled every 10 ms). The resident peak of the new path also counts the pages of the memory-mapped Arrow files
it has read (page cache the kernel can drop at any time); the anonymous peak is the memory that can run out.

    python benchmarks/bench_corpus_memory.py                          # 100k and 1M rows (several minutes)
    python benchmarks/bench_corpus_memory.py --sizes 20000 100000    # a quicker look
    python benchmarks/bench_corpus_memory.py --corpora scope          # one corpus only
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIF_TABLES = ("mp_20/biternary_val.csv.gz", "wbm/wbm_val.csv.gz", "mpts_52/val.csv.gz", "perov_5/val.csv.gz",
              "carbon_24/val.csv.gz")
SCOPE_TABLE = "reference/pretrain_cloud_10k.csv"
REFERENCE_TOKENIZER = "reference/tokenizer"
MAX_LENGTH = 64


# ----------------------------------------------------------------------------------------------------
# corpora
# ----------------------------------------------------------------------------------------------------


def real_cifs(data: Path) -> list[str]:
    """The CIF column of every table in :data:`CIF_TABLES` present under ``data``."""
    csv.field_size_limit(sys.maxsize)
    cifs: list[str] = []
    for name in CIF_TABLES:
        path = data / "structures" / name
        if path.is_file():
            with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
                cifs.extend(row["cif"] for row in csv.DictReader(handle))
    return cifs


def real_scopes(data: Path) -> list[str]:
    """The 10,000 reference SCOPE strings of :data:`SCOPE_TABLE`."""
    with open(data / SCOPE_TABLE, newline="", encoding="utf-8") as handle:
        return [row["cloud"] for row in csv.DictReader(handle)]


def cif_rows(cifs: list[str], size: int) -> Iterator[str]:
    """``size`` CIFs: the real ones repeated, every other repeat's ``data_`` block renamed (a distinct text)."""
    for index in range(size):
        copy, text = divmod(index, len(cifs))
        text = cifs[text]
        if copy % 2:
            head, _, rest = text.partition("\n")
            text = f"{head}_r{copy}\n{rest}"
        yield text


def scope_rows(scopes: list[str], size: int) -> Iterator[str]:
    """``size`` SCOPE strings: the real ones repeated, every other repeat given one or two extra Wyckoff tokens."""
    wyckoffs = sorted({token for scope in scopes for token in scope.split(" | ")[1].split()})
    for index in range(size):
        copy, text = divmod(index, len(scopes))
        text = scopes[text]
        if copy % 2:
            variant = copy // 2
            extra = [wyckoffs[variant % len(wyckoffs)]]
            if variant >= len(wyckoffs):
                extra.append(wyckoffs[variant // len(wyckoffs) % len(wyckoffs)])
            symmetry, sites, composition = text.split(" | ")
            text = f"{symmetry} | {sites} {' '.join(extra)} | {composition}"
        yield text


def build_corpus(kind: str, size: int, data: Path, workdir: Path) -> Path:
    """``workdir/KIND_SIZE.csv`` (``material_id`` and ``cif`` or ``scope``), written once."""
    path = workdir / f"{kind}_{size}.csv"
    if path.is_file():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    texts = cif_rows(real_cifs(data), size) if kind == "cif" else scope_rows(real_scopes(data), size)
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["material_id", kind])
        writer.writerows((f"bench-{index}", text) for index, text in enumerate(texts))
    partial.rename(path)
    return path


# ----------------------------------------------------------------------------------------------------
# the two paths (run in a child process)
# ----------------------------------------------------------------------------------------------------


def old_read_table(path: Path, text_column: str, output_column: str) -> Any:
    """``read_table`` as it was: the whole file into pandas, every column into Python lists, ``Dataset.from_dict``."""
    import datasets
    import pandas as pd

    from cloud_hf.data import _id_text, _structure_to_text, unique_ids

    frame = pd.read_csv(path, dtype={"material_id": str})
    n_rows = len(frame)
    errors: list[str | None] = [None] * n_rows
    texts = [_structure_to_text(value) for value in frame[text_column]]
    for index, text in enumerate(texts):
        if text is None or not text.strip():
            errors[index] = f"empty {text_column!r} cell"
    table = {"id": unique_ids([_id_text(value) for value in frame["material_id"]]), "row": list(range(n_rows)),
             "source": [str(path)] * n_rows, output_column: texts, "error": errors}
    features = datasets.Features({name: datasets.Value("int64" if name == "row" else "string") for name in table})
    return datasets.Dataset.from_dict(table, features=features)


def old_drop_duplicates(dataset: Any, column: str) -> Any:
    """``drop_duplicates`` as it was: a Python set of every value (the code ``cloud_hf.data`` keeps for columns that
    are not text)."""
    from cloud_hf.data import _drop_duplicate_values

    return _drop_duplicate_values(dataset, column)


def old_split_bad_rows(dataset: Any) -> tuple[Any, Any]:
    """``split_bad_rows`` as it was: the error column as one Python list."""
    errors = dataset["error"]
    return (dataset.select([i for i, error in enumerate(errors) if error is None]),
            dataset.select([i for i, error in enumerate(errors) if error is not None]))


class AnonymousPeak:
    """The largest ``RssAnon`` of this process seen by a sampling thread (every 10 ms), in MiB."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("RssAnon:"):
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                        break
            self._stop.wait(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def child(kind: str, approach: str, corpus: Path, data: Path) -> None:
    """Run one path on one corpus and print a JSON line: row counts, seconds, peak memory (MiB)."""
    peak = AnonymousPeak()
    import datasets

    from cloud_hf import data as cloud_data

    datasets.disable_progress_bars()
    started = time.perf_counter()
    column = "structure" if kind == "cif" else "scope"
    if approach == "old":
        table = old_read_table(corpus, kind, column)
        distinct = old_drop_duplicates(table, column)
    else:
        table = cloud_data.read_table(corpus, **({} if kind == "cif" else {"scope_column": "scope"}))
        distinct = cloud_data.drop_duplicates(table, column)
    result: dict[str, Any] = {"rows": len(table), "distinct": len(distinct)}
    if kind == "scope":
        from cloud_hf.tokenization_cloud import CloudTokenizerFast

        tokenizer = CloudTokenizerFast.from_reference_files(data / REFERENCE_TOKENIZER)
        tokens = cloud_data.add_token_columns(distinct, tokenizer, MAX_LENGTH)
        good, bad = old_split_bad_rows(tokens) if approach == "old" else cloud_data.split_bad_rows(tokens)
        result.update(good=len(good), bad=len(bad))
    result["seconds"] = time.perf_counter() - started
    result["anon_mib"] = peak.stop()
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(kind: str, approach: str, corpus: Path, data: Path) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter; its JSON line."""
    command = [sys.executable, __file__, "--child", kind, approach, str(corpus), "--data", str(data)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="corpus rows")
    parser.add_argument("--corpora", nargs="+", choices=("cif", "scope"), default=["cif", "scope"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/bench_corpus_memory"),
                        help="where the corpora are written (kept for the next run)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "APPROACH", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, approach, corpus = args.child
        child(kind, approach, Path(corpus), args.data)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    header = (f"{'corpus':>6} {'rows':>9} {'distinct':>9} {'path':>4} {'peak RSS MiB':>13} {'peak anon MiB':>14} "
              f"{'seconds':>8}")
    print(header)
    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    for kind in args.corpora:
        for size in args.sizes:
            corpus = build_corpus(kind, size, args.data, args.workdir)
            for approach in ("old", "new"):
                result = results[kind, size, approach] = run_child(kind, approach, corpus, args.data)
                print(f"{kind:>6} {result['rows']:>9,} {result['distinct']:>9,} {approach:>4} "
                      f"{result['maxrss_mib']:>13,.0f} {result['anon_mib']:>14,.0f} {result['seconds']:>8.1f}",
                      flush=True)
            old, new = results[kind, size, "old"], results[kind, size, "new"]
            same = {key: old[key] for key in ("rows", "distinct", "good", "bad") if key in old}
            assert same == {key: new[key] for key in same}, f"old and new paths disagree: {old} vs {new}"
            print(f"{'':>6} {'':>9} {'':>9} {'old/new':>4} {old['maxrss_mib'] / new['maxrss_mib']:>12.1f}× "
                  f"{old['anon_mib'] / new['anon_mib']:>13.1f}×", flush=True)
    if len(args.sizes) > 1:
        small, large = min(args.sizes), max(args.sizes)
        print(f"\ngrowth of the peak from {small:,} to {large:,} rows ({large / small:.0f}× the rows):")
        for kind in args.corpora:
            for approach in ("old", "new"):
                a, b = results[kind, small, approach], results[kind, large, approach]
                print(f"  {kind:>5} {approach}: RSS ×{b['maxrss_mib'] / a['maxrss_mib']:.1f}, "
                      f"anonymous ×{b['anon_mib'] / a['anon_mib']:.1f}")


if __name__ == "__main__":
    main()
