"""SCOPE strings: crystal structures to symmetry-consistent token strings (work in progress)."""


class ScopeError(ValueError):
    """A structure could not be encoded; the message names the input and the reason."""


class ScopeEncoder:
    """Placeholder until the encoder lands."""
