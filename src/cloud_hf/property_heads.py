"""The property heads the ``crystal-property-prediction`` pipeline serves, and how each head's outputs read.

Models return tensors; what they mean for a reader (units, per-atom values, the equivalent Debye temperature, the
order of the records) is decided here, in the pipeline's layer, as transformers keeps interpretation in a
pipeline's postprocess. Each head is one [`PropertyHead`] registered under its ``config.architectures`` name:

* ``model_class``: the class, or ``"module:Class"``, imported on first use (the pipeline module stays light);
* ``records``: ``(model, outputs, n_atoms, temperatures) → [[record, …] per crystal]``, a record being
  ``{"property", "value", "unit", …}`` (plus ``"std"`` for an ensemble, ``"temperature"`` (K) where it depends
  on it, ``"score"`` for a class label);
* ``takes_temperatures``: whether ``forward`` takes ``temperature`` `(batch, n_T)` (K) and ``n_atoms`` `(batch,)`.

A new head served by the pipeline and ``cloud-hf predict`` is its model class plus one
[`register_property_head`] call (with its records function) here, with ``"module:Class"`` so that any process finds
it; a user's head registered in its own module is served once that module has been imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from cloud_hf.debye import equivalent_debye_temperature
from cloud_hf.errors import CloudConfigError
from cloud_hf.units import per_atom

PropertyRecord = dict[str, Any]
"""One predicted property of one crystal: ``{"property": name, "value": …, "unit": …}`` and, where they apply,
``"std"``, ``"temperature"`` (K) and ``"score"``."""
RecordsFunction = Callable[[PreTrainedModel, ModelOutput, Sequence[int], Sequence[float]], list[list[PropertyRecord]]]

THERMODYNAMIC_UNITS = {"heat_capacity": "J/(mol·K)", "entropy": "J/(mol·K)", "internal_energy": "J/mol",
                       "free_energy": "J/mol"}
"""Units of the thermodynamic functions every temperature-dependent head reports, per mole of cells (``n_atoms``
atoms each); ``heat_capacity_per_atom`` (J/(mol·K) per mole of atoms) follows each C_v record."""
DEBYE_RECORD_ORDER = ("heat_capacity", "internal_energy", "free_energy", "entropy")
"""The order of a [`CloudDebyeModel`]'s functions at each temperature (the thermo heads use ``THERMODYNAMIC_UNITS``'
order)."""


@dataclass(frozen=True)
class PropertyHead:
    """How the pipeline serves one head class (see the module docstring)."""

    model_class: str | type[PreTrainedModel]
    records: RecordsFunction
    takes_temperatures: bool = False


PROPERTY_HEADS: dict[str, PropertyHead] = {}
"""``config.architectures`` name → the [`PropertyHead`] of every head the pipeline serves."""


def register_property_head(name: str, model_class: str | type[PreTrainedModel], records: RecordsFunction,
                           takes_temperatures: bool = False) -> None:
    """Serve the head class ``model_class`` (the class, or ``"module:Class"`` to import it on first use), saved as
    architecture ``name`` (the class's name, which ``save_pretrained`` records), in the pipeline and
    ``cloud-hf predict``."""
    class_name = model_class.rsplit(":", 1)[-1] if isinstance(model_class, str) else model_class.__name__
    if class_name != name:
        raise CloudConfigError(f"register_property_head: a head is found by its class name, so name must be "
                               f"{class_name!r}, got {name!r}")
    PROPERTY_HEADS[name] = PropertyHead(model_class, records, takes_temperatures)


def property_model_class(name: str) -> type[PreTrainedModel]:
    """The head class registered under ``name`` (imported on first use)."""
    model_class = PROPERTY_HEADS[name].model_class
    if not isinstance(model_class, str):
        return model_class
    module_name, class_name = model_class.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def property_head(model: PreTrainedModel) -> PropertyHead:
    """The registration of ``model``'s class; ``NotImplementedError`` for a model that predicts no property."""
    head = PROPERTY_HEADS.get(type(model).__name__)
    if head is None:
        raise NotImplementedError(f"{type(model).__name__} is not a property head: it predicts no crystal properties")
    return head


def prediction_inputs(model: PreTrainedModel, n_atoms: torch.Tensor | Sequence[int],
                      temperatures: Sequence[float]) -> dict[str, torch.Tensor]:
    """The ``forward()`` keyword arguments ``model``'s head needs besides the processor's, for crystals of
    ``n_atoms`` atoms at ``temperatures`` (K): for a temperature-dependent head ``temperature``, the grid for every
    crystal `(batch, n_T)` float32 on ``n_atoms``' device, and ``n_atoms`` `(batch,)`; ``{}`` otherwise."""
    if not property_head(model).takes_temperatures:
        return {}
    n_atoms = torch.as_tensor(n_atoms).reshape(-1)
    temperature = torch.tensor(list(temperatures), dtype=torch.float32, device=n_atoms.device)
    return {"temperature": temperature.expand(n_atoms.shape[0], -1), "n_atoms": n_atoms}


def property_records(model: PreTrainedModel, outputs: ModelOutput, n_atoms: Sequence[int],
                     temperatures: Sequence[float]) -> list[list[PropertyRecord]]:
    """For each crystal of the batch, its predicted properties as records (see [`PropertyRecord`])."""
    return property_head(model).records(model, outputs, n_atoms, temperatures)


def _record(name: str, value: Any, unit: str | None, std: float, temperature: float | None = None) -> PropertyRecord:
    record: PropertyRecord = {"property": name, "value": value, "unit": unit, "std": std}
    if temperature is not None:
        record["temperature"] = float(temperature)
    return record


def thermo_records(model: PreTrainedModel, outputs: Any, n_atoms: Sequence[int],
                   temperatures: Sequence[float]) -> list[list[PropertyRecord]]:
    """A [`CloudThermoModel`]'s records per crystal: at each temperature C_v (per cell and per atom), S, U, F with
    their std and the equivalent θ_D (the Debye θ with the same C_v there, K, its std from C_v ± std); then, if
    trained, the auxiliary AGL θ_D, and the unseen-element share where the model records its training elements."""
    # every tensor to Python once, and one batched bisection for all equivalent θ_D (the per-record version
    # made the bundled model's end-to-end rate 30× slower)
    values = {name: getattr(outputs, name).detach().double().cpu() for name in THERMODYNAMIC_UNITS}
    stds = {name: getattr(outputs, f"{name}_std").detach().double().cpu() for name in THERMODYNAMIC_UNITS}
    atoms = torch.as_tensor(list(n_atoms), dtype=torch.float64)[:, None]
    temperature = torch.as_tensor(list(temperatures), dtype=torch.float64)
    heat, heat_std = values["heat_capacity"], stds["heat_capacity"]
    theta = equivalent_debye_temperature(torch.stack([heat, heat + heat_std, heat - heat_std]), temperature, atoms)
    table = {name: values[name].tolist() for name in THERMODYNAMIC_UNITS}
    table_std = {name: stds[name].tolist() for name in THERMODYNAMIC_UNITS}
    theta_value, theta_std = theta[0].tolist(), ((theta[2] - theta[1]).abs() / 2.0).tolist()
    agl = (outputs.agl_debye_temperature.detach().tolist(), outputs.agl_debye_temperature_std.detach().tolist())
    records: list[list[PropertyRecord]] = []
    for row, count in enumerate(n_atoms):
        crystal: list[PropertyRecord] = []
        for column, temp in enumerate(temperatures):
            for name, unit in THERMODYNAMIC_UNITS.items():
                value, std = table[name][row][column], table_std[name][row][column]
                crystal.append(_record(name, value, unit, std, temp))
                if name == "heat_capacity":
                    crystal.append(_record("heat_capacity_per_atom", per_atom(value, count), unit, per_atom(std, count),
                                          temp))
            crystal.append(_record("debye_temperature", theta_value[row][column], "K", theta_std[row][column], temp))
        if model.config.thermo_agl_trained:
            crystal.append(_record("agl_debye_temperature", agl[0][row], "K", agl[1][row]))
        if outputs.unseen_element_share is not None:
            crystal.append(_record("unseen_element_share", float(outputs.unseen_element_share[row]), "", 0.0))
        records.append(crystal)
    return records


def debye_records(model: PreTrainedModel, outputs: Any, n_atoms: Sequence[int],
                  temperatures: Sequence[float]) -> list[list[PropertyRecord]]:
    """A [`CloudDebyeModel`]'s records per crystal: θ_D (K), then at each temperature C_v, U, F, S per mole of
    cells and ``heat_capacity_per_atom`` (J/(mol·K) per mole of atoms)."""
    batch_size = len(n_atoms)
    theta = outputs.debye_temperature.reshape(batch_size).tolist()
    grids = {name: getattr(outputs, name).reshape(batch_size, -1).tolist() for name in DEBYE_RECORD_ORDER}
    records = []
    for row, atoms in enumerate(n_atoms):
        crystal = [{"property": "debye_temperature", "value": theta[row], "unit": "K"}]
        for column, temperature in enumerate(temperatures):
            for name in DEBYE_RECORD_ORDER:
                value = grids[name][row][column]
                crystal.append({"property": name, "temperature": float(temperature), "value": value,
                                "unit": THERMODYNAMIC_UNITS[name]})
                if name == "heat_capacity":
                    crystal.append({"property": "heat_capacity_per_atom", "temperature": float(temperature),
                                    "value": per_atom(value, atoms), "unit": THERMODYNAMIC_UNITS[name]})
        records.append(crystal)
    return records


def regression_records(model: PreTrainedModel, outputs: Any, n_atoms: Sequence[int],
                       temperatures: Sequence[float]) -> list[list[PropertyRecord]]:
    """A [`CloudForRegression`]'s records: one per target, ``config.target_names`` (``target_<i>`` when unnamed)
    with ``target_units``."""
    predictions = outputs.predictions.reshape(len(n_atoms), -1).tolist()
    names = model.config.target_names or [f"target_{index}" for index in range(model.config.num_targets)]
    units = model.config.target_units or [None] * len(names)
    return [[{"property": name, "value": value, "unit": unit} for name, value, unit in zip(names, row, units)]
            for row in predictions]


def classification_records(model: PreTrainedModel, outputs: Any, n_atoms: Sequence[int],
                           temperatures: Sequence[float]) -> list[list[PropertyRecord]]:
    """A [`CloudForClassification`]'s records. Multi-label: one ``probability:<label>`` record per label.
    Otherwise the most probable ``label`` (its ``config.id2label`` name) with its ``score``."""
    id2label = model.config.id2label
    records = []
    for probabilities in model.class_probabilities(outputs.logits.float()).tolist():
        if model.config.problem_type == "multi_label_classification":
            records.append([{"property": f"probability:{id2label.get(index, index)}", "value": value, "unit": None}
                            for index, value in enumerate(probabilities)])
            continue
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        records.append([{"property": "label", "value": id2label.get(best, best), "score": probabilities[best],
                         "unit": None}])
    return records


register_property_head("CloudThermoModel", "cloud_hf.modeling_cloud_thermo:CloudThermoModel", thermo_records,
                       takes_temperatures=True)
register_property_head("CloudDebyeModel", "cloud_hf.modeling_cloud_debye:CloudDebyeModel", debye_records,
                       takes_temperatures=True)
register_property_head("CloudForRegression", "cloud_hf.modeling_cloud:CloudForRegression", regression_records)
register_property_head("CloudForClassification", "cloud_hf.modeling_cloud:CloudForClassification",
                       classification_records)

__all__ = [
    "PROPERTY_HEADS",
    "THERMODYNAMIC_UNITS",
    "PropertyHead",
    "PropertyRecord",
    "prediction_inputs",
    "property_head",
    "property_model_class",
    "property_records",
    "register_property_head",
]
