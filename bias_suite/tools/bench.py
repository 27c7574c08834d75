"""``python -m bias_suite bench``: speed and memory of capture, measured side by side in one run.

Every figure is a ratio of two measurements taken in the same run on the same machine, alternating
the two sides, so machine noise cancels as far as it can. Printed as ``name=value`` lines.

* ``capture_overhead_ratio``: median time of the gate's capture prefill (every layer hooked, key rows
  capped at 64 per modality, attention summaries of the question rows reduced on the device, all moved
  to the host) / median time of the bare prefill with the same backend (sdpa). Target ≤ 1.10.
* ``attention_summary_speedup_vs_eager``: the same summaries (visual share, share without sinks, logit
  gap per row and head) from eager ``output_attentions=True`` (rows sliced from the full matrices) vs
  the gate's capture. Target ≥ 3.
* ``attention_rows_speedup_vs_eager``: the library path — capture with ``keep_post_rope=True`` +
  :func:`bias_suite.metrics.attention_rows.attention_rows` — vs eager rows. Target ≥ 3.
* ``attention_rows_memory_ratio_vs_eager``: peak extra memory of that capture path / of the eager path:
  the peak resident set added during the call, sampled every millisecond in a fresh process per side
  (glibc told to ``mmap`` large blocks so freed memory leaves the resident set). Target ≤ 0.1.
* ``retained_bytes_per_sample_layer_llava7b``: host bytes one sample keeps per layer under the default
  gate settings (64 key rows per modality, question summaries), at LLaVA-1.5-7B's decoder geometry
  (hidden 4096, 32 heads of 128) and 576 image tokens, in bfloat16 (the gate's dtype for a 7B on its
  GPU). Target ≤ 1.1e6.
* ``capture_overhead_ratio_llava7b_width``: ``capture_overhead_ratio`` for one decoder layer at that
  geometry (float32): the summaries cost a fixed amount per row, head and key, so at a real model's
  width they are a small share of the prefill, while the narrow 8-layer shape above exaggerates them.
* ``metrics_speedup_vs_reference``, ``keyspace_layer_seconds`` and ``keyspace_case_seconds_llava7b``: see
  :mod:`bias_suite.tools.bench_metrics` (target ≥ 5).
* ``coverage_<metric>``, ``false_alarm_rate``, ``power_<metric>_shift<Δ>``, the ``ratio`` over planted shifts
  and the template-token check: see :mod:`bias_suite.tools.bench_coverage` (coverage ≥ 0.90, no false alarm).

With ``--device cuda`` the scale part runs too (:mod:`bias_suite.tools.bench_scale`): a full-size shape
checkpoint (``shape:llava-1.5-7b`` by default) on the GPU — ``capture_all_layers_over_prefill`` at batch
8 (≤ 1.15), ``attention_summary_speedup_vs_eager`` on the GPU (≥ 3) and ``gate_over_prefill``, the wall
time of the full default gate at every layer over load + bare prefill of the same samples (≤ 1.5).

The CPU part runs in float32 (the CI machine); it reads /proc, so it needs Linux.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from bias_suite.capture.batch import CaptureConfig, capture_batch
from bias_suite.metrics.attention_rows import attention_rows, row_statistics
from bias_suite.models.decoder import prefill_kwargs
from bias_suite.models.prompts import encode_batch
from bias_suite.models.tiny.families import TextSize, build_llava
from bias_suite.tools.bench_coverage import run_coverage
from bias_suite.tools.bench_metrics import run_metrics

GATE_TOKEN_CAP = 64  # RunSettings.max_tokens_per_modality

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class BenchShape:
    """The llava-shaped model the bench runs: LLaVA-1.5 token layout at reduced width."""

    text: TextSize = field(
        default_factory=lambda: TextSize(layers=8, hidden=256, heads=8, kv_heads=4, intermediate=688)
    )
    image_size: int = 336  # (336 / 14)² = 576 image tokens, as LLaVA-1.5
    sequence_length: int = 1200  # total prompt tokens (image + text) for the attention-rows figures
    question_tokens: int = 48  # text tokens after the image, before the generation prompt

    @classmethod
    def quick(cls) -> BenchShape:
        """A small shape for smoke tests of the command itself (figures not meaningful)."""
        return cls(text=TextSize(layers=2), image_size=56, sequence_length=80, question_tokens=8)


class Workload:
    """Model, processor and one encoded prompt of about ``shape.sequence_length`` tokens.

    Layout of the prompt, as in a long LLaVA conversation: a text context before the image fills the
    sequence, then the image, then a short question (``shape.question_tokens``) and the generation
    prompt. The query rows are the question tokens and the last prompt position.
    """

    def __init__(self, shape: BenchShape, attn_implementation: str = "sdpa", seed: int = 0):
        torch.manual_seed(seed)
        model, processor = build_llava(shape.text, shape.image_size)
        model.set_attn_implementation(attn_implementation)
        self.model, self.processor, self.shape = model.eval(), processor, shape
        image = Image.new("RGB", (shape.image_size, shape.image_size), (200, 40, 40))
        self.inputs = processor(images=[image], text=[self._prompt()], return_tensors="pt")
        self.layers = tuple(range(shape.text.layers))

    def _prompt(self) -> str:
        tokenizer = self.processor.tokenizer
        n_image_tokens = (self.shape.image_size // 14) ** 2
        sentence = "The red ball is on the left of the blue cup. "
        question = "What colour is the ball? " * max(1, self.shape.question_tokens // 7)
        context = ""
        template = "USER: {context}<image>\n{question} ASSISTANT:"
        while len(tokenizer(template.format(context=context, question=question))["input_ids"]) + n_image_tokens < (
            self.shape.sequence_length
        ):
            context += sentence
        return template.format(context=context, question=question)

    @property
    def sequence_length(self) -> int:
        return int(self.inputs["input_ids"].shape[1])

    def bare_prefill(self) -> None:
        with torch.no_grad():
            self.model(**prefill_kwargs(self.model, self.inputs), logits_to_keep=1)

    def capture_prefill(self, keep_post_rope: bool = False):
        """The gate's capture (``keep_post_rope=False``) or the library's full post-RoPE capture."""
        config = CaptureConfig(layers=self.layers, query_rows="after_image", keep_post_rope=keep_post_rope,
                               max_tokens_per_modality=GATE_TOKEN_CAP)
        return capture_batch(self.model, self.inputs, ["bench"], config)

    def capture_attention_rows(self) -> list[torch.Tensor]:
        result = self.capture_prefill(keep_post_rope=True)
        sample = result.samples[0]
        return [
            attention_rows(c.post_rope_queries, c.post_rope_keys, sample.query_positions, result.geometry.scaling)
            for c in sample.layers.values()
        ]

    def _query_rows(self) -> torch.Tensor:
        image_positions = (self.inputs["input_ids"][0] == self.model.config.image_token_id).nonzero()
        return torch.arange(int(image_positions.max()) + 1, self.sequence_length)

    def eager_attention_rows(self) -> list[torch.Tensor]:
        rows = self._query_rows()
        with torch.no_grad():
            outputs = self.model(**prefill_kwargs(self.model, self.inputs), output_attentions=True, logits_to_keep=1)
        return [attentions[0][:, rows].transpose(0, 1).clone() for attentions in outputs.attentions]

    def eager_attention_summaries(self) -> list:
        """The gate's summaries from eager rows: log-probabilities stand in for the scaled scores (they
        differ by a per-row constant, which the logit gap cancels)."""
        image = self.inputs["input_ids"][0] == self.model.config.image_token_id
        summaries = []
        for probabilities in self.eager_attention_rows():  # [R, H, S]
            visible = probabilities[:, 0] > 0
            scores = probabilities.clamp_min(1e-30).log().transpose(0, 1)  # [H, R, S]
            summaries.append(row_statistics(scores, visible, image, torch.zeros_like(image)))
        return summaries


def median_seconds_side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time of ``a`` and ``b``, alternating a, b, b, a, … after one warm-up of each."""
    a(), b()
    times_a, times_b = [], []
    for repeat in range(repeats):
        order = ((a, times_a), (b, times_b)) if repeat % 2 == 0 else ((b, times_b), (a, times_a))
        for function, times in order:
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def peak_extra_bytes(function: Callable[[], object]) -> int:
    """Peak resident memory added while ``function`` runs, sampled every millisecond (Linux /proc)."""
    baseline = _resident_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = function()
        peak = max(peak, _resident_bytes())
    finally:
        done.set()
        sampler.join()
    del result
    return peak - baseline


