"""CLOUD thermodynamics heads beyond one Debye temperature: a Debye–Einstein spectrum or a full phonon DOS, with
deep-ensemble uncertainty, on the CLOUD encoder.

Each member of a [`CloudThermoModel`] (a CLOUD encoder + [`CloudPredictionHead`]) predicts a phonon spectrum of
the crystal (:mod:`cloud_hf.spectra`: what the head outputs stand for), and all thermodynamic functions are that
spectrum's harmonic integrals (:mod:`cloud_hf.thermodynamics`), so C_v = ∂U/∂T, S = −∂F/∂T, U = F + TS,
Dulong–Petit 3NR at high T and the zero-point energy at T → 0 hold by construction, for every member and for the
ensemble mean. The spectrum kinds (``config.thermo_head``):

* ``"dos"``: a non-negative DOS on the grid ``config.thermo_frequencies`` (cm⁻¹), ``softplus(prior + y)``, with a
  Debye ω² onset below the first bin, normalised to 3N modes and integrated exactly (piecewise linear).
  ``config.thermo_dos_prior`` (the logit of the training set's mean DOS) makes a fresh head start at the mean
  spectrum.
* ``"debye-einstein"``: 3 acoustic modes per cell on a Debye spectrum (cut-off ω_D) plus 3N − 3 optical modes
  on ``config.thermo_num_einstein`` Einstein frequencies with per-crystal weights (a softmax).

(``"debye"`` is [`cloud_hf.modeling_cloud_debye.CloudDebyeModel`], unchanged.) The spectrum is predicted per atom
and scaled by ``n_atoms``, so a crystal's primitive and conventional cells get per-atom-identical results.

With ``config.thermo_composition_features`` every member's head also reads composition descriptors (atom-weighted
element properties) pooled from the SCOPE tokens themselves (:mod:`cloud_hf.composition`); the token tables are
buffers saved with the weights. With ``config.thermo_mass_scaling`` as well, the DOS head predicts the spectrum on a
mass-reduced axis u = ω·s, s = √(m̄/m_ref)·e^δ (m̄: the atoms' geometric-mean mass; m_ref:
``config.thermo_reference_mass``; δ: a learned per-crystal correction), since ω ∝ √(k/m): the head then learns the
force constants' share of the spectrum and the masses stretch it, instead of each bin learning both.
With composition features the head also reads the structure features its config declares
(``config.structure_feature_names``, :mod:`cloud_hf.features`), each given as the model input a [`CloudProcessor`]
makes from the structure and standardised by its statistics (``config.feature_statistics``, fitted on the training
crystals): with ``config.thermo_cell_features``, the cell descriptors of :mod:`cloud_hf.cell_descriptors` (ln volume
per atom, density, neighbour distances: how tightly the atoms are packed, which SCOPE does not say) as
``cell_features``, standardised by ``config.thermo_cell_statistics``.

``config.thermo_members`` members (≥ 1) form a deep ensemble in one model folder: the output is the members'
mean and standard deviation (ddof 1, times ``config.thermo_std_scale``, a factor fitted on validation data). Each
member also predicts AFLOW's AGL θ_D as an auxiliary output (a quasi-harmonic, elastic quantity: not the θ of
the phonon C_v), trained only where such labels are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from cloud_hf.composition import (
    ELEMENT_PROPERTIES,
    NUM_COMPOSITION_FEATURES,
    atom_share,
    element_symbol_table,
    element_token_table,
    ln_mass_statistics,
    pooled_composition_features,
)
from cloud_hf.configuration_cloud import THERMO_HEADS, CloudConfig
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.features import StructureFeature, get_features
from cloud_hf.modeling_cloud import (
    CloudModel,
    CloudPredictionHead,
    CloudPreTrainedModel,
    standardised_feature,
)
from cloud_hf.spectra import (
    MemberSpectra,
    debye_einstein_head_spectra,
    dos_head_spectra,
    mass_stretch,
    positive_scaled,
    spectrum_thermodynamics,
)
from cloud_hf.thermodynamics import cumulative_modes
from cloud_hf.units import EVEN_DOS_PER_ATOM, MODES_PER_ATOM, PhononThermodynamics, dulong_petit, per_atom
from cloud_hf.validation import batch_n_atoms, batch_temperatures


def thermo_config(base: CloudConfig | dict[str, Any], **overrides: Any) -> CloudConfig:
    """A CloudConfig for [`CloudThermoModel`]: ``base`` (e.g. a pretrained encoder's) with the ``thermo_*``
    settings and ``structure_features`` in ``overrides`` (see [`CloudConfig`] for each; checked by
    `CloudConfig.check_thermo_settings`). ``structure_features`` (with the composition descriptors) adds registered
    structure features (:mod:`cloud_hf.features`) to what the heads read, standardised by
    ``structure_feature_statistics``."""
    settings = base.to_dict() if isinstance(base, CloudConfig) else dict(base)
    settings.update(overrides)
    settings["architectures"] = ["CloudThermoModel"]
    config = CloudConfig.from_dict(settings)
    config.check_thermo_settings()
    return config


@dataclass
class CloudThermoOutput(ModelOutput):
    """
    Output of [`CloudThermoModel`]. Thermodynamic functions are per mole of cells (``n_atoms`` atoms), shaped
    `(batch_size, num_temperatures)`, the ensemble mean with its `*_std`; `None` without `temperature`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): sum over members of the scaled, masked L1 losses.
        heat_capacity, heat_capacity_std (`torch.FloatTensor`): C_v and its std, J/(mol·K).
        entropy, entropy_std (`torch.FloatTensor`): S and its std, J/(mol·K).
        internal_energy, internal_energy_std (`torch.FloatTensor`): U (zero-point energy included), J/mol.
        free_energy, free_energy_std (`torch.FloatTensor`): F = U − TS, J/mol.
        member_heat_capacity (`torch.FloatTensor` of shape `(batch_size, members, num_temperatures)`): each member's C_v.
        frequencies (`torch.FloatTensor` of shape `(num_points,)`): the grid of `dos`, cm⁻¹.
        dos, dos_std (`torch.FloatTensor` of shape `(batch_size, num_points)`): the predicted phonon DOS, modes per
            cm⁻¹ per cell (3N modes in all, the Debye onset below the first point included); the debye-einstein
            head gives its acoustic Debye part there and its optical modes in `einstein_*`.
        einstein_frequencies, einstein_modes (`torch.FloatTensor` of shape `(batch_size, members, K)`, *optional*):
            the debye-einstein head's optical frequencies (cm⁻¹) and modes per cell.
        agl_debye_temperature, agl_debye_temperature_std (`torch.FloatTensor` of shape `(batch_size,)`): the
            auxiliary AFLOW-AGL θ_D, K.
        unseen_element_share (`torch.FloatTensor` of shape `(batch_size,)`, *optional*): with
            ``config.thermo_training_elements``, the share of the crystal's atoms whose element no training crystal
            had; every std above is widened for it (``config.thermo_unseen_element_std``).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, with ``output_hidden_states``): the embeddings
            output and every layer's output of every member, each `(batch_size, members, sequence_length,
            hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, with ``output_attentions``): every layer's attention
            probabilities of every member, each `(batch_size, members, num_heads, sequence_length,
            sequence_length)`.
    """

    loss: torch.Tensor | None = None
    heat_capacity: torch.Tensor | None = None
    heat_capacity_std: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    entropy_std: torch.Tensor | None = None
    internal_energy: torch.Tensor | None = None
    internal_energy_std: torch.Tensor | None = None
    free_energy: torch.Tensor | None = None
    free_energy_std: torch.Tensor | None = None
    member_heat_capacity: torch.Tensor | None = None
    frequencies: torch.Tensor | None = None
    dos: torch.Tensor | None = None
    dos_std: torch.Tensor | None = None
    einstein_frequencies: torch.Tensor | None = None
    einstein_modes: torch.Tensor | None = None
    agl_debye_temperature: torch.Tensor | None = None
    agl_debye_temperature_std: torch.Tensor | None = None
    unseen_element_share: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class SourceOffsets(nn.Embedding):
    """One learned offset of a member's [CLS] state per label source (zeros at the start)."""


