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
With ``config.thermo_cell_features`` (composition features too) the head also reads the cell descriptors of
:mod:`cloud_hf.cell_descriptors` (ln volume per atom, density, neighbour distances: how tightly the atoms are
packed, which SCOPE does not say), given as the ``cell_features`` input that a [`CloudProcessor`] makes from the
structure, standardised by ``config.thermo_cell_statistics`` (fitted on the training crystals).

``config.thermo_members`` members (≥ 1) form a deep ensemble in one model folder: the output is the members'
mean and standard deviation (ddof 1, times ``config.thermo_std_scale``, a factor fitted on validation data). Each
member also predicts AFLOW's AGL θ_D as an auxiliary output (a quasi-harmonic, elastic quantity: not the θ of
the phonon C_v), trained only where such labels are given.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import initialization as init
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from cloud_hf.cell_descriptors import CELL_DESCRIPTORS, NUM_CELL_DESCRIPTORS
from cloud_hf.composition import (
    ELEMENT_PROPERTIES,
    NUM_COMPOSITION_FEATURES,
    atom_share,
    element_symbol_table,
    element_token_table,
    ln_mass_statistics,
    pooled_composition_features,
)
from cloud_hf.configuration_cloud import CloudConfig
from cloud_hf.debye import equivalent_debye_temperature
from cloud_hf.errors import CloudConfigError, CloudDataError
from cloud_hf.modeling_cloud import CloudModel, CloudPredictionHead, CloudPreTrainedModel
from cloud_hf.modeling_cloud_debye import temperature_grid_inputs
from cloud_hf.spectra import (
    SOFTPLUS_OF_ZERO_IS_ONE,
    MemberSpectra,
    debye_einstein_head_spectra,
    dos_head_spectra,
    mass_stretch,
    spectrum_thermodynamics,
)
from cloud_hf.thermodynamics import cumulative_modes
from cloud_hf.units import MODES_PER_ATOM, PhononThermodynamics, dulong_petit, per_atom
from cloud_hf.validation import batch_n_atoms, batch_temperatures

THERMO_HEADS = ("dos", "debye-einstein")
DEFAULT_FREQUENCIES = [float(omega) for omega in range(20, 1001, 20)]
"""The DOS head's default grid, cm⁻¹: the phonon data's 20 cm⁻¹ bins (its ω = 0 point is the Debye onset)."""
THERMO_UNITS = {"heat_capacity": "J/(mol·K)", "entropy": "J/(mol·K)", "internal_energy": "J/mol",
                "free_energy": "J/mol"}
THERMO_DEFAULTS: dict[str, Any] = {
    "thermo_head": "dos", "thermo_members": 1, "thermo_frequencies": DEFAULT_FREQUENCIES, "thermo_dos_prior": None,
    "thermo_num_einstein": 4, "thermo_std_scale": 1.0, "thermo_agl_trained": False,
    "thermo_composition_features": False, "thermo_dos_loss_weight": 1.0, "thermo_cumulative_dos_loss_weight": 0.0,
    "thermo_mass_scaling": False, "thermo_reference_mass": 20.0, "thermo_reduced_frequency_step": 10.0,
    "thermo_reduced_frequency_max": 1200.0, "thermo_cell_features": False, "thermo_cell_statistics": None,
    "thermo_sources": None, "thermo_training_elements": None, "thermo_unseen_element_std": 0.0,
    "thermo_loss_per_crystal": False,
}
"""The thermo settings of a CloudConfig and their defaults (see :func:`thermo_config`)."""
_DOS_LOSS_SCALE = MODES_PER_ATOM / 1000.0  # modes per cm⁻¹ per atom of a DOS spread evenly over 0–1000 cm⁻¹


