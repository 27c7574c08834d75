"""Exceptions raised by bias-suite. Each message names the thing at fault and how to fix it."""

from __future__ import annotations


class BiasSuiteError(Exception):
    """Base class for every error bias-suite raises on bad input."""


class ModelNotFoundError(BiasSuiteError):
    """The model spec is neither a built-in alias, an existing directory, nor a loadable hub id."""


class NotImageTextToTextError(BiasSuiteError):
    """The checkpoint loads, but is not an image-text-to-text model (no vision input, no image token)."""


class LayerSelectionError(BiasSuiteError, ValueError):
    """A requested decoder layer does not exist in the model."""


class MissingImageTokensError(BiasSuiteError):
    """A prompt reached the model without any image placeholder token."""


class ImageTokenMismatchError(BiasSuiteError):
    """The number of image placeholder tokens differs from the number of visual features produced."""


class NonFiniteKeysError(BiasSuiteError):
    """Captured keys or queries contain NaN or inf."""


class CaptureError(BiasSuiteError):
    """Capture cannot do what was asked (unsupported attention feature, missing model input, ...)."""


class CaptureSelfCheckError(CaptureError):
    """Capture disagrees with the model's own forward (positions, post-RoPE keys or logits): the numbers
    would be silently wrong for this family."""


class IncompleteCheckpointError(BiasSuiteError):
    """A checkpoint's weights do not cover the model: some are missing, unexpected or of the wrong shape, so
    transformers would re-initialise them at random."""


class CorruptCheckpointError(BiasSuiteError):
    """A checkpoint's files are damaged or absent (a truncated weight file, a half-written cache directory)."""


class SeedError(BiasSuiteError, ValueError):
    """A seed is not an integer in [0, 2**32)."""


class ThresholdError(BiasSuiteError, ValueError):
    """A threshold file is missing, unreadable or does not follow the schema; or an update was refused."""
