"""Blessing a run: the next version of each family's file — created for a declared family, never written over
another family's file, per benchmark and layer with a paired-change rule per metric, one version for several
models, safe when concurrent, the file's mode kept."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest
import torch
import yaml

from bias_suite.errors import ThresholdError
from bias_suite.gate.bless import BlessedModel, BlessRequest, bless
from bias_suite.gate.changes import paired_changes
from bias_suite.gate.judge import Gauge
from bias_suite.gate.rows import ResultRow
from bias_suite.gate.thresholds import family_file, load_threshold_file, select_threshold_file
from bias_suite.metrics import Estimate
from bias_suite.metrics.behaviour import rate_estimate

SETTINGS = {"n_samples": 16, "max_tokens_per_modality": 64, "seed": 0}
BENCHMARKS = {"shapes": {"n_samples": 16, "hash": "aaaa"}, "photos": {"n_samples": 16, "hash": "bbbb"}}


def rows(model: str, mmd2: float, benchmarks=("shapes", "photos"), layers=(0, 1)) -> list[ResultRow]:
    out = []
    for benchmark in benchmarks:
        for layer in layers:
            shift = 0.1 * layer + (0.05 if benchmark == "photos" else 0.0)
            out += [ResultRow(model, benchmark, layer, None, "mmd2", mmd2 + shift,
                              (mmd2 + shift - 0.02, mmd2 + shift + 0.02),
                              "unchecked", direction="higher_is_worse"),
                    ResultRow(model, benchmark, layer, None, "visual_share.question", 0.4, (0.35, 0.45), "unchecked",
                              direction="lower_is_worse"),
                    ResultRow(model, benchmark, layer, None, "jsd", 1.0, (1.0, 1.0), "unchecked",
                              direction="higher_is_worse"),
                    ResultRow(model, benchmark, layer, 0, "mmd2", 9.0, None, "unchecked")]  # per head: never blessed
    return out


def model(spec: str, model_type: str = "llava") -> BlessedModel:
    return BlessedModel(spec=spec, model_type=model_type, names=(spec, Path(spec).name), n_layers=4)


def request(location: Path, models, all_rows, family=None, reason="first baseline", target_file=None,
            card=None) -> BlessRequest:
    models = [dataclasses.replace(m, family=family) for m in models]
    return BlessRequest(location=location, reason=reason, rows=all_rows, models=models,
                        environment={"torch": "2.14.1", "transformers": "5.24.0", "attn_implementation": "sdpa"},
                        settings=SETTINGS, benchmarks=BENCHMARKS, suite_version="0.2.0", target_file=target_file,
                        card=card)


def judged(location: Path, spec: str, model_type: str, measured: list[ResultRow]) -> list[str]:
    threshold = select_threshold_file(location, model_type, [spec, Path(spec).name]).file
    gauge = Gauge(threshold, spec, 4, SETTINGS, {"shapes": "aaaa", "photos": "bbbb"})
    return [gauge.row(r.benchmark, r.layer, r.head, r.metric, Estimate(r.value, *r.ci)).status for r in measured
            if r.head is None]


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_blessing_a_new_family_creates_its_file_in_an_empty_or_missing_folder(tmp_path, folder):
    location = tmp_path / folder
    if folder == "empty":
        location.mkdir()
    changes = bless(request(location, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours"))
    document = yaml.safe_load((location / "ours.yaml").read_text())
    assert document["version"] == 1 and document["match"] == {"model_type": ["llava"], "name": ["*ours*"]}
    assert document["settings"] == SETTINGS and document["benchmarks"] == BENCHMARKS
    assert "new file → version 1" in changes[0]
    mmd2 = [r for r in document["rules"] if r["metric"] == "mmd2" and "max" in r]
    assert {(tuple(r["benchmarks"]), r["layers"]) for r in mmd2} == {
        (("shapes",), "0"), (("shapes",), "1"), (("photos",), "0"), (("photos",), "1")}
    assert next(r for r in mmd2 if r.get("benchmarks") == ["photos"] and r["layers"] == "1")["max"] == \
        pytest.approx(0.52)  # the worst interval end + the tolerance 0.05


def test_blessing_writes_a_paired_change_rule_for_every_blessed_metric(tmp_path):
    """The regression test: a later run is compared with this one, and a change beyond the tolerance fails."""
    bless(request(tmp_path, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours"))
    rules = yaml.safe_load((tmp_path / "ours.yaml").read_text())["rules"]
    changes = {r["metric"]: r["max_increase"] for r in rules if "max_increase" in r}
    assert changes == {"mmd2": 0.05, "visual_share.question": 0.05}  # the blessed metrics this run measured

def test_a_blessed_file_gates_the_next_checkpoint_of_the_family_by_default(tmp_path):
    bless(request(tmp_path, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours"))
    assert family_file(tmp_path, "llava", ["/ckpts/ours-v2", "ours-v2"]).path.name == "ours.yaml"
    assert set(judged(tmp_path, "/ckpts/ours-v1", "llava", rows("/ckpts/ours-v1", 0.3))) == {"pass", "unchecked"}
    assert "fail" in judged(tmp_path, "/ckpts/ours-v2", "llava", rows("/ckpts/ours-v2", 0.6))


def test_a_bound_at_its_metrics_ceiling_is_left_out_and_said(tmp_path):
    """A rate cannot exceed 1: a `max` bound at 1 plus its tolerance could never fail, so blessing writes none
    and says so."""
    ceiling = [ResultRow("m", "conflict", None, None, "text_preference_rate", 1.0, (0.8, 1.0), "unchecked",
                         direction="higher_is_worse")]
    changes = bless(request(tmp_path, [model("m")], rows("m", 0.3) + ceiling, family="m"))
    document = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert not [r for r in document["rules"] if r["metric"] == "text_preference_rate" and "max" in r]
    assert any("conflict text_preference_rate" in line and "could never fail" in line for line in changes)
    assert document["not_bounded"] == [{"metric": "text_preference_rate", "benchmarks": ["conflict"], "layers": "all",
                                        "reason": document["not_bounded"][0]["reason"]}]
    assert "could never fail" in document["not_bounded"][0]["reason"]
    assert {"metric": "text_preference_rate", "layers": "all", "max_increase": 0.1} in document["rules"]  # its change
    assert load_threshold_file(tmp_path / "m.yaml").rules  # every written rule can fail (the reader checks)


def test_a_rate_bound_its_items_cannot_cross_is_left_out_and_said(tmp_path):
    """8 of 16 prefer the caption: the worst end 0.7535 plus the tolerance 0.1 gives ≤ 0.8535, which no outcome
    of 16 items can cross (16 of 16 reaches down to 0.794). Written, it would make every later run
    INCONCLUSIVE; blessing leaves it out, says why, and bounds the paired change instead."""
    half = Gauge(None, "m", 4, {}, {}).row("conflict", None, None, "text_preference_rate",
                                           rate_estimate(torch.tensor([True] * 8 + [False] * 8)))
    changes = bless(request(tmp_path, [model("m")], [*rows("m", 0.3), half], family="m"))
    document = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert not [r for r in document["rules"] if r["metric"] == "text_preference_rate" and "max" in r]
    (said,) = [line for line in changes if "conflict text_preference_rate" in line]
    assert "≤ 0.8535 cannot fail on 16 items" in said and "24 items or more would be needed" in said
    assert [entry["metric"] for entry in document["not_bounded"]] == ["text_preference_rate"]
    # its change bound: 0.1 widened to 0.12, as an unchanged 8 of 16 already reaches ±0.110 (next test)
    assert {"metric": "text_preference_rate", "layers": "all", "max_increase": 0.12} in document["rules"]


@pytest.mark.parametrize(("preferred", "items", "tolerance"), [(3, 16, 0.17), (8, 16, 0.12), (16, 16, 0.2),
                                                                (20, 100, 0.1)])
def test_a_rate_change_bound_an_unchanged_rerun_could_not_pass_is_widened_and_said(tmp_path, preferred, items,
                                                                                   tolerance):
    """On 16 items even a re-run with every outcome unchanged has Newcombe's paired interval ±0.164 (3 of 16):
    a `max_increase` of 0.1 would leave the blessed model itself INCONCLUSIVE forever. Blessing widens it to
    the next hundredth above that end and says how many items would resolve 0.1; on 100 items 0.1 stays. The
    unchanged re-run then passes it, and a change of +0.375 (issue 19's 0.25 → 0.625) never passes."""
    def rate(outcomes: list[bool], spec: str) -> ResultRow:
        return Gauge(None, spec, 4, {}, {}).row("conflict", None, None, "text_preference_rate",
                                                rate_estimate(torch.tensor(outcomes)))

    blessed = rate([True] * preferred + [False] * (items - preferred), "m")
    changes = bless(request(tmp_path, [model("m")], [*rows("m", 0.3), blessed], family="m"))
    document = yaml.safe_load((tmp_path / "m.yaml").read_text())
    assert {"metric": "text_preference_rate", "layers": "all", "max_increase": tolerance} in document["rules"]
    (said,) = [line for line in changes if line.startswith("text_preference_rate: a paired change")]
    assert ("widened from 0.1" in said and "items would resolve it" in said) == (tolerance != 0.1)

    def change(candidate: int, baseline: int):
        (found,) = paired_changes([rate([True] * candidate + [False] * (items - candidate), "m2")],
                                  {("m", "conflict", None, "text_preference_rate"):
                                   rate([True] * baseline + [False] * (items - baseline), "m")},
                                  "m", lambda row: (tolerance, "m.yaml"), "blessed")
        return found

    assert change(preferred, preferred).status == "pass"
    regressed = change(items * 5 // 8, items // 4)
    # on 16 items its interval reaches back across the widened tolerance (INCONCLUSIVE: exit 6, not a pass)
    assert regressed.increase == pytest.approx(0.375, abs=0.01)
    assert regressed.status == ("fail" if items >= 100 else "inconclusive")


def test_a_reblessed_files_rate_change_bound_an_unchanged_rerun_could_not_pass_is_widened_too(tmp_path):
    """A file blessed before the widening holds `text_preference_rate max_increase 0.1`: its next version
    widens it the same way (3 of 16: 0.17) and says so; the other change bounds stay as they were."""
    path = tmp_path / "ours.yaml"
    path.write_text("version: 1\nfamily: ours\nmatch: {name: ['*ours*']}\nenvironment: {}\nprovenance: {reason: t}\n"
                    "rules:\n  - {metric: mmd2, layers: all, max: 1.5}\n"
                    "  - {metric: mmd2, layers: all, max_increase: 0.05}\n"
                    "  - {metric: text_preference_rate, layers: all, max_increase: 0.1}\n")
    rate = Gauge(None, "/ckpts/ours-v1", 4, {}, {}).row("conflict", None, None, "text_preference_rate",
                                                        rate_estimate(torch.tensor([True] * 3 + [False] * 13)))
    changes = bless(request(tmp_path, [model("/ckpts/ours-v1")], [*rows("/ckpts/ours-v1", 0.3), rate],
                            family="ours", reason="v2"))
    document = yaml.safe_load(path.read_text())
    assert {"metric": "text_preference_rate", "layers": "all", "max_increase": 0.17} in document["rules"]
    assert {"metric": "mmd2", "layers": "all", "max_increase": 0.05} in document["rules"]
    (said,) = [line for line in changes if "max_increase widened from 0.1" in line]
    assert "on 16 items" in said and "29 items would resolve it" in said


def test_rebless_writes_the_next_version_per_benchmark_and_layer_keeping_history(tmp_path):
    path = tmp_path / "llava.yaml"
    path.write_text("version: 3\nmatch: {model_type: [llava]}\nenvironment: {}\nprovenance: {reason: old}\n"
                    "provisional: true\nprovisional_reason: generic\n"
                    "rules:\n  - {metric: mmd2, layers: all, benchmarks: [shapes, photos], max: 1.5}\n"
                    "  - {metric: text_preference_rate, max: 0.95}\n")
    changes = bless(request(tmp_path, [model("any/llava")], rows("any/llava", 0.3, benchmarks=("shapes",)),
                            family="llava", reason="rc2"))
    document = yaml.safe_load(path.read_text())
    assert document["version"] == 4 and document["history"][0]["version"] == 3
    assert document["history"][0]["rules"][0]["max"] == 1.5 and "provisional" not in document
    rules = document["rules"]
    assert {"metric": "mmd2", "benchmarks": ["shapes"], "layers": "0", "max": 0.37} in rules
    assert {"metric": "mmd2", "benchmarks": ["shapes"], "layers": "1", "max": 0.47} in rules
    # what the run did not measure keeps its old bound: the photos benchmark, layers 2 and 3 of shapes
    assert {"metric": "mmd2", "layers": "all", "benchmarks": ["photos"], "max": 1.5} in rules
    assert {"metric": "mmd2", "layers": "2,3", "benchmarks": ["shapes"], "max": 1.5} in rules
    assert {"metric": "text_preference_rate", "max": 0.95} in rules
    assert any("max 1.5 → 0.37" in change for change in changes)


def test_a_file_of_another_family_is_never_overwritten(tmp_path):
    (tmp_path / "llava.yaml").write_text("version: 1\nmatch: {model_type: [llava]}\n"
                                         "rules:\n  - {metric: mmd2, max: 1}\n")
    before = (tmp_path / "llava.yaml").read_text()
    with pytest.raises(ThresholdError, match=r"llava.yaml gates other models .*not /ckpts/llava.*--family"):
        bless(request(tmp_path, [model("/ckpts/llava", model_type="qwen2_vl")], rows("/ckpts/llava", 0.3),
                      family="llava"))
    with pytest.raises(ThresholdError, match=r"no family file in .* names this model; pass --family NAME"):
        bless(request(tmp_path, [model("/ckpts/llava", model_type="qwen2_vl")], rows("/ckpts/llava", 0.3)))
    assert (tmp_path / "llava.yaml").read_text() == before


def test_the_generic_default_file_is_never_the_target(tmp_path):
    (tmp_path / "default.yaml").write_text("version: 1\nrules:\n  - {metric: mmd2, max: 1}\n")
    with pytest.raises(ThresholdError, match=r"default\.yaml holds the generic bounds|generic bounds"):
        bless(request(tmp_path, [model("/ckpts/default")], rows("/ckpts/default", 0.3), family="default"))
    with pytest.raises(ThresholdError, match="holds generic bounds for every model"):
        bless(request(tmp_path, [model("m")], rows("m", 0.3), target_file=tmp_path / "default.yaml"))


def test_two_models_of_one_family_produce_one_version_both_pass(tmp_path):
    first, second = "/ckpts/ours-a", "/ckpts/ours-b"
    changes = bless(request(tmp_path, [model(first), model(second)], rows(first, 0.3) + rows(second, 0.5),
                            family="ours"))
    assert len([c for c in changes if "version 1" in c]) == 1
    assert yaml.safe_load((tmp_path / "ours.yaml").read_text())["version"] == 1
    for spec, value in ((first, 0.3), (second, 0.5)):
        assert "fail" not in judged(tmp_path, spec, "llava", rows(spec, value))


def test_blessing_needs_a_reason(tmp_path):
    with pytest.raises(ThresholdError, match="--reason"):
        bless(request(tmp_path, [model("m")], rows("m", 0.3), reason="  "))


def _bless_once(location: str, index: int) -> None:
    spec = "/ckpts/ours"
    bless(request(Path(location), [model(spec)], rows(spec, 0.3 + 0.01 * index), family="ours", reason=f"run {index}"))


def test_concurrent_blessings_lose_no_version_and_readers_never_see_a_partial_file(tmp_path):
    bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.3), family="ours"))
    seen_broken = []
    stop = threading.Event()

    def read_continuously():
        while not stop.is_set():
            try:
                load_threshold_file(tmp_path / "ours.yaml")
            except Exception as error:
                seen_broken.append(repr(error))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        pool.starmap(_bless_once, [(str(tmp_path), i) for i in range(8)])
    stop.set()
    reader.join()
    document = yaml.safe_load((tmp_path / "ours.yaml").read_text())
    assert document["version"] == 9
    assert sorted(h["provenance"]["reason"] for h in document["history"][:8]) == sorted(
        ["first baseline", *(f"run {i}" for i in range(8) if f"run {i}" != document["provenance"]["reason"])])
    assert not seen_broken
    assert [p.name for p in tmp_path.iterdir()] == ["ours.yaml"]  # no temporary or lock file left behind