def thermo_config(base: CloudConfig | dict[str, Any], **overrides: Any) -> CloudConfig:
    """A CloudConfig for [`CloudThermoModel`]: ``base`` (e.g. a pretrained encoder's) with the thermo settings.

    Settings: ``thermo_head`` ("dos" or "debye-einstein"), ``thermo_members`` (ensemble size), ``thermo_frequencies``
    (cm⁻¹ grid of the DOS head), ``thermo_dos_prior`` (logits, one per grid point), ``thermo_num_einstein``,
    ``thermo_std_scale`` (calibration factor of the ensemble std), ``thermo_agl_trained`` (whether the AGL θ_D output
    was trained and is reported), ``thermo_composition_features`` (whether each member's head also reads the
    composition descriptors of :mod:`cloud_hf.composition`, pooled from the SCOPE tokens), and the weights of the two
    DOS losses against the C_v and S terms: ``thermo_dos_loss_weight`` (L1 per DOS point) and
    ``thermo_cumulative_dos_loss_weight`` (L1 of the cumulative mode count: a Wasserstein-1 distance).
    ``thermo_mass_scaling`` (dos head with composition features) predicts the DOS on the mass-reduced axis
    u = ω·√(m̄/``thermo_reference_mass`` amu)·e^δ, on a uniform grid 0, ``thermo_reduced_frequency_step``, …,
    ``thermo_reduced_frequency_max`` (cm⁻¹ at m̄ = m_ref); ``thermo_dos_prior`` is then on that grid.
    ``thermo_cell_features`` (with composition features) adds the cell descriptors of
    :mod:`cloud_hf.cell_descriptors` to what the heads read, standardised by ``thermo_cell_statistics``
    (``[means, stds]``, one per descriptor, from the training crystals).
    """
    settings = base.to_dict() if isinstance(base, CloudConfig) else dict(base)
    settings.update({
        **THERMO_DEFAULTS, **{key: value for key, value in settings.items() if key.startswith("thermo_")}, **overrides,
    })
    settings["architectures"] = ["CloudThermoModel"]
    config = CloudConfig.from_dict(settings)
    if config.thermo_head not in THERMO_HEADS:
        raise CloudConfigError(f"thermo_head must be one of {THERMO_HEADS}, got {config.thermo_head!r}")
    if not int(config.thermo_members) >= 1:
        raise CloudConfigError(f"thermo_members must be ≥ 1, got {config.thermo_members}")
    if config.thermo_mass_scaling and (config.thermo_head != "dos" or not config.thermo_composition_features):
        raise CloudConfigError("thermo_mass_scaling stretches the dos head's spectrum by the atoms' mean mass: it "
                               "needs thermo_head 'dos' and thermo_composition_features true")
    if config.thermo_cell_features and not config.thermo_composition_features:
        raise CloudConfigError("thermo_cell_features joins the cell descriptors to the composition descriptors: it "
                               "needs thermo_composition_features true")
    statistics = config.thermo_cell_statistics
    if statistics is not None and (len(statistics) != 2 or any(len(row) != NUM_CELL_DESCRIPTORS for row in statistics)
                                   or not all(std > 0 for std in statistics[1])):
        raise CloudConfigError(f"thermo_cell_statistics must be [means, stds] of {NUM_CELL_DESCRIPTORS} values each "
                               f"({', '.join(CELL_DESCRIPTORS)}), stds > 0; got {statistics!r}")
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


class SourceOffsets(nn.Embedding):
    """One learned offset of a member's [CLS] state per label source (zeros at the start)."""