class CloudThermoMember(nn.Module):
    """One ensemble member: a CLOUD encoder and a prediction head (spectrum outputs + 1 AGL θ_D output).

    With ``config.thermo_composition_features``, a small MLP of the composition descriptors (joined by the
    standardised structure features of ``config.structure_feature_names``) is added to the [CLS] state before the
    head.
    """

    def __init__(self, config: CloudConfig, num_outputs: int):
        super().__init__()
        self.cloud = CloudModel(config)
        self.head = CloudPredictionHead(config, num_outputs=num_outputs)
        self.composition = None
        if config.thermo_composition_features:
            descriptors = NUM_COMPOSITION_FEATURES + sum(feature.size for feature in
                                                         get_features(config.structure_feature_names))
            self.composition = nn.Sequential(nn.Linear(descriptors, config.hidden_size), nn.SiLU(),
                                             nn.Linear(config.hidden_size, config.hidden_size))
        self.source = None
        if config.thermo_sources:  # one learned offset of the [CLS] state per label source (code, functional)
            self.source = SourceOffsets(len(config.thermo_sources), config.hidden_size)

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                composition: torch.Tensor | None = None, source_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Unpack[TransformersKwargs]) -> tuple[torch.Tensor, BaseModelOutput]:
        """The head's outputs `(batch, P)` (≥ float32) and the encoder's output (with its hidden states and
        attentions when ``output_hidden_states`` / ``output_attentions`` ask for them)."""
        # the head reads [CLS] only; the full last layer where hidden states are asked for
        whole = bool(kwargs.get("output_hidden_states", self.cloud.config.output_hidden_states))
        encoded = self.cloud(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             inputs_embeds=inputs_embeds, return_dict=True, first_token_only=not whole, **kwargs)
        summary = encoded.last_hidden_state[:, 0]
        if self.composition is not None and composition is not None:
            summary = summary + self.composition(composition.to(summary))
        if self.source is not None:
            ids = source_ids if source_ids is not None else summary.new_zeros(summary.shape[0], dtype=torch.long)
            summary = summary + self.source(ids.to(summary.device).long())
        output = self.head(summary)
        return output.to(torch.promote_types(output.dtype, torch.float32)), encoded  # thermodynamics need ≥ float32


