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

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pymatgen.core.composition import reduce_formula
from transformers import AutoConfig, Pipeline, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY

from cloud_hf.modeling_cloud import CloudForClassification, CloudForRegression
from cloud_hf.modeling_cloud_debye import CloudDebyeModel
from cloud_hf.modeling_cloud_thermo import CloudThermoModel
from cloud_hf.scope import ScopeEncoder, ScopeError
from cloud_hf.structures import element_symbols, load_cell

TASK_NAME = "crystal-property-prediction"

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "bundled"
"""The small CloudThermoModel (a 5-member DOS-head ensemble trained on phonon DOS) shipped inside the package."""

DEFAULT_TEMPERATURES = (300.0,)
"""Temperatures (K) at which a CloudDebyeModel's thermodynamic functions are reported by default."""

# Units of the CloudDebyeModel outputs: per mole of the crystal's cell as given (n_atoms atoms).
DEBYE_THERMO_UNITS = {
    "heat_capacity": "J/(mol·K)",
    "internal_energy": "J/mol",
    "free_energy": "J/mol",
    "entropy": "J/(mol·K)",
}

PROPERTY_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    model_class.__name__: model_class
    for model_class in (CloudThermoModel, CloudDebyeModel, CloudForRegression, CloudForClassification)
}


class AutoModelForCrystalPropertyPrediction:
    """Loads a crystal-property checkpoint with the head it was saved with (``config.architectures``).

    A CLOUD checkpoint may hold a regression, classification or Debye head on the same ``cloud`` config
    type, so the head is chosen by the architecture recorded in ``config.json``, never by trial loading.
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args: Any, **kwargs: Any) -> PreTrainedModel:
        """Instantiate the recorded head class from a folder or Hub id (keyword arguments as ``from_pretrained``)."""
        config = kwargs.pop("config", None)
        if config is None:
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        architectures = list(config.architectures or [])
        for name in architectures:
            if name in PROPERTY_MODEL_CLASSES:
                return PROPERTY_MODEL_CLASSES[name].from_pretrained(
                    pretrained_model_name_or_path, *model_args, config=config, **kwargs
                )
        raise ValueError(
            f"{pretrained_model_name_or_path} records architectures {architectures}; the {TASK_NAME} pipeline "
            f"needs one of {sorted(PROPERTY_MODEL_CLASSES)}"
        )


class CrystalPropertyPredictionPipeline(Pipeline):
    """Predict crystal properties from structures with a CLOUD checkpoint.

    Inputs: a pymatgen ``Structure``, an ASE ``Atoms``, a pymatgen structure dict, CIF text, a path to a
    CIF/POSCAR file, or a list of these. The crystal is encoded to SCOPE with the settings recorded in the
    checkpoint (``config.scope``), tokenized, and run through the model.

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
        if not isinstance(self.model, tuple(PROPERTY_MODEL_CLASSES.values())):
            raise ValueError(
                f"the {TASK_NAME} pipeline needs one of {sorted(PROPERTY_MODEL_CLASSES)}, "
                f"got {type(self.model).__name__}"
            )
        model_settings = getattr(self.model.config, "scope", None)
        tokenizer_settings = getattr(self.tokenizer, "scope_config", None)
        if not (model_settings or tokenizer_settings):
            raise ValueError("the checkpoint records no SCOPE settings (config.scope); cannot encode crystals")
        self.scope_encoder = ScopeEncoder.from_dict(model_settings or tokenizer_settings)
        if tokenizer_settings and ScopeEncoder.from_dict(tokenizer_settings) != self.scope_encoder:
            raise ValueError(
                f"the model was trained on SCOPE {model_settings} but the tokenizer was built for {tokenizer_settings}"
            )

    def _sanitize_parameters(
        self, temperatures: Sequence[float] | float | None = None, **unused: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if unused:
            raise TypeError(f"unexpected argument(s) for the {TASK_NAME} pipeline: {sorted(unused)}")
        forward_params = {}
        if temperatures is not None:
            forward_params["temperatures"] = validate_temperatures(temperatures)
        return {}, forward_params, {}

    def __call__(self, inputs: Any, **kwargs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict one crystal (returns a dict) or a list/tuple of crystals (returns a list, same order).

        Keyword arguments: ``temperatures`` (K, CloudDebyeModel only), ``batch_size``, ``num_workers``.
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, list) and not inputs:
            return []
        return super().__call__(inputs, **kwargs)

    def preprocess(self, crystal: Any) -> dict[str, Any]:
        """Encode one crystal to token ids; an encoding failure is recorded in ``error`` instead of raised."""
        try:
            cell = load_cell(crystal, min_distance=self.scope_encoder.min_distance)
            # Canonical SCOPE ignores site order, so the cell read above is encoded as is (each file read once);
            # reference SCOPE follows pymatgen's site order, so the encoder reads the input as the reference does.
            scope = self.scope_encoder.encode(cell if self.scope_encoder.mode == "canonical" else crystal)
            input_ids = self._token_ids(scope)
        except Exception as error:  # one bad crystal never takes the batch down: its error fills its slot
            return self._failed_crystal(describe_error(error))
        return {
            "input_ids": torch.tensor([input_ids]),
            "attention_mask": torch.ones(1, len(input_ids), dtype=torch.long),
            "n_atoms": torch.tensor([len(cell)], dtype=torch.long),
            "formula": reduced_formula(cell.atomic_numbers),
            "scope": scope,
            "error": None,
        }

    def _token_ids(self, scope: str) -> list[int]:
        """Token ids of a SCOPE string, [CLS]/[SEP] included; a ``ScopeError`` when the model cannot read it."""
        input_ids = self.tokenizer(scope)["input_ids"]
        max_positions = self.model.config.max_position_embeddings
        if len(input_ids) > max_positions:
            raise ScopeError(
                f"SCOPE string '{scope}' has {len(input_ids)} tokens, more than the model's {max_positions} positions"
            )
        unknown_id = self.tokenizer.unk_token_id
        if unknown_id is not None and unknown_id in input_ids:
            unknown = [token for token in scope.split() if self.tokenizer.convert_tokens_to_ids(token) == unknown_id]
            raise ScopeError(f"SCOPE string '{scope}' has token(s) {unknown} outside the model's vocabulary")
        return input_ids

    def _failed_crystal(self, error: str) -> dict[str, Any]:
        """Model inputs standing in for a crystal that could not be encoded (one [PAD], masked out)."""
        return {
            "input_ids": torch.tensor([[self.tokenizer.pad_token_id]]),
            "attention_mask": torch.zeros(1, 1, dtype=torch.long),
            "n_atoms": torch.zeros(1, dtype=torch.long),
            "formula": None,
            "scope": None,
            "error": error,
        }

    def _forward(self, model_inputs: dict[str, Any], temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES) -> dict[str, Any]:
        """Run the model on the encodable crystals of the batch; failed rows get NaN outputs."""
        input_ids = model_inputs["input_ids"]
        batch_size = input_ids.shape[0]
        errors = model_inputs["error"] if isinstance(model_inputs["error"], list) else [model_inputs["error"]]
        encoded_rows = torch.tensor([index for index, error in enumerate(errors) if error is None], dtype=torch.long)
        if hasattr(self.model, "property_records"):  # the head-model contract: the head writes its own records
            records: list[list[dict[str, Any]] | None] = [None] * batch_size
            if len(encoded_rows) > 0:
                n_atoms = model_inputs["n_atoms"][encoded_rows]
                output = self.model(input_ids=input_ids[encoded_rows],
                                    attention_mask=model_inputs["attention_mask"][encoded_rows],
                                    **self.model.prediction_inputs(n_atoms, temperatures))
                for row, crystal in zip(encoded_rows.tolist(),
                                        self.model.property_records(output, n_atoms.tolist(), temperatures)):
                    records[row] = crystal
            # n_atoms first: the pipeline's unbatching reads the batch size from the first entry
            return {"n_atoms": model_inputs["n_atoms"], "records": records, "formula": model_inputs["formula"],
                    "scope": model_inputs["scope"], "error": model_inputs["error"]}
        outputs = self._empty_outputs(batch_size, len(temperatures))
        if len(encoded_rows) > 0:
            model_outputs = self._run_model(
                input_ids=input_ids[encoded_rows],
                attention_mask=model_inputs["attention_mask"][encoded_rows],
                n_atoms=model_inputs["n_atoms"][encoded_rows],
                temperatures=temperatures,
            )
            for name, values in model_outputs.items():
                outputs[name][encoded_rows] = values.to(outputs[name])
        # metadata passes through unchanged (a value for one crystal, a list for a batch)
        return {
            **outputs,
            "temperature": torch.tensor(temperatures, dtype=torch.float64).expand(batch_size, -1),
            "n_atoms": model_inputs["n_atoms"],
            "formula": model_inputs["formula"],
            "scope": model_inputs["scope"],
            "error": model_inputs["error"],
        }

    def _empty_outputs(self, batch_size: int, n_temperatures: int) -> dict[str, torch.Tensor]:
        """NaN-filled output tensors (float64) of the model kind, one row per crystal."""
        if isinstance(self.model, CloudDebyeModel):
            shapes = {"debye_temperature": (batch_size,)}
            shapes.update({name: (batch_size, n_temperatures) for name in DEBYE_THERMO_UNITS})
        elif isinstance(self.model, CloudForClassification):
            shapes = {"probabilities": (batch_size, max(2, self.model.config.num_labels))}
        else:
            shapes = {"predictions": (batch_size, self.model.config.num_targets)}
        return {name: torch.full(shape, math.nan, dtype=torch.float64) for name, shape in shapes.items()}

    def _run_model(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_atoms: torch.Tensor,
        temperatures: tuple[float, ...],
    ) -> dict[str, torch.Tensor]:
        """The model's outputs for encoded crystals, keyed like ``_empty_outputs``."""
        if isinstance(self.model, CloudDebyeModel):
            temperature = torch.tensor(temperatures, device=input_ids.device).expand(len(input_ids), -1)
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, temperature=temperature, n_atoms=n_atoms
            )
            return {
                "debye_temperature": output.debye_temperature.reshape(len(input_ids)),
                **{name: getattr(output, name).reshape(len(input_ids), -1) for name in DEBYE_THERMO_UNITS},
            }
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if isinstance(self.model, CloudForClassification):
            return {"probabilities": class_probabilities(output.logits, self.model.config.problem_type)}
        return {"predictions": output.predictions.reshape(len(input_ids), -1)}

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, Any]:
        """One crystal's result: formula, atom count, SCOPE string, error, and property records."""
        result = {
            "formula": model_outputs["formula"],
            "n_atoms": int(model_outputs["n_atoms"].reshape(-1)[0]) if model_outputs["error"] is None else None,
            "scope": model_outputs["scope"],
            "error": model_outputs["error"],
            "properties": [],
        }
        if result["error"] is None and "records" in model_outputs:
            records = model_outputs["records"]  # one crystal's records; a one-crystal batch's list when not unbatched
            result["properties"] = records[0] if isinstance(records[0], list) else records
        elif result["error"] is None:
            result["properties"] = self._property_records(model_outputs, result["n_atoms"])
        return result

    def _property_records(self, model_outputs: dict[str, Any], n_atoms: int) -> list[dict[str, Any]]:
        """``{"property", "value", "unit"}`` records (``"temperature"`` in K where the value depends on it)."""
        config = self.model.config
        if isinstance(self.model, CloudDebyeModel):
            records = [
                {"property": "debye_temperature", "value": scalar(model_outputs["debye_temperature"]), "unit": "K"}
            ]
            temperatures = model_outputs["temperature"].reshape(-1).tolist()
            for index, temperature in enumerate(temperatures):
                for name, unit in DEBYE_THERMO_UNITS.items():
                    value = scalar(model_outputs[name].reshape(-1)[index])
                    records.append({"property": name, "temperature": temperature, "value": value, "unit": unit})
                    if name == "heat_capacity":
                        records.append(
                            {
                                "property": "heat_capacity_per_atom",
                                "temperature": temperature,
                                "value": value / n_atoms,
                                "unit": "J/(mol·K)",
                            }
                        )
            return records
        if isinstance(self.model, CloudForClassification):
            probabilities = model_outputs["probabilities"].reshape(-1).tolist()
            if config.problem_type == "multi_label_classification":
                return [
                    {"property": f"probability:{config.id2label.get(index, index)}", "value": value, "unit": None}
                    for index, value in enumerate(probabilities)
                ]
            best = max(range(len(probabilities)), key=probabilities.__getitem__)
            return [{"property": "label", "value": config.id2label.get(best, best), "score": probabilities[best], "unit": None}]
        values = model_outputs["predictions"].reshape(-1).tolist()
        names = config.target_names or [f"target_{index}" for index in range(len(values))]
        units = config.target_units or [None] * len(values)
        return [
            {"property": name, "value": value, "unit": unit} for name, value, unit in zip(names, values, units)
        ]


