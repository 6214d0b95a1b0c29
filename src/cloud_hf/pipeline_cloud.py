"""The ``crystal-property-prediction`` pipeline: crystals in, properties with their units out.

```python
import cloud_hf  # registers the task with transformers
from transformers import pipeline

predictor = pipeline("crystal-property-prediction", model=cloud_hf.BUNDLED_MODEL_DIR)
results = predictor(["examples/Si_diamond.cif", "examples/CsCl.cif"], temperatures=[100, 300], batch_size=8)
```

Every input gives exactly one result, in input order. A crystal that cannot be encoded (unreadable file,
disordered sites, a molecule, a SCOPE string longer than the model's positions, ...) gives a result whose
``error`` names the input and the reason; the other crystals of the batch are predicted as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, Pipeline, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY

import cloud_hf.registration  # noqa: F401  (the auto classes the pipeline loads checkpoints through)
from cloud_hf.errors import CloudConfigError
from cloud_hf.processing_cloud import PROCESSOR_CONFIG_FILE, CloudProcessor
from cloud_hf.property_heads import PROPERTY_HEADS, prediction_inputs, property_model_class, property_records
from cloud_hf.validation import temperature_values

TASK_NAME = "crystal-property-prediction"

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "bundled"
#: The shipped pre-trained encoder (a ``CloudForMaskedLM``, multi-task pre-trained): a ``--checkpoint`` to start from.
BUNDLED_BACKBONE_DIR = BUNDLED_MODEL_DIR / "backbone"
"""The small CloudThermoModel (a 5-member DOS-head ensemble trained on phonon DOS) shipped inside the package;
the default model."""

DEFAULT_TEMPERATURES = (300.0,)
"""Temperatures (K) at which temperature-dependent properties are reported by default."""

TEMPERATURES_PER_CALL = 256
"""Most temperatures evaluated in one model call; a longer list runs in chunks (the encoder again for each, a few
ms), so that memory and time per crystal stay linear in the number of temperatures (one call at 16,000 K values
held (batch, members, temperatures, modes) tensors of hundreds of MB and took 3× longer per temperature)."""

class AutoModelForCrystalPropertyPrediction:
    """Loads a crystal-property checkpoint with the head it was saved with (``config.architectures``).

    A CLOUD checkpoint may hold a regression, classification or Debye head on the same ``cloud`` config
    type, so the head is chosen by the architecture recorded in ``config.json``, never by trial loading.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args: Any, **kwargs: Any) -> PreTrainedModel:
        """Instantiate the recorded head class from a folder or Hub id (keyword arguments as ``from_pretrained``,
        including ``allow_pickle``)."""
        config = kwargs.pop("config", None)
        if config is None:
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        architectures = list(config.architectures or [])
        for name in architectures:
            if name in PROPERTY_HEADS:
                return property_model_class(name).from_pretrained(
                    pretrained_model_name_or_path, *model_args, config=config, **kwargs
                )
        raise CloudConfigError(
            f"{pretrained_model_name_or_path} records architectures {architectures}; the {TASK_NAME} pipeline "
            f"needs one of {sorted(PROPERTY_HEADS)}"
        )


