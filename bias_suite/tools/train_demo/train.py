"""Train both demo checkpoints: ``python -m bias_suite train-demo [--out DIR] [--seed 0] [--quick]``.

Builds the training data (:mod:`bias_suite.tools.train_demo.data`), pretrains the vision tower once
(:mod:`bias_suite.tools.train_demo.vision_pretraining`), trains the text-first and the joint arm
(:mod:`bias_suite.tools.train_demo.recipe`) from that same starting model, saves each as a LLaVA checkpoint
(float16 safetensors, config, tokenizer, processor, and ``training.json`` with the recipe and losses)
under ``DIR/demo-text-first`` and ``DIR/demo-joint``, then loads both back through
:func:`bias_suite.models.loading.load_model` and prints their ``shapes`` accuracy and ``conflict``
text-preference rate. ``DIR`` defaults to ``bias_suite/demo/checkpoints/``, i.e. it rebuilds the
shipped models. The full recipe takes 11–13 minutes on one core of a 2-core machine; ``--quick``
about 30 seconds.

Reproducibility: everything is seeded (torch.manual_seed, numpy generators for the data) and runs
with ``torch.use_deterministic_algorithms(True)`` on a fixed number of threads (``--threads``,
default 1: one thread is also what keeps the run fast when something else uses the other core; two
threads contending with another process were 5–10× slower here). With the same thread count, torch
version and CPU, a rerun reproduces the saved weights bit for bit (checked: two ``--quick`` runs give
identical safetensors files). A different thread count does not (``--threads 2`` moves weights by up
to 4e-3 after 80 steps): float reductions are split differently, and the drift grows with the steps.
The measured behaviour should agree; the bytes will not.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch
import transformers

from bias_suite.demo import CHECKPOINT_ROOT
from bias_suite.tools.train_demo.data import build_training_data
from bias_suite.tools.train_demo.recipe import (
    ARMS,
    FULL_RECIPE,
    QUICK_RECIPE,
    Recipe,
    Stage,
    build_demo_llava,
    learning_rate,
    stages_for,
)
from bias_suite.tools.train_demo.sequences import EncodedExamples, collate, encode_training_data
from bias_suite.tools.train_demo.vision_pretraining import pretrain_vision_tower

LOG_EVERY = 50  # steps between loss lines
SAVED_DTYPE = torch.float16  # halves the shipped size; load_model(dtype="float32") casts back


def parameter_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """Trainable sets: ``decoder`` (language model + LM head), ``projector``, ``decoder+projector``;
    ``everything`` adds the vision tower, which the arms never train."""
    decoder = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
    projector = list(model.model.multi_modal_projector.parameters())
    tower = list(model.model.vision_tower.parameters())
    return {
        "decoder": decoder, "projector": projector, "decoder+projector": decoder + projector,
        "everything": decoder + projector + tower,
    }


def train_stage(model, stage: Stage, encoded: EncodedExamples, recipe: Recipe, pad_token_id: int) -> dict:
    """Run one stage's optimizer steps; returns its mean losses (first and last tenth, by batch modality)."""
    groups = parameter_groups(model)
    trainable = groups[stage.trainable]
    for parameter in groups["everything"]:
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=stage.peak_lr, weight_decay=recipe.weight_decay)
    n_steps = len(stage.batches)
    window: dict[str, list[float]] = defaultdict(list)
    history: list[tuple[str, float]] = []
    model.train()
    for step, indices in enumerate(stage.batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, n_steps, stage.peak_lr, recipe.warmup_fraction)
        batch = collate(encoded, indices, pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        modality = "image" if "pixel_values" in batch else "text"
        window[modality].append(loss.item())
        history.append((modality, loss.item()))
        if (step + 1) % LOG_EVERY == 0 or step + 1 == n_steps:
            means = "  ".join(f"{name} {sum(v) / len(v):.3f}" for name, v in sorted(window.items()))
            print(f"  {stage.name:>8} step {step + 1:4d}/{n_steps}  loss {means}", flush=True)
            window.clear()
    model.eval()
    tenth = max(1, n_steps // 10)
    return {
        "name": stage.name, "trainable": stage.trainable, "steps": n_steps, "peak_lr": stage.peak_lr,
        "first_tenth_loss": _mean_by_modality(history[:tenth]), "last_tenth_loss": _mean_by_modality(history[-tenth:]),
    }


def _mean_by_modality(history: list[tuple[str, float]]) -> dict[str, float]:
    losses: dict[str, list[float]] = defaultdict(list)
    for modality, loss in history:
        losses[modality].append(loss)
    return {modality: round(sum(v) / len(v), 4) for modality, v in sorted(losses.items())}


def save_checkpoint(model, processor, directory: Path, record: dict) -> None:
    """Write the checkpoint to a staging folder, then replace ``directory`` with it."""
    staging = directory.with_name(f".{directory.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.to(SAVED_DTYPE).save_pretrained(staging, safe_serialization=True)
    processor.save_pretrained(staging)
    (staging / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def pretrained_start(recipe: Recipe, data, encoded: EncodedExamples) -> tuple[torch.nn.Module, dict]:
    """Stage 0: the model both arms start from (fresh decoder + projector, pretrained vision tower)."""
    torch.manual_seed(recipe.seed)
    model, _ = build_demo_llava(recipe.shape)
    print(f"[shared] vision tower pretraining, {recipe.vision_steps} steps", flush=True)
    record = pretrain_vision_tower(
        model, encoded.pixel_values, data.scenes, recipe.vision_steps, recipe.vision_batch_size, recipe.vision_lr,
        recipe.seed,
    )
    return model, {"name": "vision", "trainable": "vision tower", "steps": recipe.vision_steps,
                   "peak_lr": recipe.vision_lr, **record}


def train_arm(arm: str, recipe: Recipe, data, encoded: EncodedExamples, start, out: Path) -> Path:
    """Train ``arm`` from a copy of ``start = (model, stage-0 record)`` and save it as ``out/demo-<arm>``."""
    model = copy.deepcopy(start[0])
    _, processor = build_demo_llava(recipe.shape)
    stages = stages_for(arm, recipe, data)
    print(f"[{arm}] {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{sum(len(s.batches) for s in stages)} steps", flush=True)
    stage_records = [start[1]]
    stage_records += [train_stage(model, stage, encoded, recipe, processor.tokenizer.pad_token_id) for stage in stages]
    record = {
        "arm": arm, "recipe": dataclasses.asdict(recipe), "stages": stage_records,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "saved_dtype": str(SAVED_DTYPE).removeprefix("torch."),
    }
    directory = out / f"demo-{arm}"
    save_checkpoint(model, processor, directory, record)
    return directory


def evaluate(directory: Path) -> dict[str, float]:
    """``shapes`` accuracy (and chance) and ``conflict`` text-preference rate of a saved checkpoint."""
    from bias_suite.benchmarks import load_benchmark
    from bias_suite.models.loading import load_model
    from bias_suite.tools.train_demo.scoring import answer_accuracy, chance_accuracy, text_preference_rate

    loaded = load_model(str(directory), device="cpu", dtype="float32")
    shapes = load_benchmark("shapes").samples
    conflict = load_benchmark("conflict").samples
    return {
        "shapes_accuracy": answer_accuracy(loaded, shapes),
        "shapes_chance": chance_accuracy(shapes),
        "conflict_text_preference_rate": text_preference_rate(loaded, conflict),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bias_suite train-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CHECKPOINT_ROOT, help="folder for demo-text-first/ and demo-joint/")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights, the data and the joint order")
    parser.add_argument("--quick", action="store_true", help="a tiny recipe for smoke tests (well under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (bit-for-bit reruns need the same)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="train only these arms")
    parser.add_argument("--no-eval", action="store_true", help="skip the accuracy / text-preference summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = dataclasses.replace(QUICK_RECIPE if args.quick else FULL_RECIPE, seed=args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    data = build_training_data(recipe.seed, recipe.n_texts, recipe.n_captions, recipe.n_questions, recipe.n_scenes)
    _, processor = build_demo_llava(recipe.shape)
    encoded = encode_training_data(processor, data)
    print(f"data: {data.n_texts} text, {data.n_captions} caption, {data.n_questions} question examples, "
          f"{len(data.scenes)} scenes ({time.perf_counter() - started:.1f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = pretrained_start(recipe, data, encoded)
    print(f"[shared] done ({time.perf_counter() - started:.1f} s)", flush=True)
    directories = {}
    for arm in args.arms:
        arm_started = time.perf_counter()
        directories[arm] = train_arm(arm, recipe, data, encoded, start, args.out)
        seconds = time.perf_counter() - arm_started
        print(f"[{arm}] trained and saved to {directories[arm]} ({seconds:.1f} s)", flush=True)
    print(f"total training time {time.perf_counter() - started:.1f} s", flush=True)
    if not args.no_eval:
        for arm, directory in directories.items():
            scores = evaluate(directory)
            print(f"[{arm}] " + "  ".join(f"{name} {value:.3f}" for name, value in scores.items()), flush=True)
    return 0
