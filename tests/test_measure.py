"""Measuring behaviour beside internals: ``Measurement.behaviour``, per-sample records, coupling and strata.

The coupling is also checked at model level, on a planted preference for text keys: the shipped joint demo
with a per-sample bias of ``b`` logits against every image key, built into its attention — each image key is
moved, after RoPE, against the sample's own mean question query so that the mean query scores it ``b``
lower. The model's forward, capture and answer scoring all run through the bias, so attention to images
falls with ``b`` and the model leans on the text. The coupling must show the expected signs (more visual
share, larger margin; larger logit gap, smaller margin), where without the plant the same samples do not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
import torch
import transformers.models.llama.modeling_llama as llama

from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.measure import ModelUnderTest
from bias_suite.metrics.samples import coupling_estimates
from bias_suite.options import RunSettings
from bias_suite.vocabulary import BehaviourKind


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the gate measures: one torch thread (two on these shared cores oversubscribe)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def text_first():
    return ModelUnderTest("demo-text-first", RunSettings(device="cpu", dtype="float32", n_bootstrap=50))


def test_a_behaviour_suite_gives_its_metrics_and_a_record_per_sample(text_first):
    measurement = text_first.on(load_benchmark("paired-images", n_samples=8))
    assert {"paired_accuracy", "same_answer_rate", "member_accuracy"} <= set(measurement.behaviour)
    records = measurement.sample_records
    assert [r.sample_id for r in records] == [s.sample_id for s in measurement.benchmark.samples]
    for record, item in zip(records, measurement.scored_items):
        assert [m.layer for m in record.layers] == list(text_first.layers)
        assert record.n_image_tokens == 16 and record.outcome("margin") == item.probe.margin
        assert 0 <= record.at(2).visual_share <= 1 and math.isfinite(record.at(2).key_distance)
    assert set(measurement.coupling(2)) == {"visual_share_coupling", "visual_share_nosink_coupling",
                                            "logit_gap_coupling", "key_distance_coupling"}


def test_the_conflict_benchmark_keeps_its_text_preference_rate(text_first):
    from bias_suite.capture.scoring import text_preference_estimate

    measurement = text_first.on(load_benchmark("conflict", n_samples=8))
    expected = text_preference_estimate(text_first.loaded, measurement.benchmark.samples, 50, 0)
    assert measurement.behaviour == {"text_preference_rate": expected}
    assert all(r.outcome("caption_followed") in (0.0, 1.0) for r in measurement.sample_records)


def test_a_benchmark_without_behaviour_still_records_internals(text_first):
    measurement = text_first.on(load_benchmark("shapes", n_samples=4))
    assert measurement.behaviour == {} and measurement.coupling(1) == {}
    assert all(r.outcomes == () and len(r.layers) == 4 for r in measurement.sample_records)


def test_visual_share_is_stratified_by_image_token_count():
    """A dynamic-resolution processor gives a 2:1 image more tokens than a square one: two strata."""
    shapes = load_benchmark("shapes", n_samples=6).samples
    wide = tuple(dataclasses.replace(s, image=s.image.resize((224, 112))) if i % 2 else s for i, s in enumerate(shapes))
    model = ModelUnderTest("tiny-qwen2-vl", RunSettings(device="cpu", dtype="float32", layers="0", n_bootstrap=20))
    measurement = model.on(Benchmark("shapes-two-sizes", "builtin", wide))
    strata = measurement.by_image_tokens(0)
    assert len(strata) == 2
    for count, estimate in strata.items():
        members = [r.at(0).visual_share for r in measurement.sample_records if r.n_image_tokens == count]
        assert len(members) == 3 and estimate.value == pytest.approx(sum(members) / 3)


# --------------------------------------------------------------------------- a planted preference for text keys


def pixel_digest(pixels: torch.Tensor) -> str:
    return hashlib.sha1(pixels.detach().float().contiguous().numpy().tobytes()).hexdigest()


def planted_text_preference(model: ModelUnderTest, bias_by_image: dict[str, float], monkeypatch):
    """Every forward of ``model`` lowers, for each batch row, the logit of its image keys by the row's bias
    (looked up by its pixels) for the row's mean question query (the prompt after the image). Returns the
    hook's handle; the patched rotary function is undone by ``monkeypatch``."""
    image_token = model.loaded.model.config.image_token_id
    scaling = model.geometry.scaling
    rows: dict[str, torch.Tensor] = {}

    def remember_rows(module, args, kwargs):
        ids, pixels = kwargs.get("input_ids"), kwargs.get("pixel_values")
        if ids is None or pixels is None:
            return
        image = ids == image_token
        last_image = torch.arange(ids.shape[1]).expand_as(ids).masked_fill(~image, -1).max(1).values
        rows["image"] = image
        rows["question"] = (torch.arange(ids.shape[1])[None] > last_image[:, None]) & kwargs["attention_mask"].bool()
        rows["bias"] = torch.tensor([bias_by_image.get(pixel_digest(p), 0.0) for p in pixels])

    rotate = llama.apply_rotary_pos_emb

    def rotate_then_plant(q, k, cos, sin, unsqueeze_dim=1):
        q, k = rotate(q, k, cos, sin, unsqueeze_dim)
        if "bias" not in rows or q.shape[2] != rows["image"].shape[1]:
            return q, k
        batch, n_heads, seq, dim = q.shape
        group = n_heads // k.shape[1]
        question = rows["question"].to(q.dtype)
        mean_query = (q.reshape(batch, k.shape[1], group, seq, dim) * question[:, None, None, :, None]).sum((2, 3))
        mean_query = mean_query / (group * question.sum(1))[:, None, None]
        shift = -rows["bias"].to(q.dtype)[:, None, None] * mean_query / (mean_query.square().sum(-1, True) * scaling)
        return q, k + rows["image"][:, None, :, None].to(k.dtype) * shift[:, :, None, :]

    monkeypatch.setattr(llama, "apply_rotary_pos_emb", rotate_then_plant)
    return model.loaded.model.register_forward_pre_hook(remember_rows, with_kwargs=True)


