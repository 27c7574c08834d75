"""Full-size *shape* checkpoints: the real architectures at full size, with random weights.

``shape:llava-1.5-7b`` is ``LlavaForConditionalGeneration`` with the numbers of the public
``llava-hf/llava-1.5-7b-hf`` config (CLIP ViT-L/14 at 336 px → MLP projector → Llama-7B, 32 heads of
128), built directly on the target device in the target dtype (no disk, seconds on a GPU) around the
built-in tokenizer and the family's real processor. They exist to run the gate and the bench at real
scale without weights: every number they produce describes random weights, **not** the real model.
A 7B shape needs about 14 GB in bfloat16 — for GPUs; on a small CPU machine build them on ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLProcessor,
)

from bias_suite.models.tiny.families import llava_processor, llava_tokenizer, qwen_processor, qwen_tokenizer

SHAPE_PREFIX = "shape:"
QWEN_PIXELS = (256 * 28 * 28, 1280 * 28 * 28)  # the min/max pixels Qwen's model cards recommend


@dataclass(frozen=True)
class ShapeSpec:
    """One full-size architecture: how to build its config and processor, and what it mirrors."""

    name: str  # the part after "shape:"
    model_type: str
    stands_for: str  # the public checkpoint whose config the numbers come from
    config: Callable[[ProcessorMixin], PretrainedConfig]
    processor: Callable[[], ProcessorMixin]


def _llava_config(text: dict) -> Callable[[ProcessorMixin], PretrainedConfig]:
    def build(processor: ProcessorMixin) -> PretrainedConfig:
        tokenizer = processor.tokenizer
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
        decoder = LlamaConfig(vocab_size=32064, max_position_embeddings=4096, rms_norm_eps=1e-5,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, **text)
        return LlavaConfig(vision_config=vision, text_config=decoder,
                           image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                           vision_feature_select_strategy="default", projector_hidden_act="gelu",
                           pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)

    return build


def _qwen_config(config_class: type, text: dict, vision: dict,
                 tie: bool) -> Callable[[ProcessorMixin], PretrainedConfig]:
    def build(processor: ProcessorMixin) -> PretrainedConfig:
        tokenizer = processor.tokenizer
        ids = tokenizer.convert_tokens_to_ids
        return config_class(
            text_config=dict(max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=tie,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                              "mrope_section": [16, 24, 24]},
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.pad_token_id, **text),
            vision_config=vision, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=tie,
        )

    return build


_LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32)
_LLAMA_13B = dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                  num_key_value_heads=40)

SHAPES: dict[str, ShapeSpec] = {
    spec.name: spec
    for spec in (
        ShapeSpec("llava-1.5-7b", "llava", "llava-hf/llava-1.5-7b-hf", _llava_config(_LLAMA_7B),
                  lambda: llava_processor(336, llava_tokenizer())),
        ShapeSpec("llava-1.5-13b", "llava", "llava-hf/llava-1.5-13b-hf", _llava_config(_LLAMA_13B),
                  lambda: llava_processor(336, llava_tokenizer())),
        ShapeSpec(
            "qwen2.5-vl-7b", "qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct",
            _qwen_config(Qwen2_5_VLConfig,
                         dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                              num_attention_heads=28, num_key_value_heads=4),
                         dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                              patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                              fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
                         tie=False),
            lambda: qwen_processor(Qwen2_5_VLProcessor, *QWEN_PIXELS, qwen_tokenizer())),
        ShapeSpec(
            "qwen2-vl-2b", "qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct",
            _qwen_config(Qwen2VLConfig,
                         dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                              num_attention_heads=12, num_key_value_heads=2),
                         dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, patch_size=14,
                              spatial_merge_size=2, temporal_patch_size=2),
                         tie=True),
            lambda: qwen_processor(Qwen2VLProcessor, *QWEN_PIXELS, qwen_tokenizer())),
    )
}


def is_shape_spec(spec: str) -> bool:
    return spec.startswith(SHAPE_PREFIX)


def shape_spec(spec: str) -> ShapeSpec:
    """The :class:`ShapeSpec` of ``shape:NAME``; unknown names list the known ones."""
    name = spec.removeprefix(SHAPE_PREFIX)
    if name not in SHAPES:
        raise KeyError(f"unknown shape {spec!r}; built-in shapes: {', '.join(SHAPE_PREFIX + n for n in SHAPES)}")
    return SHAPES[name]


def shape_config(spec: str) -> tuple[PretrainedConfig, ProcessorMixin]:
    """Config and processor of a shape spec (cheap: no weights)."""
    shape = shape_spec(spec)
    processor = shape.processor()
    return shape.config(processor), processor


def build_shape(spec: str, device: torch.device | str, dtype: torch.dtype, attn_implementation: str = "sdpa",
                seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The model of ``spec`` with random weights drawn on ``device`` (``"meta"`` allocates nothing) in
    ``dtype``, in eval mode, and its processor."""
    config, processor = shape_config(spec)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return model.eval(), processor
