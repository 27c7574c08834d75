"""VLind-Bench folders (Lee et al., NAACL 2025 Findings; github.com/klee972/VLind-Bench): the released layout.

::

    <root>/                            or <root>/VLind-Bench Dataset/ (the Hugging Face snapshot)
    ├── data.json                      a JSON list of instances
    └── images/{factual,counterfactual}/<concept>/<context_id>_<context>/<image id>.jpg
                                       (the README's data/{factual,counterfactual} without images/ works too)

An instance names ``concept``, ``context_id``, ``context`` (the counterfactual world), ``factual_context``,
``true_statement`` (true in the counterfactual world), ``false_statement``, ``existent_noun``,
``non-existent_noun`` (or ``non_existent_noun``, as a re-upload spells it), ``best_img_id`` and
``aggregated_human_label_good_images`` (image id → votes; an image with at least 2 votes is good; an
instance without a good image is skipped, as the released scorer does). A context folder that does not
spell the context exactly is found by its unique ``<context_id>_`` prefix, as third-party loaders do.

Stages and prompts are those of the released evaluation (``eval/gpt4o_eval.py``, ``score_pipeline.py``),
True/False answers scored as candidates: commonsense knowledge (CK, the factual image), visual perception
(VP, the best counterfactual image: an existent and a non-existent noun), commonsense bias (CB, the context
given as text) and language prior (LP, every good counterfactual image). A stage passes when both of its
statements are judged right. The probe is LP's true statement on the best image.
"""

from __future__ import annotations

import json
from pathlib import Path

from bias_suite.benchmarks.rows import PendingSample, confined_image_path, not_utf8_error, open_image_file
from bias_suite.benchmarks.sample import Query
from bias_suite.errors import BenchmarkError

DATASET_FOLDER = "VLind-Bench Dataset"
KEYS = ("concept", "context_id", "context", "factual_context", "true_statement", "false_statement", "existent_noun",
        "best_img_id", "aggregated_human_label_good_images")
NON_EXISTENT_KEYS = ("non-existent_noun", "non_existent_noun")
TRUE_FALSE = ("True", "False")
GOOD_IMAGE_VOTES = 2
ONLY_TRUE_FALSE = "Only respond in True or False."


def data_root(path: Path) -> Path | None:
    """The folder holding ``data.json`` (``path`` itself or its ``VLind-Bench Dataset/``), or None."""
    for candidate in (path / DATASET_FOLDER, path):
        if (candidate / "data.json").is_file():
            return candidate
    return None


def is_vlind_folder(path: Path) -> bool:
    return path.is_dir() and data_root(path) is not None


def commonsense_prompt(statement: str) -> str:
    return (f"Statement: {statement}\nBased on the common sense, is the given statement true or false? "
            f"{ONLY_TRUE_FALSE}")


def perception_prompt(noun: str) -> str:
    return (f"Statement: There is {noun} in the given image.\nBased on the image, is the given statement true or "
            f"false? {ONLY_TRUE_FALSE}")


def context_prompt(context: str, statement: str) -> str:
    return (f"Context: {context}\nStatement: {statement}\nBased on the context, is the given statement true or "
            "false? Forget real-world common sense and just follow the information provided in the context. "
            f"{ONLY_TRUE_FALSE}")


def image_prompt(statement: str) -> str:
    return (f"Statement: {statement}\nBased on the image, is the given statement true or false? Forget real-world "
            f"common sense and just follow the information provided in the image. {ONLY_TRUE_FALSE}")


