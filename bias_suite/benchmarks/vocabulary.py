"""The scene words of the rendered built-in benchmarks: objects, colours, positions and numbers.

The shape kinds, colour names, slot names and counts of ``shapes`` and ``conflict`` are words of
:data:`OBJECTS`, :data:`COLOURS`, :data:`POSITIONS` and :data:`NUMBERS`, and ``text-in-image`` renders
words of :data:`OBJECTS`. The built-in tiny checkpoints' tokenizer is trained on a corpus filled from
the same lists (:func:`bias_suite.models.tiny.tokenizer.scene_corpus`): the content and order of each tuple are
part of that corpus, so changing them changes the trained tokenizer and every tiny checkpoint built with it.
"""

from __future__ import annotations

OBJECTS = ("cat", "dog", "car", "tree", "house", "ball", "cup", "bird", "boat", "chair", "circle",
           "square", "triangle", "star", "person", "coffee", "rocket", "horse", "moon", "clock")
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "brown", "grey")
POSITIONS = ("left", "right", "top", "bottom", "middle", "center", "corner", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
