"""Errors a user can cause. Each message names the file or value, the cause and the fix."""

from __future__ import annotations


class AfxmatchError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits non-zero."""

    exit_code = 1


class InvalidParameterError(AfxmatchError, ValueError):
    """A parameter value or option is outside what the tool accepts."""


class AudioFileError(AfxmatchError):
    """An input or reference file is missing, unreadable, silent or too short."""


class OutputError(AfxmatchError):
    """The output path cannot be written (exists, equals an input, bad format)."""


class ModelError(AfxmatchError):
    """A model file is missing, corrupt or does not match the code's parameter space."""
