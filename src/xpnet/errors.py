"""User-facing errors.

Every error a user can cause (a bad path, a corrupt or hostile file, a missing GPU
library, a bad flag) is raised as an :class:`XpnetError` whose message is one
sentence that says what to do.  The CLI prints the message and exits with status 2;
library users can catch the base class.
"""


class XpnetError(Exception):
    """Base class for errors a user can fix; ``str(err)`` is the sentence to show."""


class BackendError(XpnetError):
    """The requested device or array library is not usable on this machine."""


class DataError(XpnetError):
    """A data file is missing, malformed or inconsistent."""


class UnsafeFileError(DataError):
    """A file or archive tried something a data file never needs (code, links, escapes)."""


class DownloadError(DataError):
    """Fetching the dataset failed (network, HTTP status, size or checksum)."""


class CheckpointError(XpnetError):
    """A checkpoint file cannot be read or does not match the network."""


class OutputError(XpnetError):
    """The output folder cannot be written."""


class InputError(XpnetError, ValueError):
    """An argument or an input array is not what the short API takes (a ``ValueError``
    too, as scikit-learn's estimators raise for bad input)."""


class NotFittedError(XpnetError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (scikit-learn's ``NotFittedError`` has the
    same two bases)."""


class DivergedError(XpnetError, ValueError):
    """A model diverged in training (its loss became non-finite or exploded), so it has
    no answer to give; the models that did not diverge still answer."""


class DivergenceWarning(UserWarning):
    """Some models diverged in training; the message names them and the step."""
