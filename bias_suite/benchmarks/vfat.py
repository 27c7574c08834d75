"""V-FAT files (arXiv 2601.04897) — an ASSUMED layout: no release of V-FAT could be found.

V-FAT's abstract describes 4,026 VQA instances in six domains at three levels of text-image conflict:
(L1) internal corpus bias from atypical images, (L2) external instruction bias from misleading instructions,
(L3) both. Until its files are published, bias-suite reads this layout (one JSON object per line, the
canonical names a column mapping for the real release will point at)::

    {"id": "v-17", "image": "images/17.jpg", "question": "What colour is the banana?",
     "options": ["yellow", "blue", "green"], "answer": "blue", "level": "L1", "trap": "yellow",
     "instruction": "The banana is yellow.", "domain": "colour"}

``image`` is relative to the file and confined to its folder; ``instruction`` (optional) is put before the
question; ``trap`` is the option the prior or the instruction implies (required from L1 on; ``L0``, a
control without conflict, is accepted too); ``domain`` (optional) is kept as meta. Each line is one item;
its only query is the probe. Metrics: accuracy and trap rate per level and the (reconstructed) visual
robustness score (:mod:`bias_suite.metrics.suites`).
"""

from __future__ import annotations

from pathlib import Path

from bias_suite.benchmarks.rows import (
    PendingSample,
    confined_image_path,
    jsonl_objects,
    open_image_file,
)
from bias_suite.benchmarks.sample import Query
from bias_suite.errors import BenchmarkError

LEVELS = ("L0", "L1", "L2", "L3")
REQUIRED = ("image", "question", "options", "answer", "level")
LAYOUT = ("assumed V-FAT layout: one object per line with 'image', 'question', 'options', 'answer', 'level' "
          "(L0–L3), 'trap' (from L1 on), optional 'id', 'instruction', 'domain'")


def looks_like_vfat(fields: dict) -> bool:
    return "level" in fields and "options" in fields


def read_vfat(path: Path, *, allow_paths_outside: bool = False) -> list[PendingSample]:
    """Lines of a V-FAT JSONL file (the assumed layout above) as pending samples."""
    pending = []
    for where, fields in jsonl_objects(path, f"({LAYOUT})"):
        missing = [key for key in REQUIRED if key not in fields]
        if missing:
            raise BenchmarkError(f"{where}: no key {', '.join(repr(k) for k in missing)} ({LAYOUT})")
        options = fields["options"]
        if not (isinstance(options, list) and len(options) >= 2 and all(isinstance(o, str) and o.strip()
                                                                        for o in options)
                and len(set(options)) == len(options)):
            raise BenchmarkError(f"{where}, key 'options': expected a list of at least two different strings, "
                                 f"got {options!r}")
        level = fields["level"]
        if level not in LEVELS:
            raise BenchmarkError(f"{where}, key 'level': {level!r} is not one of {list(LEVELS)}")
        for key in ("answer", "trap"):
            value = fields.get(key)
            if key == "trap" and value is None and level == "L0":
                continue
            if value not in options:
                raise BenchmarkError(f"{where}, key {key!r}: {value!r} is not one of 'options' {options}")
        if fields.get("trap") == fields["answer"]:
            raise BenchmarkError(f"{where}, key 'trap': the trap must differ from the answer ({fields['answer']!r})")
        for key in ("question", "instruction", "image"):
            if key in fields and fields[key] is not None and not isinstance(fields[key], str):
                raise BenchmarkError(f"{where}, key {key!r}: expected a string, got {fields[key]!r}")
        instruction = (fields.get("instruction") or "").strip()
        prompt = f"{instruction} {fields['question']}" if instruction else fields["question"]
        image = confined_image_path(path.parent, fields["image"], where, allow_paths_outside)
        meta = tuple((key, str(fields[key])) for key in ("domain",) if fields.get(key) is not None)
        query = Query(level, prompt, tuple(options), fields["answer"], fields.get("trap"), meta=meta)
        pending.append(PendingSample(
            sample_id=str(fields.get("id", len(pending))), location=where, prompt=prompt, answer=fields["answer"],
            read_image=lambda image=image, at=where: open_image_file(image, at, f"the file's folder {path.parent}"),
            read_queries=lambda query=query: (query,)))
    if not pending:
        raise BenchmarkError(f"benchmark file {str(path)!r} is empty ({LAYOUT})")
    return pending