def _memory_probe(mode: str, quick: bool) -> None:
    """Child process: build the workload, measure one call of ``mode``, print JSON."""
    shape = BenchShape.quick() if quick else BenchShape()
    workload = Workload(shape, attn_implementation="eager" if mode == "eager" else "sdpa")
    function = workload.eager_attention_rows if mode == "eager" else workload.capture_attention_rows
    function()  # warm-up: one-time allocations (thread pools, kernel caches) are not the call's cost
    gc.collect()
    print(json.dumps({"mode": mode, "peak_extra_bytes": peak_extra_bytes(function)}))


def _probe_in_fresh_process(mode: str, quick: bool) -> int:
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, "-m", "bias_suite", "bench", "--memory-probe", mode] + (["--quick"] if quick else [])
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe {mode!r} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["peak_extra_bytes"]


def run(quick: bool = False, repeats: int = 15) -> dict[str, float]:
    shape = BenchShape.quick() if quick else BenchShape()
    sdpa = Workload(shape)
    eager = Workload(shape, attn_implementation="eager")
    bare_seconds, capture_seconds = median_seconds_side_by_side(sdpa.bare_prefill, sdpa.capture_prefill, repeats)
    eager_summary_seconds, summary_seconds = median_seconds_side_by_side(
        eager.eager_attention_summaries, sdpa.capture_prefill, repeats
    )
    eager_seconds, rows_seconds = median_seconds_side_by_side(
        eager.eager_attention_rows, sdpa.capture_attention_rows, repeats
    )
    max_difference = max(
        float((ours - theirs).abs().max())
        for ours, theirs in zip(sdpa.capture_attention_rows(), eager.eager_attention_rows())
    )
    eager_bytes = _probe_in_fresh_process("eager", quick)
    capture_bytes = _probe_in_fresh_process("capture", quick)
    return {
        "model_layers": shape.text.layers,
        "model_hidden": shape.text.hidden,
        "image_tokens": int((sdpa.inputs["input_ids"] == sdpa.model.config.image_token_id).sum()),
        "sequence_length": sdpa.sequence_length,
        "attention_query_rows": int(sdpa.capture_prefill().samples[0].query_positions.numel()),
        "threads": torch.get_num_threads(),
        "bare_prefill_seconds": bare_seconds,
        "capture_prefill_seconds": capture_seconds,
        "capture_overhead_ratio": capture_seconds / bare_seconds,
        "eager_attention_summary_seconds": eager_summary_seconds,
        "attention_summary_speedup_vs_eager": eager_summary_seconds / summary_seconds,
        "eager_attention_rows_seconds": eager_seconds,
        "capture_attention_rows_seconds": rows_seconds,
        "attention_rows_speedup_vs_eager": eager_seconds / rows_seconds,
        "attention_rows_max_abs_difference": max_difference,
        "eager_peak_extra_bytes": eager_bytes,
        "capture_peak_extra_bytes": capture_bytes,
        "attention_rows_memory_ratio_vs_eager": capture_bytes / eager_bytes,
        **llava7b_width_figures(quick, repeats=min(repeats, 5)),
        **run_metrics(quick=quick),
        **run_coverage(quick=quick),
    }


