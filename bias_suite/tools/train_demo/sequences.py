"""Training examples → token ids, loss labels and pixels, encoded once; batches collated from them.

Texts go through the processor's own chat template, and the image placeholder is expanded to the
number of image tokens exactly as the processor does, so training sequences are token for token what
:func:`bias_suite.models.prompts.format_prompt` + the processor give at evaluation time (a test checks this).
Pixels are computed once per scene by the processor's image processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import LlavaProcessor

from bias_suite.benchmarks.scenes import Scene
from bias_suite.tools.train_demo.data import Example, TrainingData

IGNORE_INDEX = -100  # label of positions without loss (prompt, image tokens, padding)
PIXEL_CHUNK = 256  # scenes per image-processor call


@dataclass(frozen=True)
class EncodedExamples:
    """Token ids and labels per example, and the pixels of every scene."""

    input_ids: tuple[torch.Tensor, ...]  # per example: [length] int64, BOS first
    labels: tuple[torch.Tensor, ...]  # per example: [length] int64, IGNORE_INDEX where there is no loss
    scene_index: tuple[int | None, ...]  # per example: row of pixel_values, or None
    pixel_values: torch.Tensor  # [n_scenes, 3, image_size, image_size] float32, normalised


def chat_text(processor: LlavaProcessor, example: Example, with_answer: bool = True) -> str:
    """The example through the chat template: the user turn, then the answer (or the generation prompt)."""
    content = [{"type": "image"}] if example.has_image else []
    content.append({"type": "text", "text": example.user_text})
    messages = [{"role": "user", "content": content}]
    if with_answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": example.answer}]})
    return processor.apply_chat_template(messages, add_generation_prompt=not with_answer)


def image_token_count(processor: LlavaProcessor) -> int:
    """How many times the processor repeats its image token for one image (e.g. 16 for 56 × 56 px)."""
    side = processor.image_processor.crop_size["height"]
    encoded = processor(images=[Image.new("RGB", (side, side))], text=[processor.image_token], return_tensors="pt")
    return int((encoded["input_ids"] == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum())


class ChatFormatter:
    """:func:`chat_text` for many examples at once: the template is rendered once per layout (with and
    without an image) around placeholder strings, which are then replaced by each example's words.
    The chat template inserts message contents verbatim, so this gives exactly :func:`chat_text`."""

    _USER, _ANSWER = "\x00user\x00", "\x00answer\x00"

    def __init__(self, processor: LlavaProcessor):
        self._layouts = {}
        for has_image in (False, True):
            kind = "caption" if has_image else "text"
            placeholder = Example(kind, self._USER, self._ANSWER, 0 if has_image else None)
            self._layouts[has_image] = (chat_text(processor, placeholder), chat_text(processor, placeholder, False))

    def full_and_prompt(self, example: Example) -> tuple[str, str]:
        full, prompt = self._layouts[example.has_image]
        return (
            full.replace(self._USER, example.user_text).replace(self._ANSWER, example.answer),
            prompt.replace(self._USER, example.user_text),
        )


def encode_examples(
    processor: LlavaProcessor, examples: Sequence[Example]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per example ``(input_ids, labels)``, both ``[length]`` int64, tokenized in one batch call.

    Raises if an answer's tokens are not a suffix of the example's tokens.
    """
    tokenizer = processor.tokenizer
    image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    formatter = ChatFormatter(processor)
    fulls, prompts = zip(*(formatter.full_and_prompt(example) for example in examples), strict=True)
    n_image_tokens = image_token_count(processor)
    expanded = [full.replace(processor.image_token, processor.image_token * n_image_tokens) for full in fulls]
    all_ids = tokenizer(expanded)["input_ids"]
    answer_ids = tokenizer([full[len(prompt):] for full, prompt in zip(fulls, prompts)], add_special_tokens=False)
    input_ids, labels = [], []
    for example, full, ids, answer in zip(examples, fulls, all_ids, answer_ids["input_ids"], strict=True):
        ids = torch.tensor(ids, dtype=torch.long)
        example_labels = ids.clone()
        example_labels[ids == image_token_id] = IGNORE_INDEX
        if not example.loss_on_all_tokens:
            if ids[-len(answer):].tolist() != answer:
                raise ValueError(f"answer {example.answer!r} tokenizes differently inside {full!r}")
            example_labels[: len(ids) - len(answer)] = IGNORE_INDEX
        input_ids.append(ids)
        labels.append(example_labels)
    return input_ids, labels


def scene_pixels(processor: LlavaProcessor, scenes: Sequence[Scene]) -> torch.Tensor:
    """``[n_scenes, 3, side, side]`` float32: each scene rendered and preprocessed as the benchmarks' images are."""
    chunks = []
    for start in range(0, len(scenes), PIXEL_CHUNK):
        images = [scene.render() for scene in scenes[start:start + PIXEL_CHUNK]]
        chunks.append(processor.image_processor(images, return_tensors="pt")["pixel_values"])
    return torch.cat(chunks).float()


def encode_training_data(processor: LlavaProcessor, data: TrainingData) -> EncodedExamples:
    """Encode every example and render + preprocess every scene once."""
    input_ids, labels = encode_examples(processor, data.examples)
    return EncodedExamples(
        input_ids=tuple(input_ids),
        labels=tuple(labels),
        scene_index=tuple(example.scene_index for example in data.examples),
        pixel_values=scene_pixels(processor, data.scenes),
    )


def collate(encoded: EncodedExamples, indices: Sequence[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Model inputs for the examples at ``indices``, right-padded (positions then match unpadded ones).

    ``pixel_values`` holds one image per example that has one, in row order (LLaVA fills image tokens
    in that order); it is left out when no example in the batch has an image.
    """
    rows = [encoded.input_ids[i] for i in indices]
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(encoded.input_ids[i])
        input_ids[row, :n] = encoded.input_ids[i]
        labels[row, :n] = encoded.labels[i]
        attention_mask[row, :n] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    scenes = [encoded.scene_index[i] for i in indices if encoded.scene_index[i] is not None]
    if scenes:
        batch["pixel_values"] = encoded.pixel_values[scenes]
    return batch