def test_the_blessed_run_is_stored_beside_the_file_with_its_checksum(tmp_path):
    measured = [dataclasses.replace(r, replicates=(r.value,) * 3) for r in rows("/ckpts/ours-v1", 0.3)]
    card = {"schema": 3, "results": [r.to_json() for r in measured],
            "models": [{"spec": "/ckpts/ours-v1"}], "settings": SETTINGS, "benchmarks": []}
    bless(request(tmp_path, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours", card=card))
    entry = yaml.safe_load((tmp_path / "ours.yaml").read_text())["baseline_card"]
    stored = tmp_path / entry["file"]
    assert entry["models"] == ["/ckpts/ours-v1"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == entry["sha256"]
    kept = json.loads(gzip.decompress(stored.read_bytes()))
    assert {row["metric"] for row in kept["results"]} == {"mmd2", "visual_share.question"}  # what a rule pairs
    assert all(row["head"] is None for row in kept["results"])
    bless(request(tmp_path, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours", card=card,
                  reason="again"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.v2.card.json.gz", "ours.yaml"]  # v1's card removed


def test_a_bless_keeps_the_files_mode_and_writes_through_a_symlink(tmp_path):
    bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.3), family="ours"))
    path = tmp_path / "ours.yaml"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~umask  # a new file: 0644 less the umask
    path.chmod(0o664)
    bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.31), family="ours", reason="v2"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    shared = tmp_path / "shared"
    shared.mkdir()
    path.rename(shared / "ours.yaml")
    path.symlink_to(shared / "ours.yaml")
    bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.32), family="ours", reason="v3"))
    assert path.is_symlink() and yaml.safe_load(path.read_text())["version"] == 3
    assert stat.S_IMODE((shared / "ours.yaml").stat().st_mode) == 0o664


