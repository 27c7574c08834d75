"""Write rendered behaviour items in the public layouts: an MMVP folder, a VLind-Bench folder, a V-FAT file
(the assumed layout) and a caption-variant JSONL — the way their releases (or our documentation) lay them out."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bias_suite.benchmarks.sample import Sample


def write_mmvp(folder: Path, pairs: Sequence[Sample], index_header: str = "lndex", bom: bool = True) -> Path:
    """``Questions.csv`` (the released header spells ``lndex``; a UTF-8 BOM as Excel writes it) and
    ``MMVP Images/<n>.jpg``: two consecutive rows per pair, options ``(a) … (b) …``, answers ``(a)``/``(b)``."""
    (folder / "MMVP Images").mkdir(parents=True, exist_ok=True)
    with (folder / "Questions.csv").open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([index_header, "Question", "Options", "Correct Answer"])
        index = 0
        for pair in pairs:
            for query in pair.queries:
                index += 1
                pair.query_image(query).save(folder / "MMVP Images" / f"{index}.jpg", quality=95)
                letters = "ab"
                options = " ".join(f"({letters[i]}) {c}" for i, c in enumerate(query.candidates))
                writer.writerow([index, query.prompt, options, f"({letters[query.candidates.index(query.answer)]})"])
    return folder


VLIND_INSTANCE = {
    "global_id": 0, "concept": "color", "context_id": 7, "context": "bananas are blue",
    "factual_context": "bananas are yellow", "true_statement": "The banana is blue.",
    "false_statement": "The banana is yellow.", "existent_noun": "a banana", "non-existent_noun": "an apple",
    "best_img_id": "2", "aggregated_human_label_good_images": {"0": 1, "2": 3, "5": 2},
}


def write_vlind(root: Path, instances: Sequence[dict] = (VLIND_INSTANCE,), inside_dataset_folder: bool = True,
                images_folder: bool = True) -> Path:
    """``data.json`` and ``images/{factual,counterfactual}/<concept>/<context_id>_<context>/<id>.jpg``, inside
    ``VLind-Bench Dataset/`` as the Hugging Face snapshot has it (or the README's layout without ``images/``)."""
    data = root / "VLind-Bench Dataset" if inside_dataset_folder else root
    images = data / "images" if images_folder else data
    colours = ["red", "green", "blue", "orange", "purple", "brown", "black", "white", "grey", "cyan", "pink", "navy"]
    for instance in instances:
        concept, context_id = instance["concept"], instance["context_id"]
        counterfactual = images / "counterfactual" / concept / f"{context_id}_{instance['context']}"
        factual = images / "factual" / concept / f"{context_id}_{instance['factual_context']}"
        counterfactual.mkdir(parents=True, exist_ok=True)
        factual.mkdir(parents=True, exist_ok=True)
        for image_id in instance["aggregated_human_label_good_images"]:
            Image.new("RGB", (32, 32), colours[int(image_id) % len(colours)]).save(counterfactual / f"{image_id}.jpg")
        Image.new("RGB", (32, 32), "yellow").save(factual / "0.jpg")
    (data / "data.json").write_text(json.dumps(list(instances)), encoding="utf-8")
    return root


def write_vfat(path: Path, items: Sequence[Sample]) -> Path:
    """The assumed V-FAT layout: one line per conflict-levels query (L1–L3) with its own image file."""
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        for query in item.queries:
            if query.role == "L0":
                continue
            relative = f"images/{item.sample_id.replace('/', '_')}-{query.role}.png"
            item.query_image(query).save(path.parent / relative)
            instruction, _, question = query.prompt.rpartition(". ")
            lines.append(json.dumps({
                "id": f"{item.sample_id}-{query.role}", "image": relative, "question": question or query.prompt,
                "options": list(query.candidates), "answer": query.answer, "level": query.role, "trap": query.trap,
                **({"instruction": instruction + "."} if instruction else {}), "domain": "colour"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_caption_jsonl(path: Path, items: Sequence[Sample], variants=("matching", "corrupted", "irrelevant")) -> Path:
    """Our caption-variant layout, from caption-variants built-in items."""
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        queries = {query.role: query for query in item.queries}
        question = queries["none"].prompt
        relative = f"images/{item.sample_id.replace('/', '_')}.png"
        item.image.save(path.parent / relative)
        lines.append(json.dumps({
            "id": item.sample_id, "image": relative, "question": question, "answer": queries["none"].answer,
            "choices": list(queries["none"].candidates),
            "captions": {v: queries[v].prompt.removesuffix(" " + question) for v in variants},
            "caption_answers": {"corrupted": queries["corrupted"].trap}}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
