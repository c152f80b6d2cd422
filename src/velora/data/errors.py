"""The one exception type for bad data on disk."""


class DataError(ValueError):
    """A dataset file or folder is missing, malformed or inconsistent.

    The message names the file or folder, says what was wrong and what to do about it. Subclasses
    ``ValueError`` so callers that only know the standard library can still catch it.
    """
