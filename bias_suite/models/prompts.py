"""Turn samples (image, question) into model inputs with the model's own processor and chat template."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BatchFeature, ProcessorMixin

from bias_suite.benchmarks.sample import Sample


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
