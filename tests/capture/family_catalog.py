"""Tiny random-init image-text-to-text models, one per transformers family, with valid padded inputs.

Test support for checking capture across architectures (no download, no tokenizer, no processor):
each builder makes a real ``*ForConditionalGeneration`` (or the family's image-text-to-text class)
from transformers' own config classes with a 2-layer decoder (hidden 64, GQA where the config allows)
and a 1–2 layer vision tower, and hand-built ``input_ids``: random text ids from a safe range around
the family's image placeholder run (with its begin/end/row-break tokens and BOS where the real
processor puts them), two samples of different lengths, left padded, with ``attention_mask`` and
every extra input the forward needs (``pixel_values``, ``image_sizes``, ``image_grid_thw``,
``mm_token_type_ids``, ``token_type_ids``, ``pixel_attention_mask``, …).

``CATALOG[model_type](seed=0) -> FamilyModel``; ``SKIPPED[model_type]`` says why a requested family is
absent (none in transformers 5.24: every requested model_type exists); ``EXPECTED_UNSUPPORTED`` names
the families capture cannot support by construction, and why. The model is float32, on CPU, in eval
mode, weights drawn after ``torch.manual_seed(seed)`` (inputs from generators seeded with ``seed``),
with the sdpa backend (eager for GOT-OCR2's SAM tower, which has no sdpa path). ``model(**inputs)``
runs as is. Each build takes ~0.01–0.05 s warm, < 0.6 s including the first import of its modelling
module, on 2 CPU cores.

Deviations from a plain ``from_config`` (each commented at the builder): Gemma 3's zero-initialised
``mm_input_projection_weight`` is redrawn (otherwise every image feature is exactly 0); Llama 4 gets a
forward hook that works around a transformers 5.24 bug that breaks every ``return_dict`` forward of
``Llama4ForConditionalGeneration``; InstructBLIP uses a Llama (Vicuna) decoder as the real
``instructblip-vicuna`` checkpoints do; Qwen3-VL keeps the DEFAULT text ``rope_parameters`` (no
``mrope_section``) while Qwen2-VL, Qwen2.5-VL, GLM-4.1V and Qwen3.5 set it like their checkpoints.

Token id layout (vocab 256 unless the family needs more): 0 pad, 1 bos, 2 eos, 10–199 random text,
200–255 the family's special tokens (image placeholder, begin/end of image, row breaks, …).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from transformers import AutoModelForImageTextToText, PreTrainedModel

VOCAB = 256
PAD, BOS, EOS = 0, 1, 2
TEXT_LOW, TEXT_HIGH = 10, 200
IMAGE = 250  # default image placeholder id
# Text after the image differs in length so the batch is padded (left).
PREFIX_LENGTHS = (3, 2)
SUFFIX_LENGTHS = (7, 3)
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 64, 2, 4, 2, 128


@dataclass(frozen=True)
class FamilyModel:
    """A tiny model of one family and a padded batch of two valid samples for it.

    ``n_image_tokens_per_sample``: placeholder tokens per sample that receive visual features (the
    positions the model scatters features into), one entry per batch row. ``image_token_id`` is
    None for families whose config has none.
    """

    model_type: str
    model: PreTrainedModel
    inputs: dict[str, Tensor]
    image_token_id: int | None
    n_image_tokens_per_sample: tuple[int, ...]
    notes: str = field(default="", compare=False)


# --------------------------------------------------------------------------- helpers


def _text(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(TEXT_LOW, TEXT_HIGH, (n,), generator=generator).tolist()


def _left_pad(sequences: Sequence[Sequence[int]], pad_id: int = PAD) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, width - len(sequence):] = 1
    return input_ids, attention_mask


def _prompts(
    image_blocks: Sequence[Sequence[int]], seed: int, bos: int | None = BOS, image_first: bool = False
) -> tuple[Tensor, Tensor]:
    """``[bos] text image_block text`` per sample (``image_block text`` … with ``image_first``),
    texts of different lengths, left padded."""
    generator = torch.Generator().manual_seed(seed + 1)
    sequences = []
    for row, block in enumerate(image_blocks):
        head = [] if bos is None else [bos]
        prefix = [] if image_first else _text(generator, PREFIX_LENGTHS[row % 2])
        suffix = _text(generator, SUFFIX_LENGTHS[row % 2])
        sequences.append((list(block) + head + suffix) if image_first else (head + prefix + list(block) + suffix))
    return _left_pad(sequences)


def _pixels(seed: int, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 2))


def _llama_text(**overrides) -> dict:
    config = dict(
        model_type="llama", vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        max_position_embeddings=512, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )
    config.update(overrides)
    return config


def _text_config(model_type: str, **overrides) -> dict:
    return _llama_text(model_type=model_type, **overrides)


def _clip(image_size: int = 56, patch_size: int = 14, layers: int = 2, **overrides) -> dict:
    config = dict(
        model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, image_size=image_size, patch_size=patch_size, projection_dim=32,
    )
    config.update(overrides)
    return config


def _siglip(image_size: int = 56, patch_size: int = 14, layers: int = 1, **overrides) -> dict:
    config = dict(
        model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, image_size=image_size, patch_size=patch_size,
    )
    config.update(overrides)
    return config


def _finish(model_type: str, model: PreTrainedModel, inputs: dict, image_token_id: int | None,
            counts: Sequence[int], notes: str = "") -> FamilyModel:
    model = model.float().eval()
    return FamilyModel(model_type, model, inputs, image_token_id, tuple(int(c) for c in counts), notes)


def _from_config(config, attn_implementation: str | dict = "sdpa") -> PreTrainedModel:
    return AutoModelForImageTextToText.from_config(config, attn_implementation=attn_implementation)


def _build(config_cls, seed: int, attn_implementation: str | dict = "sdpa", **config_kwargs) -> PreTrainedModel:
    torch.manual_seed(seed)
    return _from_config(config_cls(**config_kwargs), attn_implementation)


# ------------------------------------------------------------------- LLaVA-style (CLIP/SigLIP → projector → decoder)


def build_llava(seed: int = 0) -> FamilyModel:
    from transformers import LlavaConfig

    model = _build(LlavaConfig, seed, vision_config=_clip(), text_config=_llama_text(),
                   image_token_index=IMAGE, vision_feature_layer=-2, vision_feature_select_strategy="default",
                   image_seq_length=16, pad_token_id=PAD)
    n = (56 // 14) ** 2
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("llava", model, inputs, IMAGE, [n, n])


def build_vipllava(seed: int = 0) -> FamilyModel:
    from transformers import VipLlavaConfig

    model = _build(VipLlavaConfig, seed, vision_config=_clip(layers=2), text_config=_llama_text(),
                   image_token_index=IMAGE, vision_feature_layer=[-2, -1], image_seq_length=16)
    n = (56 // 14) ** 2
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("vipllava", model, inputs, IMAGE, [n, n])


def build_video_llava(seed: int = 0) -> FamilyModel:
    from transformers import VideoLlavaConfig

    model = _build(VideoLlavaConfig, seed, vision_config=_clip(), text_config=_llama_text(),
                   image_token_index=IMAGE, video_token_index=IMAGE + 1, vision_feature_layer=-2,
                   vision_feature_select_strategy="default", image_seq_length=16, video_seq_length=8 * 17)
    n = (56 // 14) ** 2
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("video_llava", model, inputs, IMAGE, [n, n])


def _anyres_count(model: PreTrainedModel, pixel_values: Tensor, image_sizes: Tensor, **kwargs) -> list[int]:
    """Visual feature rows per image as the model packs them (anyres tiles, unpadding, newlines)."""
    with torch.no_grad():
        features = model.model.get_image_features(pixel_values, image_sizes, **kwargs).pooler_output
    return [int(f.shape[0]) for f in features]


def _anyres(model_type: str, model: PreTrainedModel, side: int, seed: int, notes: str) -> FamilyModel:
    """Two images of different aspect ratios, 1 base tile + 2 anyres tiles each (5-D ``pixel_values``)."""
    image_sizes = torch.tensor([[side, 2 * side], [2 * side, side]])
    pixel_values = _pixels(seed, 2, 3, 3, side, side)
    counts = _anyres_count(model, pixel_values, image_sizes)
    input_ids, attention_mask = _prompts([[IMAGE] * c for c in counts], seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                  image_sizes=image_sizes)
    return _finish(model_type, model, inputs, IMAGE, counts, notes)


def build_llava_next(seed: int = 0) -> FamilyModel:
    from transformers import LlavaNextConfig

    side = 28
    model = _build(LlavaNextConfig, seed, vision_config=_clip(image_size=side), text_config=_llama_text(),
                   image_token_index=IMAGE, vision_feature_layer=-2, vision_feature_select_strategy="default",
                   image_grid_pinpoints=[[side, 2 * side], [2 * side, side], [2 * side, 2 * side]], image_seq_length=4)
    return _anyres("llava_next", model, side, seed, "anyres: per-image counts differ (unpadding + newline)")


def build_llava_onevision(seed: int = 0) -> FamilyModel:
    from transformers import LlavaOnevisionConfig

    side = 28
    model = _build(LlavaOnevisionConfig, seed, vision_config=_siglip(image_size=side),
                   text_config=_text_config("qwen2"), image_token_index=IMAGE, video_token_index=IMAGE + 1,
                   vision_feature_layer=-1, vision_feature_select_strategy="full",
                   image_grid_pinpoints=[[side, 2 * side], [2 * side, side], [2 * side, 2 * side]])
    return _anyres("llava_onevision", model, side, seed, "anyres: per-image counts differ")


# --------------------------------------------------------------------------- other single-tower families


def build_mistral3(seed: int = 0) -> FamilyModel:
    """Pixtral tower (2-D RoPE, variable image sizes) → patch merger → Mistral. Rows of [IMG] tokens
    separated by [IMG_BREAK], the last row closed by [IMG_END] (only [IMG] receives features)."""
    from transformers import Mistral3Config

    img, brk, end = IMAGE, IMAGE + 1, IMAGE + 2
    model = _build(Mistral3Config, seed,
                   vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, image_size=56, patch_size=14, head_dim=8),
                   text_config=_text_config("mistral", head_dim=16, sliding_window=None),
                   image_token_index=img, spatial_merge_size=2, vision_feature_layer=-1)
    sizes = [(56, 56), (28, 56)]  # (height, width): 2×2 and 1×2 merged tokens
    blocks, counts = [], []
    for height, width in sizes:
        rows, cols = height // 28, width // 28
        block = []
        for r in range(rows):
            block += [img] * cols + [brk if r < rows - 1 else end]
        blocks.append(block)
        counts.append(rows * cols)
    input_ids, attention_mask = _prompts(blocks, seed)
    pixel_values = _pixels(seed, 2, 3, 56, 56)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                  image_sizes=torch.tensor(sizes))
    return _finish("mistral3", model, inputs, img, counts, "[IMG_BREAK]/[IMG_END] rows; different image sizes")


def _cohere2_text() -> dict:
    """A Cohere2 decoder: a sliding-window layer (window 8), then a global layer without positions (NoPE)."""
    return _text_config("cohere2", head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"])


def _cohere2_family(model_type: str, model: PreTrainedModel, boi: int, eoi: int, seed: int) -> FamilyModel:
    """Inputs of the two SigLIP → pixel-shuffle → Cohere2 families: <boi> [IMG]*4 <eoi> on 56-px images."""
    n = (56 // 14 // 2) ** 2
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish(model_type, model, inputs, IMAGE, [n, n], "Cohere2: sliding window 8 on layer 0, NoPE layer 1")


def build_aya_vision(seed: int = 0) -> FamilyModel:
    """SigLIP → pixel-shuffle projector → Cohere2 (sliding-window RoPE layers + NoPE global layers)."""
    from transformers import AyaVisionConfig

    boi, eoi = IMAGE + 1, IMAGE + 2
    model = _build(AyaVisionConfig, seed, vision_config=_siglip(layers=1), text_config=_cohere2_text(),
                   image_token_index=IMAGE, downsample_factor=2, vision_feature_layer=-1,
                   vision_feature_select_strategy="full")
    return _cohere2_family("aya_vision", model, boi, eoi, seed)


def build_cohere2_vision(seed: int = 0) -> FamilyModel:
    from transformers import Cohere2VisionConfig

    boi, eoi = IMAGE + 1, IMAGE + 2
    model = _build(Cohere2VisionConfig, seed, vision_config=_siglip(layers=1), text_config=_cohere2_text(),
                   image_token_id=IMAGE, downsample_factor=2, alignment_intermediate_size=64)
    return _cohere2_family("cohere2_vision", model, boi, eoi, seed)


def build_got_ocr2(seed: int = 0) -> FamilyModel:
    """SAM-style windowed ViT → two stride-2 convs → Qwen2. <img> [IMG]*n </img>."""
    from transformers import GotOcr2Config

    boi, eoi = IMAGE + 1, IMAGE + 2
    # The SAM-style tower has no sdpa path (GotOcr2PreTrainedModel._supports_sdpa = False): eager there.
    model = _build(GotOcr2Config, seed,
                   attn_implementation={"": "eager", "vision_config": "eager", "text_config": "sdpa"},
                   vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=4,
                                      image_size=128, patch_size=16, window_size=4, global_attn_indexes=[1],
                                      mlp_dim=64),
                   text_config=_text_config("qwen2"), image_token_index=IMAGE, image_seq_length=4)
    n = 4  # 128 / 16 = 8 patches per side → two stride-2 convs → 2×2
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 128, 128))
    return _finish("got_ocr2", model, inputs, IMAGE, [n, n])


def build_internvl(seed: int = 0) -> FamilyModel:
    """InternViT → pixel shuffle (0.5) → MLP → Qwen2. <img> <IMG_CONTEXT>*n </img>."""
    from transformers import InternVLConfig

    boi, eoi = IMAGE + 1, IMAGE + 2
    model = _build(InternVLConfig, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      image_size=[56, 56], patch_size=[14, 14]),
                   text_config=_text_config("qwen2"), image_token_id=IMAGE, image_seq_length=4,
                   downsample_ratio=0.5, vision_feature_layer=-1, vision_feature_select_strategy="default")
    n = (56 // 14 // 2) ** 2
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("internvl", model, inputs, IMAGE, [n, n])


def build_ovis2(seed: int = 0) -> FamilyModel:
    """Ovis2: visual tokens are probability vectors over a visual vocabulary, embedded by a table; the
    five visual indicator tokens (image start/end, …) are ALSO replaced by visual-table embeddings."""
    from transformers import Ovis2Config

    indicators = [IMAGE + 1 + i for i in range(5)]
    model = _build(Ovis2Config, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      image_size=56, patch_size=14, vocab_size=64, hidden_stride=2,
                                      num_visual_indicator_tokens=5),
                   text_config=_text_config("qwen2"), image_token_id=IMAGE, visual_indicator_token_ids=indicators,
                   vocab_size=VOCAB, hidden_size=HIDDEN)
    n = (56 // 14 // 2) ** 2
    # processor layout: <ovis_image_atom> start … [IMAGE]*n … end (indicator ids 0 and 1 of the table)
    block = [indicators[0]] + [IMAGE] * n + [indicators[1]]
    input_ids, attention_mask = _prompts([block] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("ovis2", model, inputs, IMAGE, [n, n], "indicator tokens get visual-table embeddings too")


def build_janus(seed: int = 0) -> FamilyModel:
    """SigLIP-like tower → aligner MLP → Llama (a VQ-VAE for generation is built but unused here)."""
    from transformers import JanusConfig

    boi, eoi = IMAGE + 1, IMAGE + 2
    model = _build(JanusConfig, seed,
                   vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=56,
                                      patch_size=14, projection_dim=HIDDEN, depth=2, num_image_tokens=16),
                   vq_config=dict(embed_dim=8, num_embeddings=32, latent_channels=32, base_channels=32,
                                  channel_multiplier=[1, 1], num_res_blocks=1, projection_dim=HIDDEN,
                                  image_token_embed_dim=HIDDEN, num_hidden_layers=1),
                   text_config=_llama_text(), image_token_id=IMAGE)
    n = (56 // 14) ** 2
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("janus", model, inputs, IMAGE, [n, n])


# ------------------------------------------------------------------- Gemma-based (bidirectional image attention)


def build_paligemma(seed: int = 0) -> FamilyModel:
    """SigLIP → linear → Gemma. Prompt = image tokens, BOS, prefix text, "\n"; the whole prefix
    (token_type_ids == 0) attends bidirectionally; positions count from 1."""
    from transformers import PaliGemmaConfig

    model = _build(PaliGemmaConfig, seed, vision_config=_siglip(layers=1, projection_dim=HIDDEN),
                   text_config=_text_config("gemma", head_dim=16, hidden_act="gelu_pytorch_tanh"),
                   image_token_index=IMAGE, vocab_size=VOCAB, projection_dim=HIDDEN, hidden_size=HIDDEN)
    n = (56 // 14) ** 2
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed, image_first=True)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56),
                  token_type_ids=torch.zeros_like(input_ids))  # processor: 0 for the prefix (all of a prompt)
    return _finish("paligemma", model, inputs, IMAGE, [n, n], "prefix-LM mask; 1-based positions")


def build_gemma3(seed: int = 0) -> FamilyModel:
    """SigLIP → avg-pool + RMSNorm projector → Gemma3 (sliding/global layers, q/k norm). Prompt:
    BOS … "\n\n" <start_of_image> [IMG]*n <end_of_image> "\n\n" …; image tokens attend bidirectionally
    within their image (token_type_ids == 1)."""
    from transformers import Gemma3Config

    boi, eoi = IMAGE + 1, IMAGE + 2
    model = _build(Gemma3Config, seed, vision_config=_siglip(layers=1),
                   text_config=dict(model_type="gemma3_text", vocab_size=VOCAB, hidden_size=HIDDEN,
                                    intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    num_key_value_heads=KV_HEADS, head_dim=16, sliding_window=8,
                                    layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
                                    pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, query_pre_attn_scalar=16),
                   mm_tokens_per_image=4, boi_token_index=boi, eoi_token_index=eoi, image_token_index=IMAGE)
    # Gemma3PreTrainedModel._init_weights zero-initialises mm_input_projection_weight, so a random-init
    # Gemma 3 scatters all-zero image features whatever the pixels; draw it like the other weights instead.
    with torch.no_grad():
        weight = model.model.multi_modal_projector.mm_input_projection_weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed + 3)) * 0.02)
    n = 4
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    token_type_ids = (input_ids == IMAGE).long()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56),
                  token_type_ids=token_type_ids)
    return _finish("gemma3", model, inputs, IMAGE, [n, n], "bidirectional image block; sliding window 8 on layer 0")


# ------------------------------------------------------------------- Idefics family (other merge code paths)


def _idefics_block(fake: int, glob: int | None, n: int) -> list[int]:
    return [fake] + ([glob] if glob is not None else []) + [IMAGE] * n + [fake]


def _idefics3_layout(config_class, model_type: str, seed: int, notes: str = "") -> FamilyModel:
    """Idefics3 and SmolVLM share the layout: SigLIP-like tower → pixel-shuffle connector → Llama, one
    unsplit 56-px image as <fake_token_around_image><global-img><image>*4<fake…>."""
    fake, glob = IMAGE + 1, IMAGE + 2
    model = _build(config_class, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      image_size=56, patch_size=14),
                   text_config=_llama_text(), image_token_id=IMAGE, scale_factor=2, pad_token_id=PAD)
    n = (56 // 14 // 2) ** 2
    input_ids, attention_mask = _prompts([_idefics_block(fake, glob, n)] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 1, 3, 56, 56),
                  pixel_attention_mask=torch.ones(2, 1, 56, 56, dtype=torch.bool))
    return _finish(model_type, model, inputs, IMAGE, [n, n], notes)


def build_idefics3(seed: int = 0) -> FamilyModel:
    """Merging by ``inputs_merger`` (there is no ``get_placeholder_mask``)."""
    from transformers import Idefics3Config

    return _idefics3_layout(Idefics3Config, "idefics3", seed, "inputs_merger, no get_placeholder_mask")


def build_smolvlm(seed: int = 0) -> FamilyModel:
    from transformers import SmolVLMConfig

    return _idefics3_layout(SmolVLMConfig, "smolvlm", seed)


def build_idefics2(seed: int = 0) -> FamilyModel:
    """SigLIP-like tower → perceiver resampler (n latents) → Mistral; merging by ``inputs_merger``."""
    from transformers import Idefics2Config

    fake = IMAGE + 1
    n = 4
    model = _build(Idefics2Config, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      image_size=56, patch_size=14),
                   perceiver_config=dict(hidden_size=HIDDEN, resampler_n_latents=n, resampler_depth=1,
                                         resampler_n_heads=4, resampler_head_dim=16, num_key_value_heads=2),
                   text_config=_text_config("mistral", head_dim=16, sliding_window=None),
                   image_token_id=IMAGE, pad_token_id=PAD)
    input_ids, attention_mask = _prompts([_idefics_block(fake, None, n)] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 1, 3, 56, 56),
                  pixel_attention_mask=torch.ones(2, 1, 56, 56, dtype=torch.bool))
    return _finish("idefics2", model, inputs, IMAGE, [n, n], "perceiver resampler; inputs_merger")


def build_granite_docling(seed: int = 0) -> FamilyModel:
    """SigLIP-style tile encoder + pixel-shuffle connector with DeepStack features added inside the
    decoder; ``get_placeholder_mask(input_ids, inputs_embeds, image_features)`` is called POSITIONALLY."""
    from transformers import GraniteDoclingConfig

    fake, glob = IMAGE + 1, IMAGE + 2
    model = _build(GraniteDoclingConfig, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      image_size=32, patch_size=8, out_hidden_size=HIDDEN, scale_factor=2,
                                      deepstack_visual_indexes=[0], use_fine_route=False),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                    max_position_embeddings=512, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
                   image_token_id=IMAGE, pad_token_id=PAD)
    n = (32 // 8 // 2) ** 2
    input_ids, attention_mask = _prompts([_idefics_block(fake, glob, n)] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 1, 3, 32, 32),
                  pixel_attention_mask=torch.ones(2, 1, dtype=torch.bool))
    return _finish("granite_docling", model, inputs, IMAGE, [n, n], "DeepStack; positional get_placeholder_mask call")


# --------------------------------------------------------------------------- Q-Former families


def _qformer(vision_hidden: int) -> dict:
    return dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                encoder_hidden_size=vision_hidden, max_position_embeddings=64, cross_attention_frequency=1)


def _blip_vision() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                image_size=56, patch_size=14)


def build_instructblip(seed: int = 0) -> FamilyModel:
    """EVA-style ViT → instruction-aware Q-Former (n query tokens) → Llama (Vicuna). Prompt: the n image
    tokens first, then BOS and the text; ``get_placeholder_mask`` takes no image features."""
    from transformers import InstructBlipConfig

    n = 4
    model = _build(InstructBlipConfig, seed, vision_config=_blip_vision(),
                   qformer_config=_qformer(32), text_config=_llama_text(), num_query_tokens=n,
                   image_token_index=IMAGE)
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed, image_first=True)
    qformer_ids, qformer_mask = _left_pad([[5, 6, 7, 8], [9, 10]])
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56),
                  qformer_input_ids=qformer_ids, qformer_attention_mask=qformer_mask)
    return _finish("instructblip", model, inputs, IMAGE, [n, n], "Vicuna (Llama) decoder as in instructblip-vicuna")


def build_blip_2(seed: int = 0) -> FamilyModel:
    """ViT → Q-Former → OPT (learned absolute positions, no RoPE)."""
    from transformers import Blip2Config

    n = 4
    model = _build(Blip2Config, seed, vision_config=_blip_vision(), qformer_config=_qformer(32),
                   text_config=dict(model_type="opt", vocab_size=VOCAB, hidden_size=HIDDEN, ffn_dim=INTERMEDIATE,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS, word_embed_proj_dim=HIDDEN,
                                    max_position_embeddings=512, pad_token_id=PAD, bos_token_id=BOS,
                                    eos_token_id=EOS),
                   num_query_tokens=n, image_token_index=IMAGE)
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed, image_first=True)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("blip-2", model, inputs, IMAGE, [n, n], "OPT: no RoPE")


# --------------------------------------------------------------------------- Llama 4


def _llama4_add_image_outputs(_module, _args, output):
    if not isinstance(output, tuple) and "image_outputs" not in output.__dict__:
        object.__setattr__(output, "image_outputs", None)
    return output


def build_llama4(seed: int = 0) -> FamilyModel:
    """Llama 4: ViT with pixel shuffle → projector → MoE decoder with chunked attention (chunk 8) on RoPE
    layers and a NoPE global layer. Single tile: <|image_start|><|image|><|patch|>*n<|image_end|>."""
    from transformers import Llama4Config

    start, image, end = IMAGE + 1, IMAGE + 2, IMAGE + 3
    model = _build(Llama4Config, seed,
                   vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                                      vision_output_dim=32, image_size=56, patch_size=14, pixel_shuffle_ratio=0.5,
                                      projector_input_dim=32, projector_output_dim=32),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    intermediate_size_mlp=INTERMEDIATE, num_hidden_layers=LAYERS,
                                    num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=16,
                                    num_local_experts=2, num_experts_per_tok=1, interleave_moe_layer_step=1,
                                    no_rope_layers=[1, 0], attention_chunk_size=8,
                                    layer_types=["chunked_attention", "full_attention"], max_position_embeddings=512,
                                    pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
                   boi_token_index=start, eoi_token_index=end, image_token_index=IMAGE)
    # transformers 5.24 bug: Llama4ForConditionalGeneration.forward reads ``outputs.image_outputs`` from the
    # language model's MoeCausalLMOutputWithPast, which has no such field (modeling_llama4.py:1318), so every
    # return_dict forward raises AttributeError. A forward hook on the language model adds the missing field
    # (a hook, not a patched method, so that copy.deepcopy of the model keeps working).
    model.language_model.register_forward_hook(_llama4_add_image_outputs)
    n = int((56 // 14) ** 2 * 0.5 ** 2)
    input_ids, attention_mask = _prompts([[start, image] + [IMAGE] * n + [end]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56))
    return _finish("llama4", model, inputs, IMAGE, [n, n], "chunked attention (8) on layer 0; NoPE layer 1; MoE")


# --------------------------------------------------------------------------- VQ-token families (image = discrete codes)


def _chameleon_vocabulary(codes: int, first_id: int, image_id: int) -> dict[str, int]:
    def name(code: int) -> str:
        return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"

    vocabulary = {name(code): first_id + code for code in range(codes)}
    vocabulary["<image>"] = image_id
    return vocabulary


def build_chameleon(seed: int = 0) -> FamilyModel:
    """Chameleon: VQ-GAN codes mapped to BPE ids and embedded by the text embedding; per-head q/k
    LayerNorm applied on [batch*seq, heads, head_dim]. <racm3:break>? boi <image>*n eoi."""
    from transformers import ChameleonConfig

    boi, eoi = IMAGE + 1, IMAGE + 2
    vq = dict(embed_dim=8, num_embeddings=16, latent_channels=8, resolution=32, base_channels=32,
              channel_multiplier=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[])
    torch.manual_seed(seed)
    config = ChameleonConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                             num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                             max_position_embeddings=512, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                             vq_config=vq, vocabulary_map=_chameleon_vocabulary(16, 200, IMAGE), image_token_id=IMAGE)
    model = _from_config(config)
    n = (32 // 8) ** 2
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 32, 32))
    return _finish("chameleon", model, inputs, IMAGE, [n, n], "image features = text embeddings of VQ codes")


def build_emu3(seed: int = 0) -> FamilyModel:
    """Emu3: VQ codes (h × w per image) plus one end-of-line token per row, all scattered into the <image>
    placeholders (h × (w + 1) of them); the EOL rows get a TEXT embedding (<|extra_200|>)."""
    from transformers import Emu3Config

    boi, eoi, eol = IMAGE + 1, IMAGE + 2, IMAGE + 3
    codes = 16
    vocabulary = {f"<|visual token{code:06d}|>": 200 + code for code in range(codes)}
    vocabulary.update({"<image>": IMAGE, "<|extra_200|>": eol})
    torch.manual_seed(seed)
    config = Emu3Config(
        vq_config=dict(codebook_size=codes, embed_dim=8, latent_channels=8, base_channels=32,
                       channel_multiplier=[1, 1, 1],
                       num_res_blocks=1, attn_resolutions=[], temporal_downsample_factor=1, hidden_size=32,
                       num_attention_heads=1),
        text_config=_text_config("emu3_text_model", attention_dropout=0.0), vocabulary_map=vocabulary,
        image_token_id=IMAGE)
    model = _from_config(config)
    side = 16
    h = w = side // 4
    n = h * (w + 1)
    input_ids, attention_mask = _prompts([[boi] + [IMAGE] * n + [eoi]] * 2, seed)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, side, side),
                  image_sizes=torch.tensor([[side, side]] * 2))
    return _finish("emu3", model, inputs, IMAGE, [n, n], "EOL rows inside the image placeholder run")


# ------------------------------------------------------------------- Qwen-VL style (3-D mRoPE, flattened patches)

QWEN_GRIDS = ((1, 4, 4), (1, 2, 4))  # (t, h, w) patches per image: 4 and 2 merged tokens (merge 2×2)


def _qwen_inputs(seed: int, patch: int, start: int, end: int, image: int = IMAGE,
                 grids: Sequence[tuple[int, int, int]] = QWEN_GRIDS) -> tuple[dict, list[int]]:
    counts = [t * h * w // 4 for t, h, w in grids]
    input_ids, attention_mask = _prompts([[start] + [image] * n + [end] for n in counts], seed)
    n_patches = sum(t * h * w for t, h, w in grids)
    inputs = dict(
        input_ids=input_ids, attention_mask=attention_mask,
        pixel_values=_pixels(seed, n_patches, 3 * 2 * patch * patch),
        image_grid_thw=torch.tensor(grids),
        mm_token_type_ids=(input_ids == image).int(),
    )
    return inputs, counts


def _mrope(head_dim: int, partial: float = 1.0) -> list[int]:
    half = int(head_dim * partial) // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


def build_qwen2_vl(seed: int = 0) -> FamilyModel:
    """Qwen2-VL: ViT + 2×2 merger → Qwen2 with 3-D mRoPE (mrope_section in rope_parameters, as in the
    real checkpoints). <|vision_start|> <|image_pad|>*n <|vision_end|>; images of different grids."""
    from transformers import Qwen2VLConfig

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Qwen2VLConfig, seed,
                   vision_config=dict(depth=1, embed_dim=32, hidden_size=HIDDEN, num_heads=4, mlp_ratio=2,
                                      patch_size=14,
                                      spatial_merge_size=2, temporal_patch_size=2),
                   text_config=_text_config("qwen2_vl_text", rope_parameters=dict(
                       rope_type="default", rope_theta=10000.0, mrope_section=_mrope(HIDDEN // HEADS))),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, vision_start_token_id=start, vision_end_token_id=end)
    inputs, counts = _qwen_inputs(seed, 14, start, end)
    return _finish("qwen2_vl", model, inputs, IMAGE, counts, "3-D mRoPE; per-image counts differ")


def build_qwen2_5_vl(seed: int = 0) -> FamilyModel:
    from transformers import Qwen2_5_VLConfig

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Qwen2_5_VLConfig, seed,
                   vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4,
                                      out_hidden_size=HIDDEN,
                                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                                      fullatt_block_indexes=[0]),
                   text_config=_text_config("qwen2_5_vl_text", rope_parameters=dict(
                       rope_type="default", rope_theta=10000.0, mrope_section=_mrope(HIDDEN // HEADS))),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, vision_start_token_id=start, vision_end_token_id=end)
    inputs, counts = _qwen_inputs(seed, 14, start, end)
    return _finish("qwen2_5_vl", model, inputs, IMAGE, counts, "3-D mRoPE; windowed ViT")


def build_qwen3_vl(seed: int = 0) -> FamilyModel:
    """Qwen3-VL from the DEFAULT text rope_parameters (no ``mrope_section`` key: the rotary embedding
    falls back to [24, 20, 20], interleaved), so head_dim is the default 128. DeepStack features are
    added to the image positions of the first decoder layers."""
    from transformers import Qwen3VLConfig

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Qwen3VLConfig, seed,
                   vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4,
                                      out_hidden_size=HIDDEN,
                                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                                      num_position_embeddings=16, deepstack_visual_indexes=[0]),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=LAYERS, num_attention_heads=2, num_key_value_heads=1,
                                    head_dim=128,
                                    max_position_embeddings=512, pad_token_id=PAD),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, vision_start_token_id=start, vision_end_token_id=end)
    inputs, counts = _qwen_inputs(seed, 16, start, end)
    return _finish("qwen3_vl", model, inputs, IMAGE, counts, "default rope_parameters (no mrope_section); DeepStack")


def build_glm4v(seed: int = 0) -> FamilyModel:
    """GLM-4.1V: ViT (+ interpolated abs. pos. emb.) → merger → GLM4 decoder with partial, 3-D mRoPE.
    <|begin_of_image|> <|image|>*n <|end_of_image|>."""
    from transformers import Glm4vConfig

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Glm4vConfig, seed,
                   vision_config=dict(depth=1, hidden_size=32, num_heads=4, image_size=56, patch_size=14,
                                      out_hidden_size=HIDDEN, intermediate_size=64, spatial_merge_size=2,
                                      temporal_patch_size=2),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                    max_position_embeddings=512, pad_token_id=PAD,
                                    rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                         partial_rotary_factor=0.5,
                                                         mrope_section=_mrope(HIDDEN // HEADS, 0.5))),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, image_start_token_id=start, image_end_token_id=end,
                   video_start_token_id=IMAGE + 4, video_end_token_id=IMAGE + 5)
    inputs, counts = _qwen_inputs(seed, 14, start, end)
    return _finish("glm4v", model, inputs, IMAGE, counts, "partial mRoPE (half the head dim)")


# --------------------------------------------------------------------------- expected-unsupported architectures


def build_mllama(seed: int = 0) -> FamilyModel:
    """Llama 3.2 Vision: the image enters through gated CROSS-attention layers (decoder layer 1 here);
    the single <|image|> token gets no visual feature, and cross-attention layers have no self_attn."""
    from transformers import MllamaConfig

    model = _build(MllamaConfig, seed,
                   vision_config=dict(hidden_size=32, num_hidden_layers=1, num_global_layers=1, attention_heads=4,
                                      intermediate_size=64, intermediate_layers_indices=[0], vision_output_dim=64,
                                      image_size=28, patch_size=14, max_num_tiles=1, supported_aspect_ratios=[[1, 1]]),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=3, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                    cross_attention_layers=[1], max_position_embeddings=512, pad_token_id=PAD,
                                    bos_token_id=BOS, eos_token_id=EOS),
                   image_token_index=IMAGE)
    input_ids, attention_mask = _prompts([[IMAGE]] * 2, seed, image_first=True)
    cross_attention_mask = attention_mask[:, :, None, None].clone()  # every real token sees the one tile
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 1, 1, 3, 28, 28),
                  aspect_ratio_ids=torch.ones(2, 1, dtype=torch.long),
                  aspect_ratio_mask=torch.ones(2, 1, 1, dtype=torch.long),
                  cross_attention_mask=cross_attention_mask)
    return _finish("mllama", model, inputs, IMAGE, [0, 0], "cross-attention: no visual token in the sequence")


def build_kosmos2(seed: int = 0) -> FamilyModel:
    """Kosmos-2: <s> <image> [latent queries] </image> text; visual positions given by
    ``image_embeds_position_mask`` (no image token id); sinusoidal positions (no RoPE)."""
    from transformers import Kosmos2Config

    boi, eoi = IMAGE + 1, IMAGE + 2
    n = 4
    model = _build(Kosmos2Config, seed,
                   text_config=dict(vocab_size=VOCAB, embed_dim=HIDDEN, layers=LAYERS, ffn_dim=INTERMEDIATE,
                                    attention_heads=HEADS, max_position_embeddings=512, pad_token_id=PAD,
                                    bos_token_id=BOS, eos_token_id=EOS, dropout=0.0, attention_dropout=0.0),
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                      image_size=56, patch_size=14),
                   latent_query_num=n)
    generator = torch.Generator().manual_seed(seed + 1)
    sequences = [[BOS, boi, *_text(generator, n), eoi, *_text(generator, SUFFIX_LENGTHS[row])] for row in range(2)]
    input_ids, attention_mask = _left_pad(sequences)
    position_mask = torch.zeros_like(input_ids)
    for row in range(2):
        start = int((input_ids[row] == boi).nonzero()[0]) + 1
        position_mask[row, start:start + n] = 1
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=_pixels(seed, 2, 3, 56, 56),
                  image_embeds_position_mask=position_mask)
    return _finish("kosmos-2", model, inputs, None, [n, n],
                   "no image token id: positions from image_embeds_position_mask")


def build_florence2(seed: int = 0) -> FamilyModel:
    """Florence-2: DaViT → projector → BART encoder-decoder; image tokens are in the ENCODER input."""
    from transformers import Florence2Config

    model = _build(Florence2Config, seed,
                   vision_config=dict(depths=[1, 1], patch_size=[7, 3], patch_stride=[4, 2], patch_padding=[3, 1],
                                      patch_prenorm=[False, True], embed_dim=[16, 32], num_heads=[2, 4],
                                      num_groups=[2, 4],
                                      window_size=2, projection_dim=HIDDEN, max_position_embeddings=16,
                                      max_temporal_embeddings=4, drop_path_rate=0.0),
                   text_config=dict(vocab_size=VOCAB, d_model=HIDDEN, encoder_layers=1, decoder_layers=1,
                                    encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
                                    encoder_ffn_dim=INTERMEDIATE,
                                    decoder_ffn_dim=INTERMEDIATE, max_position_embeddings=512, pad_token_id=PAD,
                                    bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=EOS),
                   image_token_id=IMAGE)
    pixel_values = _pixels(seed, 2, 3, 32, 32)
    with torch.no_grad():
        n = int(model.model.get_image_features(pixel_values).pooler_output.shape[1])
    input_ids, attention_mask = _prompts([[IMAGE] * n] * 2, seed, image_first=True)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                  decoder_input_ids=torch.tensor([[EOS, BOS, 20], [EOS, BOS, 21]]))
    return _finish("florence2", model, inputs, IMAGE, [n, n], "encoder-decoder: image tokens in the BART encoder")


def build_fuyu(seed: int = 0) -> FamilyModel:
    """Fuyu: raw patches → linear → Persimmon (fused query_key_value, partial RoPE, q/k LayerNorm).
    Image rows of |SPEAKER| placeholders each closed by |NEWLINE|, then BOS and text."""
    from transformers import FuyuConfig

    newline = IMAGE + 1
    model = _build(FuyuConfig, seed,
                   text_config=dict(model_type="persimmon", vocab_size=VOCAB, hidden_size=HIDDEN,
                                    intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    max_position_embeddings=512, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
                   patch_size=14, image_size=28, image_token_id=IMAGE, pad_token_id=PAD)
    rows, cols = 2, 2
    block = ([IMAGE] * cols + [newline]) * rows
    input_ids, attention_mask = _prompts([block] * 2, seed, image_first=True)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  pixel_values=_pixels(seed, 2, rows * cols, 14 * 14 * 3))
    return _finish("fuyu", model, inputs, IMAGE, [rows * cols] * 2, "no vision tower; fused query_key_value")


def build_qwen3_5(seed: int = 0) -> FamilyModel:
    """Qwen3.5: hybrid decoder (Gated-DeltaNet linear-attention layer 0, gated full attention layer 1,
    partial interleaved mRoPE)."""
    from transformers import Qwen3_5Config

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Qwen3_5Config, seed,
                   vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4,
                                      out_hidden_size=HIDDEN,
                                      patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                                      num_position_embeddings=16),
                   text_config=dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                    head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=8,
                                    linear_value_head_dim=8,
                                    linear_num_key_heads=2, linear_num_value_heads=4,
                                    layer_types=["linear_attention", "full_attention"], max_position_embeddings=512,
                                    pad_token_id=PAD,
                                    rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                         partial_rotary_factor=0.5,
                                                         mrope_section=_mrope(16, 0.5), mrope_interleaved=True)),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, vision_start_token_id=start, vision_end_token_id=end)
    inputs, counts = _qwen_inputs(seed, 16, start, end)
    return _finish("qwen3_5", model, inputs, IMAGE, counts, "linear-attention layer 0")


def build_lfm3_vl(seed: int = 0) -> FamilyModel:
    """LFM3-VL: conv/attention vision tower → projector → LFM3 hybrid decoder (short-conv layer 0,
    full attention layer 1, sliding attention layer 2)."""
    from transformers import Lfm3VlConfig

    start, end = IMAGE + 1, IMAGE + 2
    model = _build(Lfm3VlConfig, seed,
                   vision_config=dict(hidden_size=32, intermediate_size=64, patch_size=14, spatial_merge_size=2,
                                      temporal_patch_size=2, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, layer_types=["conv", "full_attention"]),
                   text_config=dict(model_type="lfm3", vocab_size=VOCAB, hidden_size=HIDDEN,
                                    intermediate_size=INTERMEDIATE,
                                    num_hidden_layers=3, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                                    head_dim=16, layer_types=["conv", "full_attention", "sliding_attention"],
                                    sliding_window=8, conv_L_cache=3, max_position_embeddings=512, pad_token_id=PAD,
                                    bos_token_id=BOS, eos_token_id=EOS),
                   image_token_id=IMAGE, video_token_id=IMAGE + 3, vision_start_token_id=start, vision_end_token_id=end,
                   projector_hidden_size=64)
    inputs, counts = _qwen_inputs(seed, 14, start, end)
    del inputs["mm_token_type_ids"]  # 1-D positions: the processor returns no mm_token_type_ids
    return _finish("lfm3_vl", model, inputs, IMAGE, counts, "short-conv layer 0; sliding window 8 on layer 2")


CATALOG: dict[str, Callable[..., FamilyModel]] = {
    "llava": build_llava,
    "vipllava": build_vipllava,
    "video_llava": build_video_llava,
    "llava_next": build_llava_next,
    "llava_onevision": build_llava_onevision,
    "mistral3": build_mistral3,
    "aya_vision": build_aya_vision,
    "cohere2_vision": build_cohere2_vision,
    "got_ocr2": build_got_ocr2,
    "internvl": build_internvl,
    "ovis2": build_ovis2,
    "janus": build_janus,
    "paligemma": build_paligemma,
    "gemma3": build_gemma3,
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "idefics2": build_idefics2,
    "granite_docling": build_granite_docling,
    "instructblip": build_instructblip,
    "blip-2": build_blip_2,
    "llama4": build_llama4,
    "chameleon": build_chameleon,
    "emu3": build_emu3,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "glm4v": build_glm4v,
    "mllama": build_mllama,
    "kosmos-2": build_kosmos2,
    "florence2": build_florence2,
    "fuyu": build_fuyu,
    "qwen3_5": build_qwen3_5,
    "lfm3_vl": build_lfm3_vl,
}

# Every model_type the capture study asked for exists in transformers 5.24.0.
SKIPPED: dict[str, str] = {}

# Families a key-capture harness cannot support by construction (they build and run; see the builders).
EXPECTED_UNSUPPORTED: dict[str, str] = {
    "mllama": "images enter through gated cross-attention layers; no visual token is in the self-attention sequence",
    "blip-2": "OPT decoder: learned absolute positions, no rotary embedding",
    "kosmos-2": "no image token id (image_embeds_position_mask) and sinusoidal positions, no rotary embedding",
    "florence2": "encoder-decoder (BART): image tokens go through a bidirectional encoder",
    "fuyu": "Persimmon attention fuses q/k/v in one query_key_value projection (and norms keys in k_layernorm)",
}
