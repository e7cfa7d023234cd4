"""Exception types raised by pipdetect.

Every error pipdetect raises on purpose derives from :class:`PipdetectError`, and
also from the built-in type a caller would naturally catch (``ValueError``,
``LookupError``, ``OSError`` ...), so both ``except PipdetectError`` and the usual
built-in ``except`` clauses work.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConcurrentUseError",
    "DecodeError",
    "DownloadError",
    "InvalidArgumentError",
    "InvalidBoxError",
    "InvalidImageError",
    "ModelFormatError",
    "ModelNotFoundError",
    "ModelOutputError",
    "NoFaceError",
    "PipdetectError",
    "UnknownNameError",
    "VideoError",
]


class PipdetectError(Exception):
    """Base class of every error pipdetect raises on purpose."""


class InvalidImageError(PipdetectError, ValueError):
    """The image cannot be used: wrong type, dtype, shape, values, or an unreadable file."""


class ConcurrentUseError(PipdetectError, RuntimeError):
    """An object that holds the state of one stream (a :class:`~pipdetect.Tracker`) was
    called from two threads at once; use one per stream (per thread)."""


class InvalidArgumentError(PipdetectError, ValueError, TypeError):
    """An argument pipdetect cannot use: a value out of range, of the wrong type, or a
    combination that makes no sense. The message names the argument as you passed it
    (``detection_size``, ``points`` ...) and says what it accepts.

    It is both a :class:`ValueError` and a :class:`TypeError`, so code catching either
    built-in keeps working.
    """


class UnknownNameError(InvalidArgumentError, KeyError):
    """A name pipdetect does not know: a landmark scheme, a named part of a face, a
    dataset preset. The message lists the names it knows. Also a :class:`KeyError`."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class InvalidBoxError(PipdetectError, ValueError):
    """A face box or crop box is malformed (wrong length, non-finite, zero or negative size)."""


class VideoError(PipdetectError, OSError):
    """A video file or camera cannot be opened or read by OpenCV."""


class NoFaceError(PipdetectError, LookupError):
    """No face was found in the image (raised by ``LandmarkDetector.__call__``)."""


class ModelFormatError(PipdetectError, ValueError):
    """A model file is not a valid pipdetect model (not ONNX, or metadata missing or wrong)."""


class ModelOutputError(PipdetectError, RuntimeError):
    """The network produced non-finite values (NaN or infinity): the model file is broken."""


class CheckpointError(PipdetectError, ValueError):
    """A PyTorch checkpoint cannot be converted (unsafe, truncated, or wrong backbone)."""


class ModelNotFoundError(PipdetectError, LookupError):
    """A model name is not in the catalogue, or a model is not cached while offline."""


class DownloadError(PipdetectError, OSError):
    """A model could not be downloaded or verified."""


class DecodeError(PipdetectError, ValueError):
    """The decoder's configuration or its input maps are unusable.

    Raised for a malformed mean face, ``num_nb`` or ``merge``, and for maps with
    the wrong dtype, number of dimensions, channel counts or sizes. (Non-finite
    values in the maps raise :class:`~pipdetect.errors.ModelOutputError`.)
    """
