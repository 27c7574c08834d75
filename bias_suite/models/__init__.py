"""Models: from a spec to a loaded model and its decoder's geometry (wing 4).

A spec (built-in alias, local directory, hub id, ``shape:NAME``) is resolved and routed once
(:mod:`~bias_suite.models.loading`, :mod:`~bias_suite.models.hub`), loaded through ``AutoProcessor`` /
``AutoModelForImageTextToText`` with its decoder found from the model's own structure
(:mod:`~bias_suite.models.decoder`); :mod:`~bias_suite.models.prompts` turns samples into model inputs with
the model's chat template, :mod:`~bias_suite.models.shapes` builds full-size random architectures and
:mod:`~bias_suite.models.tiny` the tiny test checkpoints. May import: errors, layers, options, vocabulary
(wing 1) and benchmarks (wing 3, for the ``Sample`` type and the scene vocabulary).
"""

from bias_suite.models.decoder import DecoderGeometry, decoder_geometry
from bias_suite.models.loading import (
    LoadedModel,
    ModelInfo,
    ResolvedSpec,
    SpecDescription,
    describe_spec,
    load_model,
    resolve_spec,
    route_spec,
)

__all__ = [
    "DecoderGeometry", "LoadedModel", "ModelInfo", "ResolvedSpec", "SpecDescription", "decoder_geometry",
    "describe_spec", "load_model", "resolve_spec", "route_spec",
]
