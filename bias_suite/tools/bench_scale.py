"""The scale part of ``python -m bias_suite bench --device cuda``: a full-size model on its accelerator.

* ``capture_all_layers_over_prefill``: the gate's capture of every decoder layer (capped key rows,
  attention summaries reduced on the device) / the bare prefill, batch of 8, median of alternated
  repeats. Target ≤ 1.15.
* ``attention_summary_speedup_vs_eager``: the same summaries from eager ``output_attentions=True`` vs the
  gate's capture, every layer, the same batch. Target ≥ 3.
* ``gate_over_prefill``: wall time of ``pytest --model=SPEC --layers=all`` (the default gate: three
  benchmarks × 16 samples, every layer, the card) / wall time of a process that loads the same model and
  runs the bare prefill of the same samples (both include interpreter start). Target ≤ 1.5.

``SPEC`` defaults to ``shape:llava-1.5-7b`` (random weights at full size, built on the device); any
model spec works, which is how the command is smoke-tested on a CPU with a tiny model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.models.decoder import decoder_geometry, prefill_kwargs
from bias_suite.models.prompts import encode_batch
from bias_suite.vocabulary import Verdict

DEFAULT_SCALE_MODEL = "shape:llava-1.5-7b"
GATE_BENCHMARKS = ("photos", "shapes", "conflict")
GATE_SAMPLES = 16
GATE_BATCH = 4


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function, device: torch.device) -> float:
    _synchronise(device)
    start = time.perf_counter()
    function()
    _synchronise(device)
    return time.perf_counter() - start


def _median_side_by_side(a, b, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median wall time of ``a`` and ``b``, alternating a, b, b, a, … after one warm-up of each."""
    a(), b()
    times_a, times_b = [], []
    for repeat in range(repeats):
        order = ((a, times_a), (b, times_b)) if repeat % 2 == 0 else ((b, times_b), (a, times_a))
        for function, times in order:
            times.append(_timed(function, device))
    times_a.sort(), times_b.sort()
    return times_a[len(times_a) // 2], times_b[len(times_b) // 2]


def _gate_samples(n_samples: int):
    from bias_suite.benchmarks import load_benchmark

    return [load_benchmark(name, n_samples=n_samples, seed=0) for name in GATE_BENCHMARKS]


def run_scale(device: str, model_spec: str = DEFAULT_SCALE_MODEL, repeats: int = 5, quick: bool = False,
              gate_command: tuple[str, ...] | None = None) -> dict[str, float | str]:
    """Every figure of the scale part: the in-process prefill ratios, then the gate run in a fresh process."""
    figures = _prefill_figures(device, model_spec, repeats)  # the model is released when it returns
    if torch.device(str(figures["scale_device"])).type == "cuda":
        torch.cuda.empty_cache()  # the gate's process needs the memory
    figures.update(gate_over_prefill(device, model_spec, quick, gate_command))
    return figures


def _prefill_figures(device: str, model_spec: str, repeats: int) -> dict[str, float | str]:
    """Capture of every layer and eager summaries vs the bare prefill, batch of 8, in this process."""
    from bias_suite.metrics.attention_rows import row_statistics
    from bias_suite.models.loading import load_model

    loaded = load_model(model_spec, device=device)
    model, processor = loaded.model, loaded.processor
    torch_device = next(model.parameters()).device
    layers = tuple(range(decoder_geometry(model).n_layers))
    samples = [s for benchmark in _gate_samples(8) for s in benchmark.samples][:8]
    inputs = encode_batch(processor, samples, torch_device, model.dtype, append_answers=True)
    ids = [s.sample_id for s in samples]
    config = CaptureConfig(layers=layers, query_rows="after_image", max_tokens_per_modality=64)

    def bare() -> None:
        with torch.no_grad():
            model(**prefill_kwargs(model, inputs), logits_to_keep=1)

    def capture() -> None:
        capture_batch(model, inputs, ids, config)

    bare_seconds, capture_seconds = _median_side_by_side(bare, capture, torch_device, repeats)

    image = inputs["input_ids"] == model.config.image_token_id
    last_image = torch.stack([row.nonzero().max() for row in image])

    def eager_summaries() -> None:
        with torch.no_grad():
            outputs = model(**prefill_kwargs(model, inputs), output_attentions=True, logits_to_keep=1)
        for attentions in outputs.attentions:  # [B, H, S, S]
            for b in range(attentions.shape[0]):
                rows = attentions[b][:, int(last_image[b]) + 1:].float()  # [H, R, S]
                row_statistics(rows.clamp_min(1e-30).log(), rows[0] > 0, image[b], torch.zeros_like(image[b]))

    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        eager_summaries()  # warm-up
        eager_times = sorted(_timed(eager_summaries, torch_device) for _ in range(max(1, repeats // 2)))
    finally:
        model.set_attn_implementation(original)
    eager_seconds = eager_times[len(eager_times) // 2]
    return {
        "scale_model": model_spec,
        "scale_device": str(torch_device),
        "scale_dtype": str(model.dtype).removeprefix("torch."),
        "scale_layers": len(layers),
        "scale_batch": len(samples),
        "scale_sequence_length": int(inputs["input_ids"].shape[1]),
        "bare_prefill_batch8_seconds": bare_seconds,
        "capture_all_layers_batch8_seconds": capture_seconds,
        "capture_all_layers_over_prefill": capture_seconds / bare_seconds,
        "scale_eager_summary_seconds": eager_seconds,
        "scale_attention_summary_speedup_vs_eager": eager_seconds / capture_seconds,
    }


_BARE_PROCESS = textwrap.dedent("""
    import sys, time, torch
    start = time.perf_counter()
    from bias_suite.benchmarks import load_benchmark
    from bias_suite.models.decoder import prefill_kwargs
    from bias_suite.models.loading import load_model
    from bias_suite.models.prompts import encode_batch
    spec, device, n_samples, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    loaded = load_model(spec, device=device)
    model = loaded.model
    for name in ("photos", "shapes", "conflict"):
        samples = load_benchmark(name, n_samples=n_samples, seed=0).samples
        for first in range(0, len(samples), batch):
            inputs = encode_batch(loaded.processor, samples[first:first + batch], loaded.input_device, model.dtype,
                                  append_answers=all(s.answer for s in samples))
            with torch.no_grad():
                model(**prefill_kwargs(model, inputs), logits_to_keep=1)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    print(time.perf_counter() - start)
""")


def gate_over_prefill(device: str, model_spec: str, quick: bool = False,
                      gate_command: tuple[str, ...] | None = None) -> dict[str, float]:
    """Wall time of the full default gate at every layer / wall time of load + bare prefill, each in a
    fresh process (interpreter start and imports on both sides)."""
    n_samples = 4 if quick else GATE_SAMPLES
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _BARE_PROCESS, model_spec, device, str(n_samples), str(GATE_BATCH)],
                   check=True, capture_output=True, text=True, env=environment)
    bare_seconds = time.perf_counter() - start
    command = list(gate_command or (sys.executable, "-m", "pytest"))
    command += [f"--model={model_spec}", "--layers=all", f"--device={device}", f"--samples={n_samples}",
                "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=Path.cwd(),
                               check=False)
    gate_seconds = time.perf_counter() - start
    if completed.returncode not in {verdict.exit_code for verdict in Verdict}:  # a verdict: the gate judged
        raise RuntimeError(f"the gate run failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}"
                           f"\n{completed.stderr[-2000:]}")
    return {"gate_seconds": gate_seconds, "load_and_bare_prefill_seconds": bare_seconds,
            "gate_over_prefill": gate_seconds / bare_seconds}
