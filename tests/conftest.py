"""Shared fixtures: the real data beside the project (``../shared/data``), skipped where absent."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLOUD_HF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test with a reason where it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the project only for developers and CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_data(shared_data: Path) -> Path:
    """Path of ``../shared/data/reference`` (the CLOUD paper's published example data)."""
    path = shared_data / "reference"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def reference_scope_strings(reference_data: Path) -> list[str]:
    """Every reference SCOPE string of ``../shared/data/reference/*.csv`` (pretraining, dielectric, C_v), in file order."""
    strings: list[str] = []
    for path in sorted(reference_data.glob("*.csv")):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            column = "cloud" if "cloud" in reader.fieldnames else "scope"
            strings.extend(row[column] for row in reader)
    return strings


@pytest.fixture(scope="module")
def canonical_tokenizer():
    """A canonical-SCOPE tokenizer over the full canonical vocabulary, 32 positions (built, no files read)."""
    from cloud_hf.scope import ScopeEncoder, canonical_vocabulary
    from cloud_hf.tokenization_cloud import CloudTokenizerFast

    return CloudTokenizerFast.from_scope_vocabulary(canonical_vocabulary(), ScopeEncoder().to_dict(),
                                                    model_max_length=32)
