"""The exceptions (and the warning) for bad files, shared by every layer that reads them (events, data,
model, training)."""


class DataError(ValueError):
    """A dataset file or folder is missing, malformed or inconsistent.

    The message names the file or folder, says what was wrong and what to do about it. Subclasses
    ``ValueError`` so callers that only know the standard library can still catch it.
    """


class CheckpointError(ValueError):
    """A checkpoint file (adapters or resume state) is missing, unreadable, or does not fit the model."""


class DataWarning(UserWarning):
    """A file was read, but part of it was dropped (for example a recording cut in the middle of a word).

    The message names the file and says what was dropped; the complete events were kept.
    """


class OutputError(RuntimeError):
    """A file could not be written (no space left, no permission): the message names it and says that
    its previous version, or the lines written before, are kept."""
