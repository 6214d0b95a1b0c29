"""CLOUD-DEBYE: the CLOUD encoder predicting a Debye temperature, with differentiable Debye thermodynamics on top.

The network predicts one number per crystal, the Debye temperature θ_D (K); heat capacity, internal energy,
entropy and free energy at any temperatures follow from the Debye model (:mod:`cloud_hf.debye`), so a model
trained on C_v at 300 K predicts thermodynamically consistent curves at every temperature.

θ_D is positive by construction: ``θ_D = θ_min + θ_scale · softplus(y + ln(e − 1))`` where ``y`` is the head
output, ``θ_scale = config.debye_theta_scale`` (K) and ``θ_min`` = :data:`MIN_DEBYE_TEMPERATURE`. At ``y = 0`` (a
freshly initialised head) θ_D ≈ θ_scale; softplus is linear for large ``y`` (bounded gradients, no overflow)
and decays smoothly towards θ_min. The reference's ``1200·y + 1500`` K can go negative.

Configuration: ``CloudConfig.debye_theta_scale`` (K, default 300 K, about the median Debye temperature of the
AFLOW AGL set) is the typical θ_D of the training data; it fixes the initial prediction and the loss scale.
Set it near the median θ_D of your data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.debye import thermodynamics
from cloud_hf.errors import CloudDataError
from cloud_hf.modeling_cloud import CloudModel, CloudPredictionHead, CloudPreTrainedModel
from cloud_hf.spectra import positive_scaled
from cloud_hf.units import PhononThermodynamics, dulong_petit
from cloud_hf.validation import batch_n_atoms, batch_temperatures

MIN_DEBYE_TEMPERATURE = 1.0
"""Floor of the predicted θ_D in K, keeping θ_D/T and ln(1 − e^{−θ_D/T}) finite; no real crystal comes near it."""



@dataclass
class CloudDebyeOutput(ModelOutput):
    """
    Output of [`CloudDebyeModel`]. Thermodynamic functions are per mole of cells (``n_atoms`` atoms each) and
    have the shape of `temperature`: `(batch_size,)` or `(batch_size, num_temperatures)`; they are `None` when no
    `temperature` is given.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): sum of the scaled L1 losses of the labels given (see
            [`CloudDebyeModel.debye_loss`]).
        debye_temperature (`torch.FloatTensor` of shape `(batch_size,)`): predicted Debye temperature θ_D, K (> 0).
        heat_capacity (`torch.FloatTensor`, *optional*): isochoric heat capacity C_v, J/(mol·K).
        internal_energy (`torch.FloatTensor`, *optional*): vibrational internal energy U including the zero-point
            energy (9/8)·N·R·θ_D, J/mol.
        entropy (`torch.FloatTensor`, *optional*): vibrational entropy S, J/(mol·K).
        free_energy (`torch.FloatTensor`, *optional*): vibrational Helmholtz free energy F = U − TS, J/mol.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): embeddings output and every layer's output.
        attentions (`tuple(torch.FloatTensor)`, *optional*): attention probabilities of every layer.
    """

    loss: torch.Tensor | None = None
    debye_temperature: torch.Tensor | None = None
    heat_capacity: torch.Tensor | None = None
    internal_energy: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    free_energy: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _masked_l1(prediction: torch.Tensor, label: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Mean of ``|prediction − label| / scale`` over the labels that are not NaN (0 with the graph kept if none)."""
    present = ~torch.isnan(label)
    error = (prediction - label.nan_to_num()).abs() / scale
    return (error * present).sum() / present.sum().clamp(min=1)


