"""``CloudProcessor``: crystals in, model inputs out — the one home of the SCOPE settings, the length check and the
unknown-token policy.

```python
from transformers import AutoProcessor
import cloud_hf

processor = AutoProcessor.from_pretrained(cloud_hf.BUNDLED_MODEL_DIR)   # a CloudProcessor
batch = processor(["examples/Si_diamond.cif", "not_a_file.cif"], padding=True, return_tensors="pt")
batch["input_ids"].shape        # (2, L): one row per crystal, in input order
batch.errors                    # [None, 'not_a_file.cif: no such file, and not CIF text']
batch.scopes, batch.n_atoms     # SCOPE strings read by the model; atoms per cell (tensor)
```

A crystal that cannot be encoded keeps its row: a two-token ``[CLS] [SEP]`` placeholder the model can run on, with
the reason in ``batch.errors``; its outputs mean nothing and are dropped by the pipeline.

Settings: ``scope`` (``ScopeEncoder.to_dict()``, how crystals are written as SCOPE strings), ``max_length`` (the
model's positions, [CLS] and [SEP] included) and ``structure_features`` (the registered features of
:mod:`cloud_hf.features` the batch also carries, each under its model input name, e.g. the cell descriptors as
``cell_features``, with the version each was computed with) are saved in ``processor_config.json`` beside the
tokenizer files.
A checkpoint without that file (older cloud-hf checkpoints, the converted reference) loads through a processor
rebuilt from its ``config.json`` (``scope``, ``max_position_embeddings``, the features its head reads), or from the
tokenizer's recorded settings.

Unknown-token policy (one policy everywhere): a SCOPE string with a token outside the tokenizer's vocabulary, or with
more tokens than ``max_length``, is an error for that crystal (:class:`cloud_hf.errors.CrystalInputError`), never a
silent ``[UNK]`` or a truncated string.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from transformers import BatchEncoding
from transformers.processing_utils import ProcessorMixin

from cloud_hf.configuration_cloud import CELL_DESCRIPTORS_FEATURE, CloudConfig
from cloud_hf.errors import CloudConfigError, CrystalInputError
from cloud_hf.features import StructureFeature, feature_values, get_features

PROCESSOR_CONFIG_FILE = "processor_config.json"


@dataclass(frozen=True)
class CrystalEncoding:
    """What the processor made of one input: its SCOPE string, reduced formula, atoms per cell and its structure
    features by model input name, or the error."""

    scope: str | None = None
    formula: str | None = None
    n_atoms: int | None = None
    error: str | None = None
    features: Mapping[str, tuple[float, ...]] | None = None


class CrystalBatch(BatchEncoding):
    """Model inputs (``input_ids``, ``attention_mask``), one row per input crystal, plus per-crystal metadata.

    ``model(**batch)`` runs on every row; rows whose ``errors`` entry is not None are placeholders.
    """

    def __init__(self, data: dict[str, Any], crystals: Sequence[CrystalEncoding], tensor_type: str | None = None):
        super().__init__(data, tensor_type=tensor_type)
        self.crystals = list(crystals)

    @property
    def errors(self) -> list[str | None]:
        """Per crystal: None, or why it could not be encoded (naming the input)."""
        return [crystal.error for crystal in self.crystals]

    @property
    def scopes(self) -> list[str | None]:
        """Per crystal: the SCOPE string the model reads (None for a failed crystal)."""
        return [crystal.scope for crystal in self.crystals]

    @property
    def formulas(self) -> list[str | None]:
        """Per crystal: the reduced formula, e.g. ``"SrTiO3"`` (None for a failed crystal)."""
        return [crystal.formula for crystal in self.crystals]

    @property
    def n_atoms(self) -> Any:
        """Atoms per cell as given, ``(batch,)`` (a tensor with ``return_tensors="pt"``); 1 for a failed crystal."""
        counts = [crystal.n_atoms or 1 for crystal in self.crystals]
        if isinstance(self["input_ids"], list):
            return counts
        import torch

        return torch.tensor(counts, dtype=torch.long, device=self["input_ids"].device)


class CloudProcessor(ProcessorMixin):
    """Turns crystals (pymatgen ``Structure``, ASE ``Atoms``, pymatgen dicts, CIF/POSCAR text, file paths) or ready
    SCOPE strings into CLOUD model inputs.

    Args:
        tokenizer ([`CloudTokenizerFast`]): the checkpoint's tokenizer.
        scope (`dict`, *optional*): ``ScopeEncoder.to_dict()`` settings; defaults to the tokenizer's recorded ones.
        max_length (`int`, *optional*): longest token sequence the model reads ([CLS]/[SEP] included); defaults to
            the tokenizer's ``model_max_length``.
        structure_features (`list[str]` or `dict[str, int]`, *optional*): registered features
            ([`cloud_hf.features`]) to return too, each under its input name `(batch, size)`; as a dict, the
            version each must have (a saved processor records them). A SCOPE string has no cell, so ``scopes=`` rows
            are then errors, and so is a cell a feature's check refuses (the cell descriptors refuse vacuum,
            [`cloud_hf.cell_descriptors.check_bulk_cell`]).
        cell_features (`bool`, *optional*, defaults to `False`): also return the cell descriptors (``cell_features``
            `(batch, 4)`, [`cloud_hf.cell_descriptors.cell_descriptors`]), first; how processors saved before
            ``structure_features`` record them.
    """

    tokenizer_class = "CloudTokenizerFast"

    def __init__(self, tokenizer: Any = None, scope: dict[str, Any] | None = None, max_length: int | None = None,
                 structure_features: Sequence[str] | Mapping[str, int] | None = None, cell_features: bool = False):
        if scope is None and tokenizer is not None:
            scope = tokenizer.scope_config
        if max_length is None and tokenizer is not None:
            max_length = int(tokenizer.model_max_length)
        self.scope = dict(scope) if scope is not None else None
        self.max_length = max_length
        self.structure_features = feature_versions(structure_features, cell_features)
        super().__init__(tokenizer)

    # --- loading -------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> CloudProcessor:
        """Load from a folder or Hub id; without a ``processor_config.json`` the processor is rebuilt from the
        checkpoint's ``config.json`` (see [`for_model`])."""
        folder = Path(pretrained_model_name_or_path)
        if folder.is_dir() and not (folder / PROCESSOR_CONFIG_FILE).is_file():
            from transformers import AutoConfig, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            config = AutoConfig.from_pretrained(folder) if (folder / "config.json").is_file() else None
            return cls.for_model(config, tokenizer)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def for_model(cls, config: Any, tokenizer: Any) -> CloudProcessor:
        """The processor of a checkpoint that records no processor: SCOPE settings from ``config.scope`` (else the
        tokenizer's), ``max_length`` from ``config.max_position_embeddings``, the structure features its head reads
        (``config.structure_feature_names``)."""
        cloud = config if isinstance(config, CloudConfig) else None
        scope = (cloud.scope if cloud is not None else None) or tokenizer.scope_config
        if scope is None:
            raise CrystalInputError(
                "the checkpoint records no SCOPE settings (config.scope or the tokenizer's 'scope'); cannot encode crystals"
            )
        max_length = cloud.max_position_embeddings if cloud is not None else None
        features = cloud.structure_feature_names if cloud is not None else []
        return cls(tokenizer, scope=scope, max_length=max_length, structure_features=features)

    # --- structure features --------------------------------------------------------------------------------

    @property
    def features(self) -> list[StructureFeature]:
        """The registered features this processor computes, in order."""
        return get_features(self.structure_features)

    @property
    def feature_input_names(self) -> list[str]:
        """The model inputs of :attr:`features` (e.g. ``["cell_features"]``), in order."""
        return [feature.input_name for feature in self.features]

    @property
    def cell_features(self) -> bool:
        """Whether the batch carries the cell descriptors (``cell_features``)."""
        return CELL_DESCRIPTORS_FEATURE in self.structure_features

    # --- encoding ------------------------------------------------------------------------------------

    @cached_property
    def scope_encoder(self) -> Any:
        """The ``ScopeEncoder`` of ``self.scope``."""
        from cloud_hf.scope import ScopeEncoder

        if self.scope is None:
            raise CrystalInputError("this processor records no SCOPE settings; cannot encode crystals")
        return ScopeEncoder.from_dict(self.scope)

    def encode_crystal(self, crystal: Any, name: str | None = None) -> CrystalEncoding:
        """SCOPE string, formula, atom count (and structure features) of one crystal; ``CrystalInputError`` naming
        the input otherwise."""
        from cloud_hf.structures import load_cell

        encoder = self.scope_encoder
        cell = load_cell(crystal, name=name, min_distance=encoder.min_distance)
        values = feature_values(self.features, cell)  # e.g. the cell descriptors refuse a cell with vacuum
        # Canonical SCOPE ignores site order, so the cell read and validated above is encoded as is (each file read
        # and checked once); reference SCOPE follows pymatgen's site order, so the encoder reads the input as the
        # reference does.
        scope = encoder.encode_validated_cell(cell) if encoder.mode == "canonical" else encoder.encode(crystal, name=name)
        return CrystalEncoding(scope=scope, formula=reduced_formula(cell.atomic_numbers), n_atoms=len(cell),
                               features=values)

    def token_ids(self, scope: str, name: str | None = None) -> list[int]:
        """Token ids of a SCOPE string ([CLS]/[SEP] included), checked by [`check_token_ids`]."""
        # verbose=False: transformers' "indexing errors" warning is not printed for a string refused just below
        input_ids = self.tokenizer(scope, verbose=False)["input_ids"]
        self.check_token_ids(scope, input_ids, name=name)
        return input_ids

    def check_token_ids(self, scope: str, input_ids: Sequence[int], name: str | None = None) -> None:
        """The length check and the unknown-token policy: ``CrystalInputError`` when the model cannot read the
        string as it is (more tokens than ``max_length``, or a token outside the vocabulary)."""
        prefix = f"{name}: " if name else ""
        if self.max_length is not None and len(input_ids) > self.max_length:
            raise CrystalInputError(
                f"{prefix}{len(input_ids)} tokens, longer than the model's {self.max_length} positions "
                f"(SCOPE string '{scope}')"
            )
        unknown_id = self.tokenizer.unk_token_id
        if unknown_id is not None and unknown_id in input_ids:
            unknown = [token for token in scope.split() if self.tokenizer.convert_tokens_to_ids(token) == unknown_id]
            raise CrystalInputError(f"{prefix}SCOPE string '{scope}' has token(s) {unknown} outside the model's vocabulary")

    def __call__(
        self,
        crystals: Any = None,
        scopes: Sequence[str] | None = None,
        padding: bool | str = True,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> CrystalBatch:
        """Model inputs for a crystal or a list of crystals (or for ready SCOPE strings, ``scopes=``).

        Every input gives one row, in order; failures are kept per crystal (``batch.errors``), never raised.
        ``padding`` and ``return_tensors`` are as for the tokenizer (right padding).
        """
        if kwargs:
            raise TypeError(f"unexpected argument(s) for CloudProcessor: {sorted(kwargs)}")
        if (crystals is None) == (scopes is None):
            raise TypeError("pass crystals or scopes= (ready SCOPE strings), not both")
        rows: list[list[int]] = []
        encodings: list[CrystalEncoding] = []
        features = self.features
        items = scopes if scopes is not None else (crystals if isinstance(crystals, (list, tuple)) else [crystals])
        for item in items:
            try:
                if scopes is not None and features:
                    read = ", ".join(f"{feature.description} ({feature.input_name})" for feature in features)
                    raise CrystalInputError(f"SCOPE string '{item}': this model also reads the crystal's {read}, "
                                            "which a SCOPE string does not give; pass the structure")
                encoding = CrystalEncoding(scope=item) if scopes is not None else self.encode_crystal(item)
                rows.append(self.token_ids(encoding.scope))
            except Exception as error:  # one bad crystal never takes the batch down: its error fills its slot
                encoding = CrystalEncoding(error=describe_error(error))
                rows.append(self.tokenizer.build_inputs_with_special_tokens([]))
            encodings.append(encoding)
        padded = dict(self.tokenizer.pad({"input_ids": rows}, padding=padding, return_attention_mask=True))
        for feature in features:  # a failed crystal's placeholder row: zeros (its outputs are dropped)
            padded[feature.input_name] = [list(encoding.features[feature.input_name] if encoding.features
                                               else [0.0] * feature.size) for encoding in encodings]
        return CrystalBatch(padded, encodings, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *self.feature_input_names]


def feature_versions(names: Sequence[str] | Mapping[str, int] | None, cell_features: bool = False) -> dict[str, int]:
    """``{feature name: version}`` of the features a processor computes: the registered version of each name, or
    of each given ``{name: version}``, which must be the registered one; the cell descriptors first with
    ``cell_features``. :class:`CloudConfigError` for an unregistered name or another version."""
    given = dict(names) if isinstance(names, Mapping) else dict.fromkeys(names or [])
    if cell_features:
        given = {CELL_DESCRIPTORS_FEATURE: given.pop(CELL_DESCRIPTORS_FEATURE, None), **given}
    versions = {}
    for feature in get_features(given):
        version = given[feature.name]
        if version is not None and int(version) != feature.version:
            raise CloudConfigError(
                f"this processor computes structure feature {feature.name!r} at version {version}, but the registered "
                f"definition is version {feature.version}: its model was trained on other numbers")
        versions[feature.name] = feature.version
    return versions


def describe_error(error: Exception) -> str:
    """The message of an encoding failure; unexpected exception types keep their class name."""
    if isinstance(error, CrystalInputError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def reduced_formula(atomic_numbers: Sequence[int]) -> str:
    """Reduced chemical formula (pymatgen's convention, e.g. ``"SrTiO3"``) of a list of atomic numbers."""
    from collections import Counter

    from pymatgen.core.composition import reduce_formula

    from cloud_hf.composition import quiet_missing_electronegativity
    from cloud_hf.structures import element_symbols

    symbols = element_symbols()
    with quiet_missing_electronegativity():  # pymatgen orders the symbols by electronegativity: NaN for Ar, ...
        formula, _ = reduce_formula(Counter(symbols[int(number)] for number in atomic_numbers))
    return formula


__all__ = ["CloudProcessor", "CrystalBatch", "CrystalEncoding"]
