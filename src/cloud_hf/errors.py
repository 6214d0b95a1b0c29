"""The package's typed errors: every failure a caller can act on is one of these, never a ``SystemExit``.

Only command-line entry points (``cloud-hf ...``, ``main()`` of a recipe) turn them into an exit code and a
one-line message. Each message names the input (file, row, id, key or argument) and the reason.
"""

from __future__ import annotations


class CloudError(Exception):
    """Base class of every error cloud-hf raises on purpose."""


class CrystalInputError(CloudError, ValueError):
    """A crystal could not be read or encoded (bad file, disorder, overlap, symmetry failure, ...)."""


class CloudDataError(CloudError, ValueError):
    """A whole data input cannot be used (unreadable file, missing column, bad label values)."""


class CloudConfigError(CloudError, ValueError):
    """A configuration, option or argument is invalid (unknown key, wrong type, out-of-range value)."""


ScopeError = CrystalInputError
"""Alias kept for existing code: the error of SCOPE encoding is the crystal-input error."""

__all__ = ["CloudConfigError", "CloudDataError", "CloudError", "CrystalInputError", "ScopeError"]
