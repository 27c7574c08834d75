"""A real byte-level BPE tokenizer, trained offline on a small procedural corpus.

The tiny checkpoints need a tokenizer that behaves like a hub one (special tokens, chat template,
padding side, save/load round trip) without downloading anything. Training on a fixed corpus with the
`tokenizers` library is deterministic, so the same vocabulary comes out on every machine. The corpus fills
its templates from the built-in benchmarks' word lists (:mod:`bias_suite.benchmarks.vocabulary`): every
object and colour, the first three positions and numbers.
"""

from __future__ import annotations

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from bias_suite.benchmarks.vocabulary import COLOURS, NUMBERS, OBJECTS, POSITIONS

TEMPLATES = (
    "Describe the image.",
    "What is in the picture?",
    "How many {obj}s are there? There are {num} {obj}s.",
    "What colour is the {obj}? The {obj} is {col}.",
    "Where is the {col} {obj}? It is on the {pos}.",
    "The caption says a {col} {obj} is at the {pos} of the photo.",
    "Is there a {obj} in this image? Yes, there is a {col} {obj}.",
    "What word is written in the image? The word is {obj}.",
    "Answer with a single word: {col}.",
    "USER: ASSISTANT: Question: Answer: A. B. C. D. 0 1 2 3 4 5 6 7 8 9 , . ? !",
)


def scene_corpus() -> list[str]:
    """Deterministic English sentences about scenes (objects, colours, counts, positions)."""
    lines = []
    for obj, col, pos, num in itertools.product(OBJECTS, COLOURS, POSITIONS[:3], NUMBERS[:3]):
        for template in TEMPLATES:
            lines.append(template.format(obj=obj, col=col, pos=pos, num=num))
    return lines


def build_tokenizer(
    special_tokens: dict[str, str],
    extra_special_tokens: list[str],
    chat_template: str,
    vocab_size: int = 600,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on :func:`scene_corpus` and wrap it as a transformers tokenizer.

    ``special_tokens`` maps transformers roles (``bos_token``, ``eos_token``, ``pad_token``,
    ``unk_token``) to strings; ``extra_special_tokens`` are added as atomic tokens (image
    placeholders, chat markers). Left padding, as batched multimodal inference expects.
    """
    all_special = list(dict.fromkeys([*special_tokens.values(), *extra_special_tokens]))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=all_special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(scene_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        padding_side="left",
        chat_template=chat_template,
        **special_tokens,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": extra_special_tokens})
    return tokenizer