def read_vlind(path: Path, *, allow_paths_outside: bool = False) -> list[PendingSample]:
    """One pending sample per instance with a good image; images are read when an instance is kept."""
    root = data_root(path)
    if root is None:
        raise BenchmarkError(f"{path}: no data.json (VLind-Bench layout: data.json and images/{{factual,"
                             f"counterfactual}}, possibly inside '{DATASET_FOLDER}/')")
    data_file = root / "data.json"
    try:
        instances = json.loads(data_file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise not_utf8_error(data_file, error) from error
    except json.JSONDecodeError as error:
        raise BenchmarkError(f"{data_file} is not valid JSON ({error})") from error
    if not isinstance(instances, list):
        raise BenchmarkError(f"{data_file}: expected a JSON list of instances, got a {type(instances).__name__}")
    images = root / "images" if (root / "images").is_dir() else root
    pending = []
    for n, instance in enumerate(instances):
        where = f"{data_file} instance {n}"
        item = _instance(instance, where, images, root, allow_paths_outside)
        if item is not None:
            pending.append(PendingSample(
                sample_id=f"{n:04d}-{instance['concept']}-{instance['context_id']}", location=where,
                prompt=item["probe"][2], answer="True",
                read_image=lambda image=item["probe"][1], at=where: open_image_file(image, at, f"{images}"),
                read_queries=lambda rows=item["rows"], at=where: _queries(rows, at, images)))
    return pending


def _instance(instance, where: str, images: Path, root: Path, allow_outside: bool) -> dict | None:
    if not isinstance(instance, dict):
        raise BenchmarkError(f"{where}: expected an object, got a {type(instance).__name__}")
    missing = [key for key in KEYS if key not in instance]
    if not any(key in instance for key in NON_EXISTENT_KEYS):
        missing.append(NON_EXISTENT_KEYS[0])
    if missing:
        raise BenchmarkError(f"{where}: no key {', '.join(repr(k) for k in missing)}; it has {sorted(instance)}")
    for key in (*KEYS[:7], "best_img_id"):
        if not isinstance(instance[key], (str, int)) or isinstance(instance[key], bool) or str(instance[key]) == "":
            raise BenchmarkError(f"{where}, key {key!r}: expected a non-empty string, got {instance[key]!r}")
    votes = instance["aggregated_human_label_good_images"]
    if not isinstance(votes, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in votes.values()):
        raise BenchmarkError(f"{where}, key 'aggregated_human_label_good_images': expected an object from image id to "
                             f"a number of votes, got {votes!r}")
    good = sorted((str(image_id) for image_id, count in votes.items() if count >= GOOD_IMAGE_VOTES),
                  key=lambda image_id: (len(image_id), image_id))
    if not good:
        return None  # the released scorer skips instances without a good image
    concept, context_id = str(instance["concept"]), str(instance["context_id"])
    counterfactual = _context_folder(images / "counterfactual", concept, context_id, str(instance["context"]),
                                     where, "context", root, allow_outside)
    factual = _context_folder(images / "factual", concept, context_id, str(instance["factual_context"]),
                              where, "factual_context", root, allow_outside)
    best = str(instance["best_img_id"])
    probe_image = best if best in good else good[0]
    non_existent = next(instance[key] for key in NON_EXISTENT_KEYS if key in instance)
    true_s, false_s = str(instance["true_statement"]), str(instance["false_statement"])
    best_path = counterfactual / f"{best}.jpg"
    # (role, image, prompt, answer): the released stages; "False" answers the false reading of each pair
    rows = [(f"lp1@{probe_image}", counterfactual / f"{probe_image}.jpg", image_prompt(true_s), "True"),
            ("ck1", factual / "0.jpg", commonsense_prompt(false_s), "True"),
            ("ck2", factual / "0.jpg", commonsense_prompt(true_s), "False"),
            ("vp1", best_path, perception_prompt(str(instance["existent_noun"])), "True"),
            ("vp2", best_path, perception_prompt(str(non_existent)), "False"),
            ("cb1", best_path, context_prompt(str(instance["context"]), true_s), "True"),
            ("cb2", best_path, context_prompt(str(instance["context"]), false_s), "False")]
    for image_id in good:
        if image_id != probe_image:
            rows.append((f"lp1@{image_id}", counterfactual / f"{image_id}.jpg", image_prompt(true_s), "True"))
        rows.append((f"lp2@{image_id}", counterfactual / f"{image_id}.jpg", image_prompt(false_s), "False"))
    for role, image, _, _ in rows:
        if not image.is_file():
            raise BenchmarkError(f"{where}: image file {str(image)!r} of stage {role} not found")
    return {"probe": rows[0], "rows": rows}


def _context_folder(base: Path, concept: str, context_id: str, text: str, where: str, key: str, root: Path,
                    allow_outside: bool) -> Path:
    """``base/<concept>/<context_id>_<text>``, or the one ``<context_id>_*`` folder there; inside ``root``."""
    at = f"{where}, key {key!r}"
    exact = confined_image_path(root, str((base / concept / f"{context_id}_{text}").relative_to(root)), at,
                                allow_outside, what="the VLind-Bench folder")
    if exact.is_dir():
        return exact
    parent = confined_image_path(root, str((base / concept).relative_to(root)), at, allow_outside,
                                 what="the VLind-Bench folder")
    found = sorted(p for p in parent.glob(f"{context_id}_*") if p.is_dir()) if parent.is_dir() else []
    if len(found) != 1:
        raise BenchmarkError(f"{at}: expected the image folder {str(exact)!r} (or exactly one '{context_id}_*' folder "
                             f"in {str(parent)!r}), found {len(found)}")
    return found[0]


def _queries(rows, where: str, images: Path) -> tuple[Query, ...]:
    decoded: dict[Path, object] = {}  # stages share images: decode each once
    queries = []
    for index, (role, image, prompt, answer) in enumerate(rows):
        if index and image not in decoded:
            decoded[image] = open_image_file(image, f"{where} stage {role}", f"{images}")
        queries.append(Query(role, prompt, TRUE_FALSE, answer, trap="False" if answer == "True" else "True",
                             image=decoded[image] if index else None))
    return tuple(queries)