def copies(n_scenes: int, levels: np.ndarray):
    """Position pairs of paired-images, each scene copied once per bias level (a faint corner mark tells the
    copies apart, so each has its own pixels); the scene is the copies' cluster."""
    scenes = [s for s in load_benchmark("paired-images").samples if s.sample_id.endswith("position")][:n_scenes]
    samples, biases, clusters = [], [], []
    for scene in scenes:
        for k, bias in enumerate(levels):
            image = scene.image.copy()
            image.paste((255 - 3 * k,) * 3, (0, 0, 8, 8))
            samples.append(dataclasses.replace(scene, sample_id=f"{scene.sample_id}/b{k}", image=image))
            biases.append(float(bias))
            clusters.append(scene.sample_id)
    benchmark = Benchmark("planted-positions", "builtin", tuple(samples), suite=BehaviourKind.PAIRED_IMAGES)
    return benchmark, biases, clusters


def coupling_with(bias_scale: float, monkeypatch) -> tuple[dict, list[float], list[float]]:
    """Coupling at layer 2 (clusters: scenes), the samples' visual shares and their planted biases."""
    model = ModelUnderTest("demo-joint", RunSettings(device="cpu", dtype="float32", n_bootstrap=200))
    benchmark, biases, clusters = copies(24, np.linspace(0.0, 16.0, 4) * bias_scale)
    preprocess = model.loaded.processor.image_processor
    by_image = {pixel_digest(preprocess(images=[s.image], return_tensors="pt")["pixel_values"][0]): bias
                for s, bias in zip(benchmark.samples, biases)}
    assert len(by_image) == len(benchmark.samples)
    with monkeypatch.context() as patch:
        handle = planted_text_preference(model, by_image, patch)
        try:
            records = model.on(benchmark).sample_records
        finally:
            handle.remove()
    return coupling_estimates(records, 2, clusters=clusters), [r.at(2).visual_share for r in records], biases


def test_a_planted_preference_for_text_keys_shows_in_the_coupling(monkeypatch):
    planted, shares, biases = coupling_with(1.0, monkeypatch)
    control, _, _ = coupling_with(0.0, monkeypatch)
    assert np.corrcoef(biases, shares)[0, 1] < -0.5  # the plant bites: less attention to the image
    assert planted["visual_share_coupling"].ci_low > 0  # less attention to the image, smaller margin
    assert planted["logit_gap_coupling"].ci_high < 0  # image keys scored lower, smaller margin
    assert control["visual_share_coupling"].value < 0 < planted["visual_share_coupling"].value