class CloudThermoMember(nn.Module):
    """One ensemble member: a CLOUD encoder and a prediction head (spectrum outputs + 1 AGL θ_D output).

    With ``config.thermo_composition_features``, a small MLP of the composition descriptors (joined by the
    standardised cell descriptors with ``config.thermo_cell_features``) is added to the [CLS] state before the head.
    """

    def __init__(self, config: CloudConfig, num_outputs: int):
        super().__init__()
        self.cloud = CloudModel(config)
        self.head = CloudPredictionHead(config, num_outputs=num_outputs)
        self.composition = None
        if config.thermo_composition_features:
            descriptors = NUM_COMPOSITION_FEATURES + NUM_CELL_DESCRIPTORS * bool(config.thermo_cell_features)
            self.composition = nn.Sequential(nn.Linear(descriptors, config.hidden_size), nn.SiLU(),
                                             nn.Linear(config.hidden_size, config.hidden_size))
        self.source = None
        if config.thermo_sources:  # one learned offset of the [CLS] state per label source (code, functional)
            self.source = SourceOffsets(len(config.thermo_sources), config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                composition: torch.Tensor | None = None, source_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.cloud(input_ids, attention_mask=attention_mask, return_dict=True,
                            first_token_only=True).last_hidden_state
        summary = hidden[:, 0]
        if self.composition is not None and composition is not None:
            summary = summary + self.composition(composition.to(summary))
        if self.source is not None:
            ids = source_ids if source_ids is not None else torch.zeros_like(input_ids[:, 0])
            summary = summary + self.source(ids.to(input_ids.device).long())
        output = self.head(summary)
        return output.to(torch.promote_types(output.dtype, torch.float32))  # thermodynamics need ≥ float32


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
        for key, value in THERMO_DEFAULTS.items():  # a setting added after a checkpoint was saved: its default
            if not hasattr(config, key):
                setattr(config, key, value)
        super().__init__(config)
        if config.thermo_head not in THERMO_HEADS:  # e.g. "debye" is CloudDebyeModel's, not a spectrum of this class
            raise CloudConfigError(f"thermo_head must be one of {THERMO_HEADS}, got {config.thermo_head!r}")
        self.head_kind = config.thermo_head
        grid = [float(omega) for omega in config.thermo_frequencies]
        if any(right <= left for left, right in itertools.pairwise(grid)) or grid[0] <= 0:
            raise CloudConfigError("thermo_frequencies must be strictly increasing and > 0 cm⁻¹ (the onset is below)")
        self.mass_scaling = bool(config.thermo_mass_scaling)
        if self.head_kind == "dos":  # the DOS values (on the reduced axis: plus the stretch correction δ)
            dos_points = len(self.reduced_frequencies) if self.mass_scaling else len(grid)
            num_spectrum = dos_points + int(self.mass_scaling)
            prior = config.thermo_dos_prior
            if prior is not None and len(prior) != dos_points:
                raise CloudConfigError(f"thermo_dos_prior has {len(prior)} values for a DOS grid of {dos_points} points")
        else:
            num_spectrum = 1 + 2 * config.thermo_num_einstein
        self.members = nn.ModuleList(
            [CloudThermoMember(config, num_spectrum + 1) for _ in range(int(config.thermo_members))]
        )
        self.uses_composition = bool(config.thermo_composition_features)
        self.uses_cell = bool(config.thermo_cell_features)
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
                            cell_features: torch.Tensor | None) -> torch.Tensor | None:
        """What each member's descriptor MLP reads `(batch, F)`: the pooled ``composition`` descriptors, joined with
        ``config.thermo_cell_features`` by the standardised cell descriptors ``cell_features`` `(batch, 4)` (the
        natural logs of :func:`cloud_hf.cell_descriptors.cell_descriptors`)."""
        if not self.uses_cell:
            return composition
        if cell_features is None:
            raise CloudDataError("this model reads the crystals' cell descriptors: pass cell_features (batch, "
                                 f"{NUM_CELL_DESCRIPTORS}) = {', '.join(CELL_DESCRIPTORS)}; a CloudProcessor makes them "
                                 "from structures (a SCOPE string alone has no cell)")
        cell = torch.as_tensor(cell_features).to(composition)
        if cell.shape != (composition.shape[0], NUM_CELL_DESCRIPTORS):
            raise CloudDataError(f"cell_features has shape {tuple(cell.shape)}; expected ({composition.shape[0]}, "
                                 f"{NUM_CELL_DESCRIPTORS})")
        if not bool(torch.isfinite(cell).all()):
            raise CloudDataError(f"cell_features has NaN or infinite values in row(s) "
                                 f"{torch.nonzero(~torch.isfinite(cell).all(1)).flatten().tolist()}")
        statistics = self.config.thermo_cell_statistics
        if statistics is not None:
            mean, std = cell.new_tensor(statistics)
            cell = (cell - mean) / std
        return torch.cat([composition, cell], dim=-1)

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

    @property
    def reduced_frequencies(self) -> list[float]:
        """The mass-reduced grid of ``thermo_mass_scaling``: 0, step, …, max (cm⁻¹ at m̄ = m_ref)."""
        step, top = float(self.config.thermo_reduced_frequency_step), float(self.config.thermo_reduced_frequency_max)
        steps = round(top / step) if step > 0 else 0
        if not 0.0 < step < top or not math.isclose(steps * step, top):
            raise CloudConfigError(f"thermo_reduced_frequency_max ({top}) must be a whole number of steps "
                                   f"thermo_reduced_frequency_step ({step} > 0)")
        return [step * index for index in range(steps + 1)]

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
        input_ids: torch.LongTensor,
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
        **kwargs: Unpack[TransformersKwargs],
    ) -> CloudThermoOutput:
        r"""
        temperature (`torch.Tensor` of shape `(batch_size, num_temperatures)`, or `(num_temperatures,)` or a number
            for every crystal, *optional*): temperatures in K (> 0). Without it only the spectrum is returned.
        n_atoms (`torch.Tensor` of shape `(batch_size,)`, *optional*): atoms per cell N (> 0); default 1 (per atom).
        cell_features (`torch.Tensor` of shape `(batch_size, 4)`, *optional*): the cell descriptors of
            [`cloud_hf.cell_descriptors.cell_descriptors`] (natural logs), needed by a model with
            ``config.thermo_cell_features``; the processor makes them.
        source_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*): with ``config.thermo_sources``, the
            index of the label source each crystal is predicted as (default 0: the first source, phonondb).
        """
        batch_size = input_ids.shape[0]
        composition = self.composition_features(input_ids, attention_mask)
        descriptors = self.descriptor_features(composition, cell_features)
        raw = torch.stack([member(input_ids, attention_mask, descriptors, source_ids) for member in self.members],
                          dim=1)  # (B, members, P)
        atoms = batch_n_atoms(n_atoms, batch_size, raw)
        spectra = self._spectra(raw[..., :-1], atoms, composition)
        agl_theta = (self.config.debye_theta_scale * nn.functional.softplus(raw[..., -1] + SOFTPLUS_OF_ZERO_IS_ONE)
                     + 1.0)

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
            for name in THERMO_UNITS:
                value, spread = _mean_std(getattr(thermo, name), scale)
                if unseen is not None and widen > 0:  # unknown chemistry: ± widen × |value| per unseen share
                    spread = torch.sqrt(spread**2 + (widen * unseen.to(value)[:, None] * value.abs()) ** 2)
                fields[name], fields[f"{name}_std"] = value, spread
            fields["member_heat_capacity"] = thermo.heat_capacity
        fields["unseen_element_share"] = unseen
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
                terms.append(bins_weight * _weighted_l1(atom_dos, labels, _DOS_LOSS_SCALE, weights))
            if cumulative_weight:
                grid = self.frequencies.to(atom_dos)
                terms.append(cumulative_weight * _weighted_l1(cumulative_modes(atom_dos, grid),
                                                              cumulative_modes(labels, grid), MODES_PER_ATOM, weights))
        if agl_theta_labels is not None:
            labels = torch.as_tensor(agl_theta_labels).to(agl_theta).reshape(-1, 1, 1)
            terms.append(_weighted_l1(agl_theta[..., None], labels, self.config.debye_theta_scale, weights))
        return torch.stack(terms).sum(0) if terms else agl_theta.new_zeros(members)

    # --- pipeline contract ---------------------------------------------------------------------------------------

    def prediction_inputs(self, n_atoms: torch.Tensor, temperatures: Sequence[float]) -> dict[str, torch.Tensor]:
        """``temperature`` `(batch, n_T)` (K) and ``n_atoms`` for forward(), as for [`CloudDebyeModel`]."""
        return temperature_grid_inputs(n_atoms, temperatures)

    def property_records(self, outputs: CloudThermoOutput, n_atoms: Sequence[int],
                         temperatures: Sequence[float]) -> list[list[dict[str, Any]]]:
        """Per crystal: C_v (cell and per atom), S, U, F at each temperature with their std, the equivalent θ_D
        (the Debye θ with the same C_v at that temperature) and, if trained, the auxiliary AGL θ_D."""
        # every tensor to Python once, and one batched bisection for all equivalent θ_D (the per-record version
        # made the bundled model's end-to-end rate 30× slower)
        values = {name: getattr(outputs, name).detach().double().cpu() for name in THERMO_UNITS}
        stds = {name: getattr(outputs, f"{name}_std").detach().double().cpu() for name in THERMO_UNITS}
        atoms = torch.as_tensor(list(n_atoms), dtype=torch.float64)[:, None]
        temperature = torch.as_tensor(list(temperatures), dtype=torch.float64)
        heat, heat_std = values["heat_capacity"], stds["heat_capacity"]
        theta = equivalent_debye_temperature(torch.stack([heat, heat + heat_std, heat - heat_std]), temperature, atoms)
        table = {name: values[name].tolist() for name in THERMO_UNITS}
        table_std = {name: stds[name].tolist() for name in THERMO_UNITS}
        theta_value, theta_std = theta[0].tolist(), ((theta[2] - theta[1]).abs() / 2.0).tolist()
        agl = (outputs.agl_debye_temperature.detach().tolist(), outputs.agl_debye_temperature_std.detach().tolist())
        records: list[list[dict[str, Any]]] = []
        for row, count in enumerate(n_atoms):
            crystal: list[dict[str, Any]] = []
            for column, temp in enumerate(temperatures):
                for name, unit in THERMO_UNITS.items():
                    value, std = table[name][row][column], table_std[name][row][column]
                    crystal.append(_record(name, value, unit, std, temp))
                    if name == "heat_capacity":
                        crystal.append(_record("heat_capacity_per_atom", value / count, unit, std / count, temp))
                crystal.append(_record("debye_temperature", theta_value[row][column], "K", theta_std[row][column], temp))
            if self.config.thermo_agl_trained:
                crystal.append(_record("agl_debye_temperature", agl[0][row], "K", agl[1][row]))
            if outputs.unseen_element_share is not None:
                crystal.append(_record("unseen_element_share", float(outputs.unseen_element_share[row]), "", 0.0))
            records.append(crystal)
        return records


def _record(name: str, value: float, unit: str, std: float, temperature: float | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"property": name, "value": value, "unit": unit, "std": std}
    if temperature is not None:
        record["temperature"] = float(temperature)
    return record


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


__all__ = ["THERMO_DEFAULTS", "THERMO_HEADS", "CloudThermoModel", "CloudThermoOutput", "thermo_config"]
