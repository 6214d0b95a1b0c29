"""Composition descriptors read straight from SCOPE token ids: element properties pooled over a crystal's atoms.

A SCOPE string names every element next to a token that says how many of its atoms there are: the Wyckoff token
that follows it in canonical SCOPE (``Na 4a`` → 4 atoms per conventional cell) or the fraction token in reference
SCOPE (``Na 0.5``). So the composition, and any element property averaged over it, is a fixed function of the token
ids, and a head can use it without any input besides ``input_ids``: no coordinates, nothing the string does not say.

Why a head wants it: phonon frequencies scale as √(k/m), so the atomic masses set much of a crystal's frequency
scale, and with ~800 phonon crystals an encoder sees too few crystals per element to learn the masses from its token
embeddings alone (measured: with these features the DOS head's validation C_v(300 K) error drops from 0.518 to
0.431 J/(mol·K) per atom, mean of three carves, lower on each; ``python benchmarks/sweep_thermo.py --table``).

[`element_token_table`] builds, once, from a tokenizer's vocabulary and pymatgen's element data, the two tables
a model keeps as buffers (saved with its weights, so loading needs neither pymatgen nor the tokenizer);
[`pooled_composition_features`] pools them for a batch.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping

import torch

ELEMENT_PROPERTIES = ("ln_atomic_mass", "electronegativity", "atomic_radius", "row", "group")
"""Per-element properties (pymatgen ``Element``): ln(mass/amu), Pauling electronegativity, atomic radius (Å), row and
group of the periodic table; each standardised over the elements of the vocabulary."""
POOLS = ("mean", "min", "max")
"""How each property is pooled over a crystal's atoms: atom-weighted mean, and min and max over its elements."""
NUM_COMPOSITION_FEATURES = len(ELEMENT_PROPERTIES) * len(POOLS)

_COUNT_TOKEN = re.compile(r"^(\d+)[a-zA-Z]$")  # canonical Wyckoff token: multiplicity + one letter ("4a", "48h")
_FRACTION_TOKEN = re.compile(r"^\d\.\d+$")  # reference fraction token ("0.5", "0.33", "1.0")


@contextlib.contextmanager
def quiet_missing_electronegativity() -> Iterator[None]:
    """Silence pymatgen's "No Pauling electronegativity for Ar. Setting to NaN" ``UserWarning`` (noble gases,
    superheavy elements) while element data is read; the value stays NaN and other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
        yield


def _element_properties(symbol: str) -> list[float] | None:
    """Raw properties of the element ``symbol`` (None if it is not one); missing values are NaN."""
    from pymatgen.core.periodic_table import Element

    if not Element.is_valid_symbol(symbol):
        return None
    element = Element(symbol)
    with quiet_missing_electronegativity():  # noble gases and superheavy elements have no Pauling X: NaN
        electronegativity = element.X if element.X is not None else math.nan
    radius = element.atomic_radius if element.atomic_radius is not None else element.average_ionic_radius
    return [math.log(float(element.atomic_mass)), float(electronegativity), float(radius or math.nan),
            float(element.row), float(element.group)]


def _raw_token_tables(vocab: Mapping[str, int], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``is_element``, raw element properties (NaN on other tokens) and ``atom_counts`` over token ids."""
    is_element = torch.zeros(vocab_size)
    properties = torch.full((vocab_size, len(ELEMENT_PROPERTIES)), math.nan)
    atom_counts = torch.zeros(vocab_size)
    for token, index in vocab.items():
        if index >= vocab_size:
            continue
        if (values := _element_properties(token)) is not None:
            is_element[index] = 1.0
            properties[index] = torch.tensor(values)
        elif match := _COUNT_TOKEN.match(token):
            atom_counts[index] = float(match.group(1))
        elif _FRACTION_TOKEN.match(token):
            atom_counts[index] = float(token)
    return is_element, properties, atom_counts


def _property_statistics(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (ddof 0, ≥ 1e-6) of each property over the element rows, NaN skipped."""
    mean = rows.nanmean(0)
    return mean, torch.sqrt(((rows - mean) ** 2).nanmean(0)).clamp(min=1e-6)


def element_token_table(vocab: Mapping[str, int], vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tables over token ids for [`pooled_composition_features`].

    Returns ``is_element`` `(vocab_size,)` (1 for element-symbol tokens), ``element_properties``
    `(vocab_size, len(ELEMENT_PROPERTIES))` (standardised; missing values at the mean, 0) and ``atom_counts``
    `(vocab_size,)` (the atom count a token gives the element before it: a Wyckoff multiplicity or a fraction; 0 for
    every other token).
    """
    is_element, properties, atom_counts = _raw_token_tables(vocab, vocab_size)
    mean, std = _property_statistics(properties[is_element.bool()])
    standardised = ((properties - mean) / std).nan_to_num(0.0) * is_element[:, None]
    return is_element, standardised, atom_counts


def ln_mass_statistics(vocab: Mapping[str, int], vocab_size: int) -> torch.Tensor:
    """``[mean, std]`` of ln(mass/amu) over the vocabulary's elements: what [`element_token_table`] standardised
    ``ln_atomic_mass`` by, so ``mean + std · feature`` turns the pooled feature back into ln(mass/amu)."""
    is_element, properties, _ = _raw_token_tables(vocab, vocab_size)
    if not bool(is_element.any()):
        raise ValueError("the vocabulary has no element-symbol tokens")
    mean, std = _property_statistics(properties[is_element.bool()])
    column = ELEMENT_PROPERTIES.index("ln_atomic_mass")
    return torch.stack([mean[column], std[column]])


def element_weights(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, is_element: torch.Tensor,
                    atom_counts: torch.Tensor) -> torch.Tensor:
    """Atoms of each token `(batch, seq)`: an element token's weight is the atom count of the token after it (0
    after padding); every other token weighs 0."""
    mask = attention_mask.to(atom_counts) if attention_mask is not None else torch.ones_like(
        input_ids, dtype=atom_counts.dtype)
    following = torch.nn.functional.pad(input_ids[:, 1:], (0, 1), value=0)
    following_mask = torch.nn.functional.pad(mask[:, 1:], (0, 1), value=0.0)
    return is_element[input_ids] * mask * atom_counts[following] * following_mask


def pooled_composition_features(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                                is_element: torch.Tensor, element_properties: torch.Tensor,
                                atom_counts: torch.Tensor) -> torch.Tensor:
    """Composition descriptors `(batch, NUM_COMPOSITION_FEATURES)` of token ids `(batch, seq)`.

    An element token's weight is the atom count of the token after it (:func:`element_weights`); per property: the
    weight-averaged mean, then min and max over the weighted element tokens. A row without any (a failed crystal's
    placeholder) gets zeros.
    """
    weight = element_weights(input_ids, attention_mask, is_element, atom_counts.to(element_properties))
    properties = element_properties[input_ids]  # (batch, seq, P)
    present = (weight > 0)[..., None]
    total = weight.sum(1, keepdim=True).clamp(min=1e-12)
    mean = (properties * weight[..., None]).sum(1) / total
    minimum = properties.masked_fill(~present, math.inf).amin(1)
    maximum = properties.masked_fill(~present, -math.inf).amax(1)
    features = torch.cat([mean, minimum, maximum], dim=-1)
    return torch.where(present.any(1), features, torch.zeros_like(features))


def atom_share(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, is_element: torch.Tensor,
               atom_counts: torch.Tensor, token_flags: torch.Tensor) -> torch.Tensor:
    """The share of a crystal's atoms `(batch,)` on element tokens flagged by ``token_flags`` `(vocab_size,)` (e.g.
    elements never seen in training); 0 for a row without element tokens."""
    weight = element_weights(input_ids, attention_mask, is_element, atom_counts)
    return (weight * token_flags[input_ids]).sum(1) / weight.sum(1).clamp(min=1e-12)


def element_symbol_table(vocab: Mapping[str, int], vocab_size: int, symbols: Iterable[str]) -> torch.Tensor:
    """`(vocab_size,)`: 1 for the element-symbol tokens of the vocabulary that are **not** in ``symbols``."""
    is_element = _raw_token_tables(vocab, vocab_size)[0]
    known = set(symbols)
    flags = torch.zeros(vocab_size)
    for token, index in vocab.items():
        if index < vocab_size and is_element[index] and token not in known:
            flags[index] = 1.0
    return flags


__all__ = ["ELEMENT_PROPERTIES", "NUM_COMPOSITION_FEATURES", "POOLS", "atom_share", "element_symbol_table",
           "element_token_table", "element_weights", "ln_mass_statistics", "pooled_composition_features",
           "quiet_missing_electronegativity"]