def _llava7b_layer(dtype: torch.dtype, quick: bool, n_samples: int):
    """One decoder layer at LLaVA-1.5-7B's geometry (hidden 4096, 32 heads of 128) behind a narrow CLIP
    tower with 576 image tokens, and the built-in ``shapes`` questions with their answers appended (as
    the gate runs them). What capture keeps and costs per layer does not depend on the other layers."""
    from bias_suite.benchmarks import load_benchmark

    text, image_size = TextSize(layers=1, hidden=4096, heads=32, kv_heads=32, intermediate=11008), 336
    if quick:
        text, image_size = TextSize(layers=1), 56
    torch.manual_seed(0)
    model, processor = build_llava(text, image_size)
    model = model.to(dtype).eval()
    samples = load_benchmark("shapes", n_samples=n_samples).samples
    inputs = encode_batch(processor, samples, "cpu", dtype, append_answers=True)
    config = CaptureConfig(layers=(0,), query_rows="after_image", max_tokens_per_modality=GATE_TOKEN_CAP)
    return model, inputs, [s.sample_id for s in samples], config


def llava7b_width_figures(quick: bool = False, repeats: int = 5) -> dict[str, float]:
    """``retained_bytes_per_sample_layer_llava7b`` (bfloat16, the gate's dtype for a 7B on its GPU) and
    ``capture_overhead_ratio_llava7b_width`` (float32 on this CPU): the capture overhead per layer is a
    fixed cost per summarised row and key, so it shrinks as the model widens; this is the same ratio as
    ``capture_overhead_ratio`` at a 7B model's width."""
    model, inputs, ids, config = _llava7b_layer(torch.bfloat16, quick, n_samples=4)
    result = capture_batch(model, inputs, ids, config)
    per_sample = [sample.layers[0].retained_bytes for sample in result.samples]
    figures = {
        "retained_image_tokens": int(result.samples[0].image_mask.sum()),
        "retained_dtype": str(result.samples[0].layers[0].pre_rope_keys.dtype).removeprefix("torch."),
        "retained_bytes_per_sample_layer_llava7b": max(per_sample),
    }
    del model, result
    model, inputs, ids, config = _llava7b_layer(torch.float32, quick, n_samples=2)

    def bare() -> None:
        with torch.no_grad():
            model(**prefill_kwargs(model, inputs), logits_to_keep=1)

    bare_seconds, capture_seconds = median_seconds_side_by_side(
        bare, lambda: capture_batch(model, inputs, ids, config), repeats)
    figures["capture_overhead_ratio_llava7b_width"] = capture_seconds / bare_seconds
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bias_suite bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape: checks the command, figures meaningless")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions per side (median is reported)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="also run the scale part on this device (cuda, cuda:N; cpu with a tiny --scale-model)")
    parser.add_argument("--scale-model", default=None, metavar="SPEC",
                        help="model of the scale part (default shape:llava-1.5-7b)")
    parser.add_argument("--skip-cpu", action="store_true", help="only the scale part (needs --device)")
    parser.add_argument("--memory-probe", choices=("eager", "capture"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        _memory_probe(args.memory_probe, args.quick)
        return 0
    if args.skip_cpu and not args.device:
        parser.error("--skip-cpu needs --device")
    figures = {} if args.skip_cpu else run(quick=args.quick, repeats=args.repeats)
    if args.device:
        from bias_suite.tools.bench_scale import DEFAULT_SCALE_MODEL, run_scale

        figures.update(run_scale(args.device, args.scale_model or DEFAULT_SCALE_MODEL,
                                 repeats=min(args.repeats, 5), quick=args.quick))
    for name, value in figures.items():
        print(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return 0
