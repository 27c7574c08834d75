"""The demonstrator's architecture: LLaVA-1.5 layout (CLIP tower → MLP projector → Llama decoder, GQA).

Same structure as the ``tiny-llava`` family (:func:`bias_suite.tiny.families.build_llava`) and the same
tokenizer and chat template, at a size that learns something in minutes on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import (
    AutoModelForImageTextToText,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from bias_suite.tiny.families import LLAVA_CHAT_TEMPLATE, TextSize, llava_tokenizer

PATCH_SIZE = 14  # pixels


@dataclass(frozen=True)
class DemoShape:
    """Sizes of both demo models. ``(image_size / 14)²`` image tokens per image (CLS dropped)."""

    image_size: int = 56  # pixels; 56 → 16 image tokens
    vision_hidden: int = 64
    vision_layers: int = 3  # features are taken from the second-to-last layer, as in LLaVA-1.5
    vision_heads: int = 4
    vision_intermediate: int = 256
    text: TextSize = field(
        default_factory=lambda: TextSize(layers=4, hidden=128, heads=4, kv_heads=2, intermediate=384)
    )

    @property
    def image_tokens(self) -> int:
        return (self.image_size // PATCH_SIZE) ** 2


def build_demo_llava(shape: DemoShape) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A freshly initialised model (draws from torch's global generator: seed before calling) and its processor."""
    if shape.image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a multiple of the patch size {PATCH_SIZE}, not {shape.image_size}")
    tokenizer = llava_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
        num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
        image_size=shape.image_size, patch_size=PATCH_SIZE, projection_dim=shape.vision_hidden,
    )
    text = shape.text
    decoder = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=text.hidden, intermediate_size=text.intermediate,
        num_hidden_layers=text.layers, num_attention_heads=text.heads, num_key_value_heads=text.kv_heads,
        max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=decoder,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForImageTextToText.from_config(config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": shape.image_size}, crop_size={"height": shape.image_size, "width": shape.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor
