"""SCOPE strings: crystal structures to symmetry-consistent token strings.

Two modes: ``reference`` (byte-identical to the CLOUD reference encoder) and ``canonical`` (format
``canonical-1``: one string per crystal whatever its cell, site order, orientation or origin; decodable).

    >>> from cloud_hf.scope import ScopeEncoder
    >>> ScopeEncoder().encode("NaCl.cif")  # doctest: +SKIP
    'cF m-3m SG225 Na 4a Cl 4b'

The names below load their modules (pymatgen, moyopy/spglib, datasets) on first access, so importing the
package (e.g. for the tokenizer) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloud_hf.lazy_imports import lazy_attributes

if TYPE_CHECKING:
    from cloud_hf.scope.canonical import CANONICAL_VERSION, DecodedScope
    from cloud_hf.scope.encoder import FORMAT_VERSIONS, MODES, ScopeEncoder, ScopeMapFunction
    from cloud_hf.scope.vocab import canonical_vocabulary
    from cloud_hf.structures import ScopeError, load_structure

_LAZY_ATTRIBUTES = {
    "CANONICAL_VERSION": "cloud_hf.scope.canonical",
    "DecodedScope": "cloud_hf.scope.canonical",
    "FORMAT_VERSIONS": "cloud_hf.scope.encoder",
    "MODES": "cloud_hf.scope.encoder",
    "ScopeEncoder": "cloud_hf.scope.encoder",
    "ScopeMapFunction": "cloud_hf.scope.encoder",
    "canonical_vocabulary": "cloud_hf.scope.vocab",
    "ScopeError": "cloud_hf.errors",
    "load_structure": "cloud_hf.structures",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY_ATTRIBUTES)


__all__ = [
    "CANONICAL_VERSION",
    "FORMAT_VERSIONS",
    "MODES",
    "DecodedScope",
    "ScopeEncoder",
    "ScopeError",
    "ScopeMapFunction",
    "canonical_vocabulary",
    "load_structure",
]