class CloudDebyeModel(CloudPreTrainedModel):
    """CLOUD encoder + [`CloudPredictionHead`] predicting θ_D, evaluated through the Debye model.

    ``forward`` returns θ_D (K) and, at the given temperatures (K), C_v, U, S and F per mole of cells. Labels on
    θ_D, C_v and U (any subset, at any temperatures, NaN for missing) train it, so data measured at one
    temperature or at many both work. Encoder weights load from any cloud-hf checkpoint (e.g. a converted
    reference ``CloudForMaskedLM``) with ``CloudDebyeModel.from_pretrained(folder)``; the head starts fresh.
    """

    def __init__(self, config: CloudConfig):
        super().__init__(config)
        self.cloud = CloudModel(config)
        self.head = CloudPredictionHead(config, num_outputs=1)
        self.post_init()

    @property
    def theta_scale(self) -> float:
        """``config.debye_theta_scale``: the typical θ_D, K."""
        return self.config.debye_theta_scale

    def debye_temperature(self, head_output: torch.Tensor) -> torch.Tensor:
        """θ_D in K (> θ_min) from the head output ``y``: ``θ_min + θ_scale · softplus(y + ln(e − 1))``."""
        return positive_scaled(head_output, self.theta_scale, MIN_DEBYE_TEMPERATURE)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        temperature: torch.Tensor | float | None = None,
        n_atoms: torch.Tensor | None = None,
        theta_labels: torch.Tensor | None = None,
        heat_capacity_labels: torch.Tensor | None = None,
        internal_energy_labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CloudDebyeOutput:
        r"""
        temperature (`torch.Tensor` of shape `(batch_size,)` or `(batch_size, num_temperatures)`, or a number,
            *optional*): temperatures in K (> 0) at which C_v, U, S and F are evaluated: one per crystal, or a grid
            per crystal. Without it only θ_D is returned.
        n_atoms (`torch.Tensor` of shape `(batch_size,)`, *optional*): atoms per cell N; the thermodynamic functions
            are per mole of cells. Defaults to 1 (per mole of atoms).
        theta_labels (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): Debye temperatures, K.
        heat_capacity_labels (`torch.FloatTensor` shaped like `temperature`, *optional*): C_v at `temperature`,
            J/(mol·K) per mole of cells.
        internal_energy_labels (`torch.FloatTensor` shaped like `temperature`, *optional*): U (zero-point energy
            included) at `temperature`, J/mol of cells.

        NaN labels are left out of the loss. Further keyword arguments (`output_hidden_states`,
        `output_attentions`, `return_dict`) act as for any transformers model.
        """
        outputs = self.run_encoder(input_ids, attention_mask, position_ids, inputs_embeds, **kwargs)
        head_output = self.head(outputs.last_hidden_state[:, 0]).squeeze(-1)
        # The Debye functions need at least float32 (half precision cannot resolve (T/θ_D)³ at low T).
        head_output = head_output.to(torch.promote_types(head_output.dtype, torch.float32))
        theta = self.debye_temperature(head_output)
        batch_size = theta.shape[0]

        thermo = None
        if temperature is not None:
            # one temperature per crystal (batch,) or a grid per crystal (batch, n_T); checks skipped while tracing
            temperature = batch_temperatures(temperature, batch_size, theta, vector="per_crystal")
            atoms = batch_n_atoms(n_atoms, batch_size, theta)
            if temperature.dim() == 2:  # a grid per crystal: broadcast crystals over its columns
                thermo = thermodynamics(theta[:, None], temperature, atoms[:, None])
            else:
                thermo = thermodynamics(theta, temperature, atoms)
        elif heat_capacity_labels is not None or internal_energy_labels is not None:
            raise CloudDataError(
                "heat_capacity_labels / internal_energy_labels need the `temperature` they were taken at"
            )

        loss = None
        if any(labels is not None for labels in (theta_labels, heat_capacity_labels, internal_energy_labels)):
            loss = self.debye_loss(
                theta,
                theta_labels=theta_labels,
                thermo=thermo,
                temperature=temperature,
                n_atoms=atoms if thermo is not None else None,
                heat_capacity_labels=heat_capacity_labels,
                internal_energy_labels=internal_energy_labels,
            )

        return CloudDebyeOutput(
            loss=loss,
            debye_temperature=theta,
            heat_capacity=thermo.heat_capacity if thermo is not None else None,
            internal_energy=thermo.internal_energy if thermo is not None else None,
            entropy=thermo.entropy if thermo is not None else None,
            free_energy=thermo.free_energy if thermo is not None else None,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def debye_loss(
        self,
        theta: torch.Tensor,
        theta_labels: torch.Tensor | None = None,
        thermo: PhononThermodynamics | None = None,
        temperature: torch.Tensor | None = None,
        n_atoms: torch.Tensor | None = None,
        heat_capacity_labels: torch.Tensor | None = None,
        internal_energy_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum, over the kinds of label given, of the mean L1 error in dimensionless units (NaN labels skipped).

        ``theta`` (K, ``(batch,)``) and ``thermo`` (at ``temperature``, K, for ``n_atoms`` atoms per cell) are the
        predictions; the C_v and U labels need ``thermo``.

        Scales: θ_D by ``θ_scale``; C_v by its Dulong–Petit value 3NR (so 0.01 = 1 % of the classical limit);
        U by ``3NR (T + 3θ_scale/8)``, which joins U's high-T value 3NRT and its T → 0 value, the zero-point energy
        (9/8)·N·R·θ_D, for a typical crystal.
        """
        terms = []
        if theta_labels is not None:
            labels = self._checked_labels(torch.as_tensor(theta_labels).reshape(-1), theta, "theta_labels")
            terms.append(_masked_l1(theta, labels, self.theta_scale))
        if thermo is not None:
            grid_atoms = n_atoms[:, None] if temperature.dim() == 2 else n_atoms
            three_nr = dulong_petit(grid_atoms)
            if heat_capacity_labels is not None:
                labels = self._checked_labels(
                    heat_capacity_labels, thermo.heat_capacity, "heat_capacity_labels"
                )
                terms.append(_masked_l1(thermo.heat_capacity, labels, three_nr))
            if internal_energy_labels is not None:
                labels = self._checked_labels(
                    internal_energy_labels, thermo.internal_energy, "internal_energy_labels"
                )
                energy_scale = three_nr * (temperature + 3.0 * self.theta_scale / 8.0)
                terms.append(_masked_l1(thermo.internal_energy, labels, energy_scale))
        return torch.stack(terms).sum()

    @staticmethod
    def _checked_labels(labels: torch.Tensor, prediction: torch.Tensor, name: str) -> torch.Tensor:
        """Labels on the prediction's device and dtype, with its shape (the shape of `temperature`)."""
        labels = torch.as_tensor(labels, device=prediction.device).to(prediction.dtype)
        if labels.shape != prediction.shape:
            raise CloudDataError(
                f"{name} have shape {tuple(labels.shape)}; expected {tuple(prediction.shape)} (that of temperature)"
            )
        return labels


__all__ = ["CloudDebyeModel", "CloudDebyeOutput"]
