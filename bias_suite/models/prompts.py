"""Turn samples (image, question) into model inputs with the model's own processor and chat template."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BatchFeature, ProcessorMixin

from bias_suite.benchmarks.sample import Sample
from bias_suite.errors import BenchmarkError


def format_prompt(processor: ProcessorMixin, question: str) -> str:
    """The question as the model expects it: one image, then the text, then the generation prompt.

    Uses the processor's chat template when it has one; otherwise puts the processor's image token
    on its own line before the question (the LLaVA-1.5 convention).
    """
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    image_token = getattr(processor, "image_token", None)
    if image_token is None:
        raise ValueError(f"{type(processor).__name__} has neither a chat template nor an image_token")
    return f"{image_token}\n{question}"


def prompt_text(processor: ProcessorMixin, sample: Sample, append_answer: bool = False) -> str:
    """The formatted prompt of ``sample``; with ``append_answer``, followed by its answer as the model
    would have generated it (teacher forcing), when the sample has one."""
    text = format_prompt(processor, sample.prompt)
    if append_answer and sample.answer:
        text += ("" if text.endswith(("\n", " ")) else " ") + sample.answer
    return text


def answer_token_count(processor: ProcessorMixin, sample: Sample) -> int:
    """How many tokens the appended answer adds at the end of the sequence (0 without an answer)."""
    if not sample.answer:
        return 0
    tokenizer = getattr(processor, "tokenizer", processor)
    full = tokenizer(prompt_text(processor, sample, append_answer=True))["input_ids"]
    prompt = tokenizer(prompt_text(processor, sample))["input_ids"]
    if full[: len(prompt)] != prompt:
        raise ValueError(f"{sample.sample_id}: appending the answer re-tokenises the prompt; "
                         "cannot locate answer tokens")
    return len(full) - len(prompt)


PLACEHOLDER_ATTRIBUTES = ("image_token", "boi_token", "eoi_token", "video_token", "vision_start_token",
                          "vision_end_token", "fake_image_token", "global_image_token")


def placeholder_tokens(processor: ProcessorMixin) -> tuple[str, ...]:
    """The strings the processor expands or reads as image markers (``<image>``, ``<|image_pad|>``, …)."""
    found = {getattr(processor, name, None) for name in PLACEHOLDER_ATTRIBUTES}
    return tuple(sorted(token for token in found if isinstance(token, str) and token))


def refuse_placeholders(processor: ProcessorMixin, sample: Sample) -> None:
    """A question that spells the model's image marker would add an image the sample does not have: refuse
    it, naming the file and row (or the sample)."""
    for token in placeholder_tokens(processor):
        for field, text in (("question", sample.prompt), ("answer", sample.answer)):
            if text and token in text:
                where = sample.source or f"sample {sample.sample_id!r}"
                raise BenchmarkError(
                    f"{where}, column {field!r}: the text contains {token!r}, the model's image placeholder; the chat "
                    "template inserts the one image itself, so remove it from the text (or write it differently)")


def encode_batch(
    processor: ProcessorMixin,
    samples: Sequence[Sample],
    device: torch.device | str,
    dtype: torch.dtype,
    append_answers: bool = False,
) -> BatchFeature:
    """Processor output for ``samples`` (padded), on ``device``; floating tensors cast to ``dtype``.

    With ``append_answers`` each sample's answer follows its prompt (see :func:`prompt_text`).
    """
    for sample in samples:
        refuse_placeholders(processor, sample)
    encoded = processor(
        images=[[sample.image.convert("RGB")] for sample in samples],  # one image per prompt
        text=[prompt_text(processor, sample, append_answers) for sample in samples],
        padding=True,
        return_tensors="pt",
    )
    return BatchFeature(
        {
            name: value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
            for name, value in encoded.items()
        }
    )


IMAGE_SETTINGS = ("size", "crop_size", "min_pixels", "max_pixels", "patch_size", "merge_size", "max_image_size",
                  "do_image_splitting", "do_resize", "do_center_crop")
PROCESSOR_SETTINGS = ("image_seq_length", "num_image_tokens")


def image_settings(processor: ProcessorMixin) -> dict[str, object]:
    """The processor settings that decide how an image becomes tokens (resize and crop sizes, min/max pixels,
    patch and merge sizes, tiling, image tokens per image): what a threshold file must match to be comparable.
    Plain JSON values, unset ones left out, keys sorted."""

    def plain(value):
        if hasattr(value, "items") or hasattr(value, "__dataclass_fields__"):
            items = value.items() if hasattr(value, "items") else vars(value).items()
            return {str(k): plain(v) for k, v in sorted(items) if v is not None}
        return value if isinstance(value, (bool, int, float, str)) else str(value)

    image_processor = getattr(processor, "image_processor", None)
    found: dict[str, object] = {}
    for owner, names, prefix in ((image_processor, IMAGE_SETTINGS, ""), (processor, PROCESSOR_SETTINGS, "processor.")):
        for name in names:
            value = getattr(owner, name, None) if owner is not None else None
            if value is not None:
                found[prefix + name] = plain(value)
    return dict(sorted(found.items()))