def test_a_symlinked_file_in_another_folder_finds_the_card_blessed_beside_its_target(tmp_path):
    """The card is written beside the file's target; a later run reading the link must find it there (a
    lookup beside the link stopped every later run with "baseline_card … missing")."""
    measured = [dataclasses.replace(r, replicates=(r.value,) * 3) for r in rows("/ckpts/ours-v1", 0.3)]
    card = {"schema": 3, "results": [r.to_json() for r in measured],
            "models": [{"spec": "/ckpts/ours-v1"}], "settings": SETTINGS, "benchmarks": []}
    shared, project = tmp_path / "shared", tmp_path / "project"
    shared.mkdir()
    project.mkdir()
    bless(request(shared, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours", card=card))
    (project / "ours.yaml").symlink_to(shared / "ours.yaml")
    bless(request(project, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours", card=card,
                  reason="again"))
    linked = load_threshold_file(project / "ours.yaml")
    assert linked.version == 2 and linked.baseline_card_path == shared.resolve() / "ours.v2.card.json.gz"
    assert linked.baseline_card_path.is_file() and not (project / "ours.v2.card.json.gz").exists()


def test_a_full_disk_while_blessing_leaves_the_previous_version_intact(tmp_path, monkeypatch):
    import errno

    from bias_suite.gate import bless as bless_module

    bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.3), family="ours"))
    before = (tmp_path / "ours.yaml").read_text()
    real_fsync = os.fsync

    def full(descriptor):
        real_fsync(descriptor)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bless_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        bless(request(tmp_path, [model("/ckpts/ours")], rows("/ckpts/ours", 0.5), family="ours", reason="v2"))
    assert (tmp_path / "ours.yaml").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ours.yaml"]


