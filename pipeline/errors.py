"""Errors that stop a stage with one readable line: the file or key, the problem and the fix."""
from __future__ import annotations


class PipelineError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class ConfigError(PipelineError):
    """A params file has an unknown key, a wrong type or an out-of-range value."""


class DataError(PipelineError):
    """An input file or folder cannot be used (corrupt, unknown label, missing, ...)."""
