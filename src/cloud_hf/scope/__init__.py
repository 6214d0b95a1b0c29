"""SCOPE strings: crystal structures to symmetry-consistent token strings.

Two modes: ``reference`` (byte-identical to the CLOUD reference encoder) and ``canonical`` (format
``canonical-1``: one string per crystal whatever its cell, site order, orientation or origin; decodable).

    >>> from cloud_hf.scope import ScopeEncoder
    >>> ScopeEncoder().encode("NaCl.cif")  # doctest: +SKIP
    'cF m-3m SG225 Na 4a Cl 4b'
"""

from cloud_hf.scope.canonical import CANONICAL_VERSION, DecodedScope
from cloud_hf.scope.encoder import FORMAT_VERSIONS, MODES, ScopeEncoder, ScopeMapFunction
from cloud_hf.scope.vocab import canonical_vocabulary
from cloud_hf.structures import ScopeError, load_structure

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