class CloudThermoModel(CloudPreTrainedModel):
    """CLOUD encoder(s) predicting a phonon spectrum; C_v, U, S, F (mean ± std over members) at any temperatures.

    ``forward(input_ids, attention_mask, temperature=(batch, n_T) K, n_atoms=(batch,))`` returns a
    [`CloudThermoOutput`]. Labels (any subset, NaN where missing, each scaled to be dimensionless; see
    [`CloudThermoModel.member_loss`]): ``heat_capacity_labels`` and ``entropy_labels`` at `temperature` (per cell),
    ``dos_labels`` (per-atom DOS on ``config.thermo_frequencies``, 3 modes per atom), ``agl_theta_labels`` (K).
    ``member_weights`` `(batch, members)` weights each crystal in each member's loss (bootstrap weights diversify
    the ensemble).
    """

    def __init__(self, config: CloudConfig):
        config.check_thermo_settings()  # again: a setting may have been changed since the config was made
        super().__init__(config)
        self.head_kind = config.thermo_head
        self.mass_scaling = bool(config.thermo_mass_scaling)
        if self.head_kind == "dos":  # the DOS values (on the reduced axis: plus the stretch correction δ)
            num_spectrum = config.thermo_dos_points + int(self.mass_scaling)
        else:
            num_spectrum = 1 + 2 * config.thermo_num_einstein
        self.members = nn.ModuleList(
            [CloudThermoMember(config, num_spectrum + 1) for _ in range(int(config.thermo_members))]
        )
        self.uses_composition = bool(config.thermo_composition_features)
        self.structure_features: list[StructureFeature] = get_features(config.structure_feature_names)
        if self.uses_composition:  # token tables of cloud_hf.composition, saved with the weights
            vocab_size = config.vocab_size
            self.register_buffer("composition_is_element", torch.zeros(vocab_size))
            self.register_buffer("composition_properties", torch.zeros(vocab_size, len(ELEMENT_PROPERTIES)))
            self.register_buffer("composition_atom_counts", torch.zeros(vocab_size))
        if self.mass_scaling:  # [mean, std] of ln(m/amu) over the vocabulary's elements
            self.register_buffer("composition_ln_mass_statistics", torch.zeros(2))
        self.tracks_training_elements = self.uses_composition and config.thermo_training_elements is not None
        if self.tracks_training_elements:  # 1 for element tokens no training crystal had
            self.register_buffer("composition_unseen_element", torch.zeros(config.vocab_size))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """As every CLOUD model; the composition tables start empty (zeros) until :meth:`set_composition_tables`
        or a checkpoint fills them (they are saved with the weights)."""
        super()._init_weights(module)
        if module is self and self.uses_composition:
            for buffer in (self.composition_is_element, self.composition_properties, self.composition_atom_counts):
                init.zeros_(buffer)
        if module is self and self.mass_scaling:
            init.zeros_(self.composition_ln_mass_statistics)
        if module is self and self.tracks_training_elements:
            init.zeros_(self.composition_unseen_element)
        if isinstance(module, SourceOffsets):
            init.zeros_(module.weight)  # every source starts at the shared state

    def set_composition_tables(self, tokenizer: Any) -> None:
        """Fill the composition token tables from ``tokenizer``'s vocabulary (pymatgen element data); a model built
        with ``thermo_composition_features`` needs this once before training (``from_encoder`` does it)."""
        if not self.uses_composition:
            raise CloudConfigError("this model was built without thermo_composition_features")
        tables = element_token_table(tokenizer.get_vocab(), self.config.vocab_size)
        if not bool(tables[0].any()):
            raise CloudConfigError("the tokenizer has no element-symbol tokens: no composition to read")
        for buffer, table in zip((self.composition_is_element, self.composition_properties,
                                  self.composition_atom_counts), tables):
            buffer.copy_(table.to(buffer))
        if self.mass_scaling:
            self.composition_ln_mass_statistics.copy_(ln_mass_statistics(tokenizer.get_vocab(), self.config.vocab_size)
                                                      .to(self.composition_ln_mass_statistics))
        if self.tracks_training_elements:
            self.composition_unseen_element.copy_(element_symbol_table(
                tokenizer.get_vocab(), self.config.vocab_size, self.config.thermo_training_elements))

    def unseen_element_share(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The share of each crystal's atoms `(batch,)` whose element no training crystal had (None for a model
        that does not record its training elements)."""
        if not self.tracks_training_elements:
            return None
        return atom_share(input_ids, attention_mask, self.composition_is_element, self.composition_atom_counts,
                          self.composition_unseen_element)

    def composition_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The pooled composition descriptors `(batch, NUM_COMPOSITION_FEATURES)` (None without them)."""
        if not self.uses_composition:
            return None
        return pooled_composition_features(input_ids, attention_mask, self.composition_is_element,
                                           self.composition_properties, self.composition_atom_counts)

    def descriptor_features(self, composition: torch.Tensor | None,
                            inputs: Mapping[str, Any]) -> torch.Tensor | None:
        """What each member's descriptor MLP reads `(batch, F)`: the pooled ``composition`` descriptors, joined by
        each structure feature of ``config.structure_feature_names``, taken from ``inputs`` by its input name (the
        cell descriptors: ``cell_features`` `(batch, 4)`, the natural logs of
        :func:`cloud_hf.cell_descriptors.cell_descriptors`) and standardised by its statistics."""
        if not self.structure_features:
            return composition
        return torch.cat([composition, *(standardised_feature(feature, inputs.get(feature.input_name), composition,
                                                              self.config.feature_statistics(feature.name))
                                         for feature in self.structure_features)], dim=-1)

    # --- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_encoder(cls, checkpoint: str | Path, tokenizer: Any = None, **thermo_settings: Any) -> CloudThermoModel:
        """A fresh model whose every member's encoder is ``checkpoint``'s (any cloud-hf folder with ``cloud.*``
        weights, e.g. the bundled CloudDebyeModel); heads start fresh (each member its own random init).

        With ``thermo_composition_features=True`` the composition tables are filled from ``tokenizer`` (default: the
        checkpoint's own).
        """
        from safetensors.torch import load_file

        checkpoint = Path(checkpoint)
        model = cls(thermo_config(CloudConfig.from_pretrained(checkpoint), **thermo_settings))
        state = load_file(checkpoint / "model.safetensors")
        encoder = {key.removeprefix("cloud."): value for key, value in state.items() if key.startswith("cloud.")}
        if not encoder:
            raise CloudConfigError(f"{checkpoint}: no encoder weights (cloud.*) in model.safetensors")
        for member in model.members:
            missing, unexpected = member.cloud.load_state_dict(encoder, strict=False)
            if unexpected or [key for key in missing if "position_ids" not in key]:
                raise CloudConfigError(f"{checkpoint}: encoder weights do not fit: missing {missing}, "
                                       f"unexpected {unexpected}")
        if model.uses_composition:
            if tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model.set_composition_tables(tokenizer)
        return model

    @property
    def frequencies(self) -> torch.Tensor:
        """The DOS grid ``config.thermo_frequencies``, cm⁻¹ (float32, on the model's device)."""
        return torch.tensor(self.config.thermo_frequencies, dtype=torch.float32, device=self.device)

    def mass_stretch(self, composition: torch.Tensor) -> torch.Tensor:
        """s₀ = √(m̄/m_ref) `(batch,)` (:func:`cloud_hf.spectra.mass_stretch`) from the pooled composition descriptors
        (m̄: the geometric-mean atomic mass, from the standardised mean ln-mass feature and the vocabulary's ln-mass
        statistics)."""
        mean, std = self.composition_ln_mass_statistics.to(composition)
        ln_mass = mean + std * composition[:, ELEMENT_PROPERTIES.index("ln_atomic_mass")]
        return mass_stretch(ln_mass, self.config.thermo_reference_mass)

    # --- spectra ---------------------------------------------------------------------------------------------------

    def _spectra(self, raw: torch.Tensor, n_atoms: torch.Tensor,
                 composition: torch.Tensor | None = None) -> MemberSpectra:
        """Member spectra per cell (:mod:`cloud_hf.spectra`) from the heads' spectrum outputs ``raw``
        `(batch, members, P)`."""
        grid = self.frequencies.to(raw)
        if self.head_kind == "dos":
            stretch = self.mass_stretch(composition) if self.mass_scaling else None
            return dos_head_spectra(raw, grid, n_atoms, self.config.thermo_dos_prior, stretch,
                                    self.config.thermo_reduced_frequency_step)
        return debye_einstein_head_spectra(raw, grid, n_atoms, self.config.thermo_num_einstein)

    # --- forward -----------------------------------------------------------------------------------------------

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temperature: torch.Tensor | Sequence[float] | float | None = None,
        n_atoms: torch.Tensor | None = None,
        heat_capacity_labels: torch.Tensor | None = None,
        entropy_labels: torch.Tensor | None = None,
        dos_labels: torch.Tensor | None = None,
        agl_theta_labels: torch.Tensor | None = None,
        member_weights: torch.Tensor | None = None,
        cell_features: torch.Tensor | None = None,
        source_ids: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CloudThermoOutput:
        r"""
        temperature (`torch.Tensor` of shape `(batch_size, num_temperatures)`, or `(num_temperatures,)` or a number
            for every crystal, *optional*): temperatures in K (> 0). Without it only the spectrum is returned.
        n_atoms (`torch.Tensor` of shape `(batch_size,)`, *optional*): atoms per cell N (> 0); default 1 (per atom).
        cell_features (`torch.Tensor` of shape `(batch_size, 4)`, *optional*): the cell descriptors of
            [`cloud_hf.cell_descriptors.cell_descriptors`] (natural logs), needed by a model with
            ``config.thermo_cell_features``; the processor makes them, and every other structure feature the config
            declares, passed by its input name.
        source_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*): with ``config.thermo_sources``, the
            index of the label source each crystal is predicted as (default 0: the first source, phonondb).
        position_ids, inputs_embeds: as for [`CloudModel`], given to every member's encoder (`inputs_embeds`
            replaces each member's own word embeddings; a model with composition descriptors still needs
            `input_ids`, which they are read from).
        kwargs: ``output_hidden_states`` / ``output_attentions``: every member's, stacked on dimension 1 (see
            [`CloudThermoOutput`]).
        """
        if input_ids is None and self.uses_composition:
            raise CloudDataError("this model reads the composition descriptors from the token ids: pass input_ids "
                                 "(inputs_embeds alone has no composition)")
        batch_size = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        composition = self.composition_features(input_ids, attention_mask)
        feature_inputs = {"cell_features": cell_features}  # the other features arrive by their input names
        for feature in self.structure_features:
            if feature.input_name in kwargs:
                feature_inputs[feature.input_name] = kwargs.pop(feature.input_name)
        descriptors = self.descriptor_features(composition, feature_inputs)
        members = [member(None if inputs_embeds is not None else input_ids, attention_mask, descriptors, source_ids,
                          position_ids=position_ids, inputs_embeds=inputs_embeds, **kwargs)
                   for member in self.members]
        raw = torch.stack([output for output, _ in members], dim=1)  # (B, members, P)
        atoms = batch_n_atoms(n_atoms, batch_size, raw)
        spectra = self._spectra(raw[..., :-1], atoms, composition)
        agl_theta = positive_scaled(raw[..., -1], self.config.debye_theta_scale)  # K

        thermo = None
        if temperature is not None:
            temp = batch_temperatures(temperature, batch_size, raw)
            thermo = spectrum_thermodynamics(spectra, self.config.thermo_frequencies, temp, atoms)  # a list: traceable
        elif heat_capacity_labels is not None or entropy_labels is not None:
            raise CloudDataError("heat_capacity_labels / entropy_labels need the `temperature` they were taken at")

        loss = None
        if any(labels is not None for labels in (heat_capacity_labels, entropy_labels, dos_labels, agl_theta_labels)):
            losses = self.member_loss(spectra, thermo, atoms, agl_theta, heat_capacity_labels, entropy_labels,
                                      dos_labels, agl_theta_labels, member_weights)
            loss = losses.sum()

        scale = float(self.config.thermo_std_scale)
        unseen = self.unseen_element_share(input_ids, attention_mask)
        mean, std = _mean_std(spectra.dos, scale)
        agl_mean, agl_std = _mean_std(agl_theta, scale)
        fields: dict[str, Any] = {
            "frequencies": self.frequencies, "dos": mean, "dos_std": std,
            "agl_debye_temperature": agl_mean, "agl_debye_temperature_std": agl_std,
            "einstein_frequencies": spectra.einstein_frequencies, "einstein_modes": spectra.einstein_modes,
        }
        if thermo is not None:
            widen = float(self.config.thermo_unseen_element_std or 0.0)
            for name, member_values in thermo._asdict().items():
                value, spread = _mean_std(member_values, scale)
                if unseen is not None and widen > 0:  # unknown chemistry: ± widen × |value| per unseen share
                    spread = torch.sqrt(spread**2 + (widen * unseen.to(value)[:, None] * value.abs()) ** 2)
                fields[name], fields[f"{name}_std"] = value, spread
            fields["member_heat_capacity"] = thermo.heat_capacity
        fields["unseen_element_share"] = unseen
        fields["hidden_states"] = _stack_members([encoded.hidden_states for _, encoded in members])
        fields["attentions"] = _stack_members([encoded.attentions for _, encoded in members])
        return CloudThermoOutput(loss=loss, **fields)

    def member_loss(self, spectra: MemberSpectra, thermo: PhononThermodynamics | None, n_atoms: torch.Tensor,
                    agl_theta: torch.Tensor, heat_capacity_labels: torch.Tensor | None = None,
                    entropy_labels: torch.Tensor | None = None, dos_labels: torch.Tensor | None = None,
                    agl_theta_labels: torch.Tensor | None = None,
                    member_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Each member's loss `(members,)`: the sum over label kinds of a weighted mean L1 error, NaN skipped.

        Scales: C_v and S by 3NR (0.01 = 1 % of Dulong–Petit); the per-atom DOS by 3/(1000 cm⁻¹), an even
        spread of 3 modes over the grid (only where the DOS head predicts one); AGL θ_D by ``debye_theta_scale``.
        """
        batch, members = agl_theta.shape
        weights = member_weights.to(agl_theta) if member_weights is not None else agl_theta.new_ones(batch, members)
        three_nr = dulong_petit(n_atoms.to(agl_theta))[:, None, None]
        terms = []
        for labels, prediction, scale in (
            (heat_capacity_labels, None if thermo is None else thermo.heat_capacity, three_nr),
            (entropy_labels, None if thermo is None else thermo.entropy, three_nr),
        ):
            if labels is not None:
                terms.append(_weighted_l1(prediction, torch.as_tensor(labels).to(prediction)[:, None, :],
                                          scale, weights, bool(self.config.thermo_loss_per_crystal)))
        if dos_labels is not None and self.head_kind == "dos":
            atom_dos = per_atom(spectra.dos, n_atoms.to(spectra.dos))
            labels = torch.as_tensor(dos_labels).to(atom_dos)[:, None, :]
            bins_weight = float(self.config.thermo_dos_loss_weight)
            cumulative_weight = float(self.config.thermo_cumulative_dos_loss_weight)
            if bins_weight:
                terms.append(bins_weight * _weighted_l1(atom_dos, labels, EVEN_DOS_PER_ATOM, weights))
            if cumulative_weight:
                grid = self.frequencies.to(atom_dos)
                terms.append(cumulative_weight * _weighted_l1(cumulative_modes(atom_dos, grid),
                                                              cumulative_modes(labels, grid), MODES_PER_ATOM, weights))
        if agl_theta_labels is not None:
            labels = torch.as_tensor(agl_theta_labels).to(agl_theta).reshape(-1, 1, 1)
            terms.append(_weighted_l1(agl_theta[..., None], labels, self.config.debye_theta_scale, weights))
        return torch.stack(terms).sum(0) if terms else agl_theta.new_zeros(members)


def _stack_members(per_member: list[tuple[torch.Tensor, ...] | None]) -> tuple[torch.Tensor, ...] | None:
    """Per layer, the members' tensors `(batch, …)` stacked to `(batch, members, …)`; None where not recorded (all
    of them, or the layers a list of indices in ``output_hidden_states`` leaves out)."""
    if any(layers is None for layers in per_member):
        return None
    return tuple(None if layer[0] is None else torch.stack(layer, dim=1) for layer in zip(*per_member))


def _mean_std(values: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (ddof 1, times ``scale``; 0 for one member) over the members dimension 1."""
    mean = values.mean(1)
    std = values.std(1) * scale if values.shape[1] > 1 else torch.zeros_like(mean)
    return mean, std


def _weighted_l1(prediction: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor | float,
                 weights: torch.Tensor, per_crystal: bool = False) -> torch.Tensor:
    """Per member `(members,)`: Σ w·|prediction − label|/scale over present labels / Σ w (0 where none)."""
    present = ~torch.isnan(labels)
    error = (prediction - labels.nan_to_num()).abs() / scale
    if per_crystal:  # each crystal's mean over its present labels, so a crystal with one label weighs as one with 16
        count = present.sum(-1)
        error = (error * present).sum(-1, keepdim=True) / count.clamp(min=1)[..., None]
        present = (count > 0)[..., None]
    weight = weights[:, :, None] * present
    return (error * weight).sum((0, 2)) / weight.sum((0, 2)).clamp(min=1e-12)


__all__ = ["THERMO_HEADS", "CloudThermoModel", "CloudThermoOutput", "thermo_config"]
