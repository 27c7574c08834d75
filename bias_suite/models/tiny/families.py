"""Architecture-faithful tiny checkpoints, built from transformers configs (no download).

Each builder returns a real ``*ForConditionalGeneration`` model with randomly initialised weights
(seeded) and the family's real processor class around a real tokenizer, so that a checkpoint saved
with ``save_pretrained`` loads back through ``AutoProcessor`` / ``AutoModelForImageTextToText``
exactly like a hub checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tokenizers import processors
from transformers import (
    AutoModelForImageTextToText,
    CLIPImageProcessor,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3ImageProcessor,
    Gemma3Processor,
    Idefics3Config,
    Idefics3ImageProcessor,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from bias_suite.models.tiny.tokenizer import build_tokenizer

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

IDEFICS3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %} {{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% elif item['type'] == 'text' %} {{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

PATCH_SIZE = 14  # pixels per side of a CLIP / LLaVA-1.5 patch

QWEN_SPECIAL_TOKENS = [
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]


@dataclass(frozen=True)
class TextSize:
    """Decoder shape. GQA is on whenever ``kv_heads < heads``."""

    layers: int = 4
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128


def llava_tokenizer():
    """The built-in byte-level BPE tokenizer with LLaVA's special tokens, BOS prepended, chat template."""
    tokenizer = build_tokenizer(
        special_tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        extra_special_tokens=["<image>"],
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    # LLaMA tokenizers prepend BOS; the first position is then the classic attention sink.
    bos_id = tokenizer.convert_tokens_to_ids("<s>")
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return tokenizer


@dataclass(frozen=True)
class VisionSize:
    """CLIP vision tower shape (patch 14). LLaVA reads the second-to-last layer, so ``layers`` ≥ 2."""

    layers: int = 2
    hidden: int = 32  # also the CLIP projection width, which LLaVA does not use
    heads: int = 4
    intermediate: int = 64


def build_llava(
    text: TextSize = TextSize(), image_size: int = 56, vision: VisionSize = VisionSize()
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """LLaVA-1.5 layout: CLIP vision tower → 2-layer MLP projector → Llama decoder (GQA).

    ``image_size`` / 14 squared image tokens per image (CLS dropped, ``vision_feature_select_strategy
    = "default"``), e.g. 56 → 16 tokens, 336 → 576 tokens as in LLaVA-1.5. The defaults are the
    ``tiny-llava`` alias; the bench and the demonstrator's training tool pass their own sizes. Weights
    are drawn from torch's global generator: seed before calling.
    """
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size must be a multiple of the patch size {PATCH_SIZE}, not {image_size}")
    tokenizer = llava_tokenizer()
    vision_config = CLIPVisionConfig(
        hidden_size=vision.hidden, intermediate_size=vision.intermediate, num_hidden_layers=vision.layers,
        num_attention_heads=vision.heads, image_size=image_size, patch_size=PATCH_SIZE,
        projection_dim=vision.hidden,
    )
    decoder = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=text.hidden, intermediate_size=text.intermediate,
        num_hidden_layers=text.layers, num_attention_heads=text.heads, num_key_value_heads=text.kv_heads,
        max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision_config, text_config=decoder,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForImageTextToText.from_config(config)
    return model, llava_processor(image_size, tokenizer)


def llava_processor(image_size: int, tokenizer=None) -> LlavaProcessor:
    """LLaVA-1.5's processor: CLIP resize and centre crop to ``image_size``, ``(image_size / 14)²`` image
    tokens (CLS dropped), the built-in tokenizer and chat template."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer or llava_tokenizer(), patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def qwen_tokenizer():
    """The built-in tokenizer with Qwen's special tokens and chat template."""
    return build_tokenizer(
        special_tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
        extra_special_tokens=QWEN_SPECIAL_TOKENS,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def qwen_processor(processor_class: type, min_pixels: int, max_pixels: int, tokenizer=None) -> ProcessorMixin:
    """A Qwen2-VL-family processor (``processor_class``) whose images are resized to between ``min_pixels``
    and ``max_pixels`` (multiples of 28 per side, aspect kept); one image token per 28 × 28 pixels."""
    sizes = dict(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2)
    return processor_class(
        image_processor=Qwen2VLImageProcessor(**sizes), video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tokenizer or qwen_tokenizer(), chat_template=QWEN_CHAT_TEMPLATE,
    )


def _qwen_config_kwargs(tokenizer, text: TextSize) -> dict:
    """Decoder and special-token settings of a tiny Qwen2-VL-family config."""
    head_dim = text.hidden // text.heads
    half = head_dim // 2
    # mRoPE splits the rotary frequencies into temporal / height / width sections.
    mrope_section = [half - 2 * (half // 3), half // 3, half // 3]
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=text.hidden, intermediate_size=text.intermediate,
            num_hidden_layers=text.layers, num_attention_heads=text.heads, num_key_value_heads=text.kv_heads,
            max_position_embeddings=4096, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": mrope_section},
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )


def build_qwen2_5_vl(text: TextSize = TextSize(), image_side: int = 112) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Qwen2.5-VL layout: windowed ViT with 2×2 patch merger → Qwen2 decoder with 3-D mRoPE (GQA).

    ``(image_side / 28)²`` image tokens per image, e.g. 112 → 16.
    """
    tokenizer = qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=text.hidden,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
        ),
        **_qwen_config_kwargs(tokenizer, text),
    )
    model = AutoModelForImageTextToText.from_config(config)
    return model, qwen_processor(Qwen2_5_VLProcessor, image_side**2, image_side**2, tokenizer)


def build_qwen2_vl(text: TextSize = TextSize(), image_side: int = 112) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Qwen2-VL layout: full-attention ViT with patch merger → Qwen2 decoder with 3-D mRoPE (GQA)."""
    tokenizer = qwen_tokenizer()
    config = Qwen2VLConfig(
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=text.hidden, num_heads=4, mlp_ratio=2,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        ),
        **_qwen_config_kwargs(tokenizer, text),
    )
    model = AutoModelForImageTextToText.from_config(config)
    return model, qwen_processor(Qwen2VLProcessor, image_side**2, image_side**2, tokenizer)


def build_gemma3(text: TextSize = TextSize(), image_size: int = 56) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Gemma 3 layout: SigLIP → average pool + RMSNorm + projection → Gemma 3 decoder (q/k norms, sliding
    and global layers alternating, window 16). Image tokens attend to each other in both directions
    (``token_type_ids``), the rest of the prompt causally.

    ``(image_size / 14)²`` image tokens per image between ``<start_of_image>`` and ``<end_of_image>``.
    """
    tokenizer = build_tokenizer(
        special_tokens={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                        "image_token": "<image_soft_token>"},
        extra_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        chat_template=GEMMA3_CHAT_TEMPLATE,
    )
    n_image_tokens = (image_size // 14) ** 2
    config = Gemma3Config(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=image_size, patch_size=14),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=text.hidden, intermediate_size=text.intermediate,
            num_hidden_layers=text.layers, num_attention_heads=text.heads, num_key_value_heads=text.kv_heads,
            head_dim=text.hidden // text.heads, query_pre_attn_scalar=text.hidden // text.heads, sliding_window=16,
            layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(text.layers)],
            max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        mm_tokens_per_image=n_image_tokens, boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id, image_token_index=tokenizer.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForImageTextToText.from_config(config)
    # Gemma 3's weight init zeroes the image projection, so every image feature would be exactly 0: draw it.
    with torch.no_grad():
        weight = model.model.multi_modal_projector.mm_input_projection_weight
        weight.normal_(0.0, model.config.text_config.initializer_range)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=n_image_tokens,
    )
    return model, processor


def build_idefics3(text: TextSize = TextSize(), image_size: int = 112) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Idefics3 / SmolVLM layout: SigLIP → pixel-shuffle connector (scale 2) → Llama decoder; features are
    merged by the model's ``inputs_merger``. Images are not split: ``<fake_token_around_image><global-img>``,
    ``(image_size / 28)²`` ``<image>`` tokens, ``<fake_token_around_image>``.
    """
    tokenizer = build_tokenizer(
        special_tokens={"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>",
                        "unk_token": "<|endoftext|>"},
        extra_special_tokens=["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"],
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    n_image_tokens = (image_size // 28) ** 2
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=14),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=text.hidden, intermediate_size=text.intermediate,
            num_hidden_layers=text.layers, num_attention_heads=text.heads, num_key_value_heads=text.kv_heads,
            max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2, pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForImageTextToText.from_config(config)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": image_size},
                                               max_image_size={"longest_edge": image_size}),
        tokenizer=tokenizer, chat_template=IDEFICS3_CHAT_TEMPLATE, image_seq_len=n_image_tokens,
    )
    return model, processor


@dataclass(frozen=True)
class TinyFamily:
    """A built-in alias: how to build it and what it stands in for."""

    alias: str
    model_type: str
    build: Callable[[], tuple[PreTrainedModel, ProcessorMixin]]
    stands_in_for: str


TINY_FAMILIES: dict[str, TinyFamily] = {
    family.alias: family
    for family in (
        TinyFamily("tiny-llava", "llava", build_llava, "llava-hf/llava-1.5-7b-hf"),
        TinyFamily("tiny-qwen2.5-vl", "qwen2_5_vl", build_qwen2_5_vl, "Qwen/Qwen2.5-VL-7B-Instruct"),
        TinyFamily("tiny-qwen2-vl", "qwen2_vl", build_qwen2_vl, "Qwen/Qwen2-VL-2B-Instruct"),
        TinyFamily("tiny-gemma3", "gemma3", build_gemma3, "google/gemma-3-4b-it"),
        TinyFamily("tiny-idefics3", "idefics3", build_idefics3, "HuggingFaceTB/SmolVLM-Instruct"),
    )
}


def build_family(alias: str, seed: int) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build ``alias`` with weights drawn from ``torch.manual_seed(seed)`` (float32, eval mode)."""
    torch.manual_seed(seed)
    model, processor = TINY_FAMILIES[alias].build()
    return model.eval(), processor