def test_a_files_policy_sets_the_tolerance_of_paired_changes_and_of_the_rules_a_bless_writes(tmp_path):
    """`policy: {tolerances: …}` overrides the registry's tolerance of a paired change, by full metric name or
    by its base (`logit_gap` covers `logit_gap.question`); a metric it does not name keeps the registry's."""
    path = tmp_path / "ours.yaml"
    path.write_text("version: 1\nfamily: ours\nmatch: {name: ['*ours*']}\nenvironment: {}\nprovenance: {reason: t}\n"
                    "policy: {tolerances: {mmd2: 0.03, logit_gap: 0.5}}\n"
                    "rules:\n  - {metric: mmd2, layers: all, max: 1.5}\n")
    current = load_threshold_file(path)
    assert current.tolerance("mmd2") == 0.03 and current.tolerance("logit_gap.question") == 0.5
    assert current.tolerance("visual_share.question") == 0.05  # the registry's default
    bless(request(tmp_path, [model("/ckpts/ours-v1")], rows("/ckpts/ours-v1", 0.3), family="ours", reason="v2"))
    document = yaml.safe_load(path.read_text())
    assert {"metric": "mmd2", "layers": "all", "max_increase": 0.03} in document["rules"]
    assert {"metric": "visual_share.question", "layers": "all", "max_increase": 0.05} in document["rules"]
    assert document["policy"] == {"tolerances": {"mmd2": 0.03, "logit_gap": 0.5}}  # kept for the next version