def class_probabilities(logits: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Class probabilities from classification logits: sigmoid for multi-label, [1 − p, p] for a single logit."""
    if problem_type == "multi_label_classification":
        return logits.sigmoid()
    if logits.shape[-1] == 1:
        positive = logits.sigmoid()
        return torch.cat([1 - positive, positive], dim=-1)
    return logits.softmax(dim=-1)


def validate_temperatures(temperatures: Sequence[float] | float) -> tuple[float, ...]:
    """Temperatures (K) as a tuple of finite positive floats; ``ValueError`` otherwise."""
    values = (temperatures,) if isinstance(temperatures, (int, float)) else tuple(temperatures)
    if not values:
        raise ValueError("temperatures must hold at least one temperature (K)")
    converted = tuple(float(value) for value in values)
    bad = [value for value in converted if not (math.isfinite(value) and value > 0)]
    if bad:
        raise ValueError(f"temperatures must be finite and > 0 K, got {bad}")
    return converted


def describe_error(error: Exception) -> str:
    """The message of an encoding failure; unexpected exception types keep their class name."""
    if isinstance(error, ScopeError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def reduced_formula(atomic_numbers: Sequence[int]) -> str:
    """Reduced chemical formula (pymatgen's convention, e.g. ``"SrTiO3"``) of a list of atomic numbers."""
    symbols = element_symbols()
    formula, _ = reduce_formula(Counter(symbols[int(number)] for number in atomic_numbers))
    return formula


def scalar(value: torch.Tensor) -> float:
    """A one-element tensor as a Python float."""
    return float(value.reshape(-1)[0])


PIPELINE_REGISTRY.register_pipeline(
    TASK_NAME,
    pipeline_class=CrystalPropertyPredictionPipeline,
    pt_model=AutoModelForCrystalPropertyPrediction,
    default={"model": (str(BUNDLED_MODEL_DIR), None)},
)

__all__ = [
    "BUNDLED_MODEL_DIR",
    "TASK_NAME",
    "AutoModelForCrystalPropertyPrediction",
    "CrystalPropertyPredictionPipeline",
]
