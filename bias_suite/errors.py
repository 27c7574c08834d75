"""Everything bias-suite raises or warns. Each message names the thing at fault and how to fix it.

Errors derive from :class:`BiasSuiteError` (``except BiasSuiteError`` catches all of them); the ones
about a bad value are also ``ValueError``. The gate's outcomes are errors too: :class:`GateFailure`
(bias beyond its bound) and :class:`GateError` (a gated check that could not run). Warnings derive from
:class:`BiasSuiteWarning`, so ``-W error::bias_suite.errors.BiasSuiteWarning`` turns them into errors.
"""

from __future__ import annotations


class BiasSuiteError(Exception):
    """Base class for every error bias-suite raises."""


class BiasSuiteWarning(UserWarning):
    """Base class for every warning bias-suite emits."""


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


class BenchmarkError(BiasSuiteError, ValueError):
    """A benchmark name, file or sample is unusable; the message names the file, row and column at fault."""


class BaselineError(BiasSuiteError, ValueError):
    """A baseline card cannot be read or compared with this run; the message names the difference."""


class ShardError(BiasSuiteError, ValueError):
    """Shard cards that cannot be merged into one run: a shard missing or given twice, manifests, settings or
    suite versions that differ, a card that is not a shard's."""


class GateFailure(BiasSuiteError):
    """A gated metric's whole interval lies beyond its bound: the model is more biased than allowed."""


class GateError(BiasSuiteError):
    """A gated metric could not be computed: never a pass."""


class GateInconclusive(BiasSuiteError):
    """A gated check could not decide: the run is not comparable with what it is judged against (another
    sample count, seed, dtype, environment, processor), too few samples, or an interval straddles its
    tolerance. Never a pass; the message names what differs and how to make the run comparable."""


class NoBaseline(BiasSuiteError):
    """Nothing that baselines the model judged a case: only generic sanity bounds, or a family file that
    does not cover this benchmark or layer. Bless the baseline checkpoint (never the candidate), declare
    the family with ``--family``, or pass ``--bias-reference``; ``--allow-unbaselined`` reports only."""


class UnsafeCheckpointError(BiasSuiteError):
    """A checkpoint stores its weights in a format that can run code when read (a pickle ``.bin``/``.pt``);
    it is refused: convert it to safetensors."""


class BiasGateWarning(BiasSuiteWarning):
    """A metric's point estimate is beyond its bound, but its interval is not (noise could explain it)."""
