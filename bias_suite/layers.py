"""Layer selectors: ``all``, ``0,4,8``, ``0-7``, ``every:4``, ``first_third`` / ``middle_third`` /
``last_third``, and combinations joined by commas (``0,last_third``).

A selector is parsed once (so a typo fails before any model loads) and resolved against a model's
layer count later. The same syntax is used by ``--layers`` and by threshold files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bias_suite.errors import LayerSelectionError

RELATIVE = ("first_third", "middle_third", "last_third")
SYNTAX = ("all, 0,4,8, 0-7, every:4, first_third, middle_third, last_third "
          "(comma-separated; negative indices count from the end)")
_INDEX = re.compile(r"^-?\d+$")
_RANGE = re.compile(r"^(-?\d+)-(-?\d+)$")
_EVERY = re.compile(r"^every:(\d+)$")


@dataclass(frozen=True)
class LayerSelector:
    """A parsed selector; ``text`` is what the user wrote (used in test ids and reports)."""

    text: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> LayerSelector:
        if not isinstance(text, str) or not text.strip():
            raise LayerSelectionError(f"empty layer selector; use {SYNTAX}")
        parts = tuple(part.strip() for part in text.split(","))
        for part in parts:
            if not (part == "all" or part in RELATIVE or _INDEX.match(part) or _RANGE.match(part)
                    or _EVERY.match(part)):
                raise LayerSelectionError(f"unknown layer selector {part!r} in {text!r}; use {SYNTAX}")
            every = _EVERY.match(part)
            if every and int(every.group(1)) < 1:
                raise LayerSelectionError(f"{part!r}: the step of every:N must be >= 1")
        return cls(text.strip(), parts)

    def resolve(self, n_layers: int, model_name: str = "the model",
                attention_layers: Sequence[int] | None = None) -> tuple[int, ...]:
        """Sorted, de-duplicated layer indices in ``0 … n_layers − 1``; out-of-range indices raise.

        attention_layers: the layers that have self-attention, when not all do (hybrid decoders with
        linear-attention, convolution or cross-attention layers). ``all``, ``every:N`` and the thirds then
        count self-attention layers only (``every:2`` is every other one of them), a range keeps those
        inside it, and an explicit index of another layer raises.
        """
        attention = list(range(n_layers) if attention_layers is None else sorted(attention_layers))
        chosen: set[int] = set()
        for part in self.parts:
            if _INDEX.match(part) or _RANGE.match(part):
                layers = set(self._resolve_part(part, n_layers, model_name))
                if _INDEX.match(part) and not layers <= set(attention):
                    raise LayerSelectionError(
                        f"layer {part} of {model_name} has no self-attention: keys exist only in layers {attention}")
                layers &= set(attention)
                if not layers:
                    raise LayerSelectionError(f"layer range {part!r} of {model_name} holds no self-attention layer "
                                              f"(self-attention layers: {attention})")
            else:
                layers = {attention[i] for i in self._resolve_part(part, len(attention), model_name)}
            chosen.update(layers)
        return tuple(sorted(chosen))

    def resolve_within(self, n_layers: int) -> tuple[int, ...]:
        """Like :meth:`resolve`, but indices a model of ``n_layers`` does not have are left out instead of
        raising (a threshold rule written for a deeper model covers nothing here)."""
        chosen: set[int] = set()
        for part in self.parts:
            try:
                chosen.update(self._resolve_part(part, n_layers, "the model"))
            except LayerSelectionError:
                continue
        return tuple(sorted(chosen))

    @staticmethod
    def _resolve_part(part: str, n_layers: int, model_name: str) -> range | list[int]:
        def index(value: str) -> int:
            layer = int(value)
            if not -n_layers <= layer < n_layers:
                raise LayerSelectionError(
                    f"layer {layer} out of range: {model_name} has {n_layers} decoder layers (0–{n_layers - 1})"
                )
            return layer % n_layers

        if part == "all":
            return range(n_layers)
        if part in RELATIVE:
            k = RELATIVE.index(part)
            start, stop = round(k * n_layers / 3), round((k + 1) * n_layers / 3)
            return range(start, max(stop, start + 1))
        if (every := _EVERY.match(part)) is not None:
            return range(0, n_layers, int(every.group(1)))
        if (span := _RANGE.match(part)) is not None:
            low, high = index(span.group(1)), index(span.group(2))
            if low > high:
                raise LayerSelectionError(f"layer range {part!r} is empty (start after end)")
            return range(low, high + 1)
        return [index(part)]