class CrystalPropertyPredictionPipeline(Pipeline):
    """Predict crystal properties from structures with a CLOUD checkpoint.

    Inputs: a pymatgen ``Structure``, an ASE ``Atoms``, a pymatgen structure dict, CIF text, a path to a
    CIF/POSCAR file, or a list of these. A [`CloudProcessor`] (the checkpoint's own, or one rebuilt from its
    ``config.scope``) turns each crystal into model inputs (the tokens and the structure features the head reads,
    whatever the processor returns); the model runs with them and the extra inputs its head asks for
    (:func:`cloud_hf.property_heads.prediction_inputs`) and its outputs read as property records
    (:func:`cloud_hf.property_heads.property_records`).

    Each crystal gives a dict::

        {"formula": "Si", "n_atoms": 2, "scope": "cF m-3m SG227 Si 8a", "error": None,
         "properties": [{"property": "debye_temperature", "value": 612.0, "unit": "K"},
                        {"property": "heat_capacity", "temperature": 300.0, "value": 39.8, "unit": "J/(mol·K)"},
                        ...]}

    For a [`CloudDebyeModel`] the properties are θ_D (K) and, at each of ``temperatures`` (K, default 300),
    the heat capacity C_v, internal energy U, vibrational entropy S and Helmholtz free energy F, per mole of
    the cell as given (``n_atoms`` atoms), plus ``heat_capacity_per_atom`` (J/(mol·K) per mole of atoms).
    For a [`CloudForRegression`] they are the checkpoint's ``target_names`` with ``target_units``; for a
    [`CloudForClassification`] the predicted ``label`` with its ``score``. When a crystal fails, ``error``
    holds the reason and ``properties`` is empty.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self.model).__name__ not in PROPERTY_HEADS:
            raise CloudConfigError(
                f"the {TASK_NAME} pipeline needs one of {sorted(PROPERTY_HEADS)}, "
                f"got {type(self.model).__name__}"
            )
        if not isinstance(self.processor, CloudProcessor):
            self.processor = self._checkpoint_processor()

    def _checkpoint_processor(self) -> CloudProcessor:
        """The checkpoint's saved processor, or one rebuilt from its ``config.scope`` and tokenizer."""
        folder = Path(str(getattr(self.model, "name_or_path", "") or ""))
        if (folder / PROCESSOR_CONFIG_FILE).is_file():
            processor = CloudProcessor.from_pretrained(folder)
            processor.tokenizer = self.tokenizer
            return processor
        return CloudProcessor.for_model(self.model.config, self.tokenizer)

    def _sanitize_parameters(
        self, temperatures: Any = None, **unused: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"unexpected argument(s) for the {TASK_NAME} pipeline: {sorted(unused)}")
        forward_params = {}
        if temperatures is not None:
            forward_params["temperatures"] = validate_temperatures(temperatures)
        return {}, forward_params, {}

    def __call__(self, inputs: Any, **kwargs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict one crystal (returns a dict) or a list/tuple of crystals (returns a list, same order).

        Keyword arguments: ``temperatures`` (K, for temperature-dependent heads), ``batch_size``, ``num_workers``.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def preprocess(self, crystal: Any) -> dict[str, Any]:
        """One crystal through the processor; an encoding failure is recorded in ``error`` instead of raised."""
        batch = self.processor([crystal], return_tensors="pt")
        (encoding,) = batch.crystals
        return {
            **{name: batch[name] for name in self.processor.model_input_names},  # tokens and structure features
            "n_atoms": batch.n_atoms,
            "formula": encoding.formula,
            "scope": encoding.scope,
            "error": encoding.error,
        }

    def _forward(
        self, model_inputs: dict[str, Any], temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    ) -> dict[str, Any]:
        """Run the model on the encoded crystals of the batch and read each crystal's property records."""
        errors = model_inputs["error"] if isinstance(model_inputs["error"], list) else [model_inputs["error"]]
        n_atoms = model_inputs["n_atoms"]
        records: list[list[dict[str, Any]]] = [[] for _ in errors]
        encoded = [row for row, error in enumerate(errors) if error is None]
        if encoded:  # failed crystals' placeholder rows are left out: they would only widen the padding
            rows = torch.tensor(encoded, dtype=torch.long)
            inputs = {name: model_inputs[name][rows] for name in self.processor.model_input_names}
            atoms = n_atoms[rows]
            parts = []  # per chunk of temperatures: each crystal's records
            for start in range(0, len(temperatures), TEMPERATURES_PER_CALL):
                chunk = temperatures[start:start + TEMPERATURES_PER_CALL]
                outputs = self.model(**inputs, **prediction_inputs(self.model, atoms, chunk))
                parts.append(property_records(self.model, outputs, atoms.tolist(), chunk))
                if not any("temperature" in record for record in parts[0][0]):
                    break  # a head whose properties do not depend on temperature: one call
            for row, crystal_parts in zip(encoded, zip(*parts)):
                records[row] = join_temperature_chunks(list(crystal_parts))
        # metadata passes through unchanged (a value for one crystal, a list for a batch); the records travel in
        # an opaque box, which transformers does not walk looking for tensors (a million records at 10k temperatures)
        return {  # n_atoms first: transformers reads the batch size from the first value
            "n_atoms": n_atoms,
            "properties": _Records(records if isinstance(model_inputs["error"], list) else records[0]),
            "formula": model_inputs["formula"],
            "scope": model_inputs["scope"],
            "error": model_inputs["error"],
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, Any]:
        """One crystal's result: formula, atom count, SCOPE string, error, and property records."""
        failed = model_outputs["error"] is not None
        return {
            "formula": model_outputs["formula"],
            "n_atoms": None if failed else int(model_outputs["n_atoms"].reshape(-1)[0]),
            "scope": model_outputs["scope"],
            "error": model_outputs["error"],
            "properties": [] if failed else model_outputs["properties"].records,
        }


class _Records:
    """Property records passing from ``_forward`` to ``postprocess`` unopened (transformers' device transfer walks
    every list and dict of a model output; records hold no tensors)."""

    def __init__(self, records: list) -> None:
        self.records = records

    def __getitem__(self, index: int) -> _Records:  # transformers unbatches outputs crystal by crystal
        return _Records(self.records[index])

    def __len__(self) -> int:
        return len(self.records)


def join_temperature_chunks(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One crystal's records from the records of successive chunks of temperatures: the temperature-dependent ones
    of every chunk in order, between the temperature-independent ones of the first chunk that come before them
    (e.g. a Debye θ_D) and after them (e.g. an AGL θ_D), as one call at all temperatures gives them."""
    first = parts[0]
    dependent = [index for index, record in enumerate(first) if "temperature" in record]
    if len(parts) == 1 or not dependent:
        return first
    middle = [record for part in parts for record in part if "temperature" in record]
    return first[:dependent[0]] + middle + first[dependent[-1] + 1:]


def validate_temperatures(temperatures: Any) -> tuple[float, ...]:
    """Temperatures (K) as a tuple of floats: a real number or a 1-D array-like, checked in float64 before the model
    runs (:func:`cloud_hf.validation.temperature_values`); :class:`CloudDataError` otherwise."""
    return temperature_values(temperatures, "temperatures")


PIPELINE_REGISTRY.register_pipeline(
    TASK_NAME,
    pipeline_class=CrystalPropertyPredictionPipeline,
    pt_model=AutoModelForCrystalPropertyPrediction,
    default={"model": (str(BUNDLED_MODEL_DIR), None)},
)

__all__ = [
    "BUNDLED_BACKBONE_DIR",
    "BUNDLED_MODEL_DIR",
    "TASK_NAME",
    "AutoModelForCrystalPropertyPrediction",
    "CrystalPropertyPredictionPipeline",
]
