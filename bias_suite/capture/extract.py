"""Capture over a list of samples, batch by batch: the loop a gate or a notebook runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from bias_suite.benchmarks.sample import Sample
from bias_suite.capture.batch import BatchCapture, CaptureConfig, SampleCapture, capture_batch
from bias_suite.models.loading import LoadedModel
from bias_suite.models.prompts import encode_batch


def extract(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    config: CaptureConfig,
    batch_size: int = 4,
    append_answers: bool = False,
    progress: Callable[[int], None] | None = None,
    self_check: bool = True,
) -> tuple[SampleCapture, ...]:
    """Captured tensors for every sample, in order. Only one batch lives on the device at a time.

    append_answers: teacher-force each sample's answer after its prompt (for answer query rows).
    progress: called with the number of samples done after each batch (e.g. a progress bar's update).
    self_check: run the first batch also through the model's own forward and raise if positions, post-RoPE
        keys or logits disagree with the capture (:mod:`bias_suite.capture.selfcheck`; one extra prefill).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    duplicated = sorted(sample_id for sample_id, n in Counter(s.sample_id for s in samples).items() if n > 1)
    if duplicated:
        raise ValueError(f"sample ids must be unique; used more than once: {duplicated}")
    device, dtype = loaded.input_device, loaded.model.dtype  # not model.device: meta when offloaded
    captured: list[SampleCapture] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        inputs = encode_batch(loaded.processor, batch, device, dtype, append_answers)
        checked = replace(config, self_check=self_check and start == 0)
        result: BatchCapture = capture_batch(loaded.model, inputs, [s.sample_id for s in batch], checked,
                                             loaded.geometry)
        captured.extend(result.samples)
        if progress is not None:
            progress(len(batch))
    return tuple(captured)
