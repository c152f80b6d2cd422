"""The exceptions (and the warning) for bad files, shared by every layer that reads them (events, data,
model, training), and their base class.

Every error velora raises for a user to act on (a bad file, config field, checkpoint, weights,
source) is a ``VeloraError`` with a sentence that names the file or field and says what to do; the
command line prints it as one line and exits with code 2. Each layer defines its own subclasses
(ConfigError, BackboneError, LoRAError, WeightsError, PackageError, ExportError, SourceError).
"""


class VeloraError(Exception):
    """An error for the user: the message says what was wrong, where, and what to do."""


class DataError(VeloraError, ValueError):
    """A dataset file or folder is missing, malformed or inconsistent.

    The message names the file or folder, says what was wrong and what to do about it. Subclasses
    ``ValueError`` so callers that only know the standard library can still catch it.
    """


class CheckpointError(VeloraError, ValueError):
    """A checkpoint file (adapters or resume state) is missing, unreadable, or does not fit the model."""


class DataWarning(UserWarning):
    """A file was read, but part of it was dropped (for example a recording cut in the middle of a word).

    The message names the file and says what was dropped; the complete events were kept.
    """


class OutputError(VeloraError, RuntimeError):
    """A file could not be written (no space left, no permission): the message names it and says that
    its previous version, or the lines written before, are kept."""
