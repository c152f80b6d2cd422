"""The exception (and warning) for bad data on disk, shared by every layer that reads files (events, data, model inputs)."""


class DataError(ValueError):
    """A dataset file or folder is missing, malformed or inconsistent.

    The message names the file or folder, says what was wrong and what to do about it. Subclasses
    ``ValueError`` so callers that only know the standard library can still catch it.
    """


class DataWarning(UserWarning):
    """A file was read, but part of it was dropped (for example a recording cut in the middle of a word).

    The message names the file and says what was dropped; the complete events were kept.
    """
