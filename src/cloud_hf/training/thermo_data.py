"""Training examples and batches of the thermodynamics recipe: phonon crystals and AGL θ_D rows, padded and stacked.

Each example carries every label of the multi-fidelity set, NaN where its source gives none (the heads' losses skip
NaN): ``heat_capacity_labels`` and ``entropy_labels`` at the label temperatures, ``dos_labels`` on the DOS head's
grid, ``agl_theta_labels``; and the structure features the model to be trained reads (:mod:`cloud_hf.features`,
each under its model input name, e.g. ``cell_features``), which the collator passes on.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel

from cloud_hf.errors import CloudConfigError
from cloud_hf.features import input_names
from cloud_hf.phonons import BadPhononRow, PhononCrystals, PhononTable
from cloud_hf.processing_cloud import CloudProcessor
from cloud_hf.training.data import scope_encoder_for
from cloud_hf.units import per_cell

logger = logging.getLogger("cloud_hf.training.thermo")


def crystal_processor(tokenizer: Any, features: Sequence[str] = ()) -> CloudProcessor:
    """The [`CloudProcessor`] of ``tokenizer``: its recorded SCOPE encoder (canonical by default), its length and
    unknown-token checks, so training reads crystals exactly as the pipeline does; with the structure features
    ``features`` (a model's ``config.structure_feature_names``)."""
    return CloudProcessor(tokenizer, scope=scope_encoder_for(tokenizer).to_dict(), structure_features=list(features))


def encode_crystals(tokenizer: Any, cifs: Sequence[str], names: Sequence[str], features: Sequence[str] = (),
                    ) -> tuple[list[list[int]], dict[str, np.ndarray]]:
    """Token ids of each crystal's SCOPE string and its structure features ``features`` by model input name,
    `(n, size)` float32 each, through the tokenizer's processor (errors name the crystal)."""
    processor = crystal_processor(tokenizer, features)
    ids, values = [], {name: [] for name in processor.feature_input_names}
    for cif, name in zip(cifs, names):
        encoding = processor.encode_crystal(cif, name=name)
        ids.append(processor.token_ids(encoding.scope, name=name))
        for input_name, rows in values.items():
            rows.append(encoding.features[input_name])
    return ids, {input_name: np.asarray(rows, dtype=np.float32).reshape(len(ids), -1)
                 for input_name, rows in values.items()}


def stacked_features(examples: Sequence[Mapping[str, Any]], features: Sequence[str]) -> dict[str, np.ndarray]:
    """The structure features ``features`` of ``examples``, stacked by model input name, `(n, size)` each (as
    :func:`encode_crystals` gives them)."""
    return {name: np.stack([example[name] for example in examples]) for name in input_names(features)}


def pad_token_ids(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of ``sequences`` right-padded to the longest, ``(batch, length)`` long."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(list(ids))
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def _nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


def phonon_examples(table: PhononTable, tokenizer: Any, labels: Sequence[str], temperatures: Sequence[float],
                    features: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Training examples of phonon crystals with the chosen label sources (others NaN) and the structure features
    ``features``; temperatures in K."""
    heat, entropy = table.thermo_labels(temperatures)
    per_atom_dos = table.per_atom_dos()[:, 1:]  # the DOS head's grid starts at the first bin (20 cm⁻¹)
    ids, values = encode_crystals(tokenizer, table.cifs, table.mp_ids, features)
    column_300 = list(temperatures).index(300.0) if 300.0 in temperatures else None
    if "cv_300" in labels and column_300 is None:
        raise CloudConfigError("label source cv_300 needs 300 K among label_temperatures")
    examples = []
    for row in range(len(table)):
        heat_labels = heat[row].astype(np.float32) if "cv_curve" in labels else _nan(len(temperatures))
        if "cv_300" in labels and "cv_curve" not in labels:
            heat_labels[column_300] = table.cv_label_300[row]
        examples.append({
            "input_ids": ids[row], "n_atoms": float(table.n_atoms[row]),
            **{name: rows[row] for name, rows in values.items()},
            "heat_capacity_labels": heat_labels,
            "entropy_labels": entropy[row].astype(np.float32) if "entropy" in labels else _nan(len(temperatures)),
            "dos_labels": per_atom_dos[row].astype(np.float32) if "dos" in labels else _nan(per_atom_dos.shape[1]),
            "agl_theta_labels": np.float32(np.nan),
        })
    return examples


def _encoding_cache(processor: CloudProcessor, cache_dir: str | Path | None) -> tuple[Path | None, dict[str, Any]]:
    """The cache file of ``processor``'s encodings (keyed by its vocabulary, SCOPE settings and structure features
    with their versions, whose checks decide which crystals fail) and its content."""
    if cache_dir is None:
        return None, {}
    key = json.dumps([sorted(processor.tokenizer.get_vocab().items()), processor.scope, processor.structure_features],
                     sort_keys=True)
    path = Path(cache_dir) / f"crystal_encodings_{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    return path, (json.loads(path.read_text()) if path.is_file() else {})


def crystal_examples(crystals: PhononCrystals, tokenizer: Any, labels: Sequence[str],
                     sources: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                     features: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[BadPhononRow]]:
    """Training examples of the phonon crystals of every source (:func:`cloud_hf.phonons.load_phonon_crystals`):
    labels per cell (the table's per-atom labels times ``n_atoms``) at the table's label temperatures, NaN where the
    source gives none or ``labels`` leaves it out; ``source_ids`` index ``sources`` (when given); the structure
    features ``features``. A crystal that cannot be encoded is a bad row (with its id and reason), not an example.
    With ``cache_dir``, each crystal's token ids and structure features (or its error) are kept in a JSON file
    there, keyed by source, id and the CIF's hash (encoding takes ~60 ms per phonondb crystal: 9 minutes for the
    table)."""
    processor = crystal_processor(tokenizer, features)
    cache_path, cache = _encoding_cache(processor, cache_dir)
    cached = len(cache)
    examples, bad = [], []
    for row, (crystal_id, cif) in enumerate(zip(crystals.ids, crystals.cifs)):
        key = f"{crystals.sources[row]}:{crystal_id}:{hashlib.sha256(cif.encode()).hexdigest()[:16]}"
        if key not in cache:
            try:
                encoding = processor.encode_crystal(cif, name=crystal_id)
                cache[key] = {"input_ids": processor.token_ids(encoding.scope, name=crystal_id),
                              **{name: list(values) for name, values in encoding.features.items()}}
            except Exception as error:  # any failure of one crystal stays in its row of the report
                cache[key] = {"error": f"{type(error).__name__}: {error}"}
        encoded = cache[key]
        if "error" in encoded:
            bad.append(BadPhononRow(crystals.sources[row], "", row, crystal_id, encoded["error"]))
            continue
        atoms = float(crystals.n_atoms[row])
        example = {
            "input_ids": encoded["input_ids"], "n_atoms": atoms,
            **{name: np.asarray(encoded[name], dtype=np.float32) for name in processor.feature_input_names},
            "heat_capacity_labels": per_cell(crystals.heat_capacity[row], atoms).astype(np.float32) if "cv_curve" in labels
            else _nan(len(crystals.temperatures)),
            "entropy_labels": per_cell(crystals.entropy[row], atoms).astype(np.float32) if "entropy" in labels
            else _nan(len(crystals.temperatures)),
            "dos_labels": crystals.dos[row].astype(np.float32) if "dos" in labels else _nan(len(crystals.frequencies)),
            "agl_theta_labels": np.float32(np.nan), "row": row,
        }
        if sources is not None:
            example["source_ids"] = sources.index(crystals.sources[row])
        examples.append(example)
    if cache_path is not None and len(cache) > cached:  # rewritten only when a crystal was encoded anew
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))
    return examples, bad


def agl_examples(path: str | Path, tokenizer: Any, n_temperatures: int, n_frequencies: int,
                 max_rows: int | None = None, features: Sequence[str] = ()) -> list[dict[str, Any]]:
    """AFLOW AGL θ_D rows (structures that encode; the others are skipped with a count in the log) with the
    structure features ``features``."""
    frame = pd.read_csv(path)
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    processor = crystal_processor(tokenizer, features)
    examples, skipped = [], 0
    for index, (cif, theta) in enumerate(zip(frame["cif"], frame["debye_temperature"])):
        name = f"{path}:{index}"
        try:
            encoding = processor.encode_crystal(cif, name=name)
            input_ids = processor.token_ids(encoding.scope, name=name)
        except Exception:  # a row that cannot be encoded is left out of this auxiliary source
            skipped += 1
            continue
        examples.append({
            "input_ids": input_ids, "n_atoms": float(encoding.n_atoms),
            **{name: np.asarray(values, dtype=np.float32) for name, values in encoding.features.items()},
            "heat_capacity_labels": _nan(n_temperatures), "entropy_labels": _nan(n_temperatures),
            "dos_labels": _nan(n_frequencies), "agl_theta_labels": np.float32(theta),
        })
    logger.info("AGL θ_D rows: %d used, %d not encodable", len(examples), skipped)
    return examples


class ThermoCollator:
    """Pads token ids and stacks labels and structure features; adds the label temperatures and each member's
    bootstrap weights.

    Only the keyword arguments the model's ``forward`` accepts are passed (CloudDebyeModel takes no S or DOS), and
    the structure features its config declares.
    """

    def __init__(self, pad_token_id: int, temperatures: Sequence[float], model: PreTrainedModel,
                 members: int = 1, bootstrap: bool = False, seed: int = 0):
        self.pad_token_id = pad_token_id
        self.temperatures = torch.tensor(list(temperatures), dtype=torch.float32)
        self.accepted = (set(inspect.signature(model.forward).parameters)
                         | set(input_names(model.config.structure_feature_names)))
        self.members = members
        self.bootstrap = bootstrap
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_token_ids([example["input_ids"] for example in examples], self.pad_token_id)
        batch: dict[str, torch.Tensor] = {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "n_atoms": torch.tensor([example["n_atoms"] for example in examples]),
            "temperature": self.temperatures.expand(len(examples), -1),
        }
        for name in examples[0]:  # labels and structure features, as arrays per example
            if name in self.accepted and name not in batch and name != "source_ids":
                batch[name] = torch.as_tensor(np.stack([example[name] for example in examples]))
        if "source_ids" in examples[0]:
            batch["source_ids"] = torch.tensor([example.get("source_ids", 0) for example in examples])
        if self.bootstrap and self.members > 1:
            rates = torch.ones(len(examples), self.members)
            batch["member_weights"] = torch.poisson(rates, generator=self.generator)
        return {name: value for name, value in batch.items() if name in self.accepted}


__all__ = ["ThermoCollator", "agl_examples", "crystal_examples", "crystal_processor", "encode_crystals", "pad_token_ids",
           "phonon_examples", "stacked_features"]
