"""Exceptions that carry a one-line, user-facing message.

The command-line layer prints ``str(error)`` of these and exits with status 1 instead of
showing a traceback, so every message names the file (or object) and the problem.
"""


class MusadvError(Exception):
    """Base class for errors caused by the user's input rather than by a bug."""


class AudioError(MusadvError):
    """An audio file cannot be used: missing, empty, corrupt, truncated, silent or too short."""


class DatasetError(MusadvError):
    """A dataset, label list, CSV or partition is inconsistent or cannot be read."""


class ModelError(MusadvError):
    """A model file is missing, malformed, or does not fit the data it is asked to judge."""
