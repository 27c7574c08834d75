"""Public behaviour layouts load as scored items — MMVP, VLind-Bench, V-FAT (assumed), caption variants — and
bad input is refused naming the file, the row or line, and the column or key at fault."""

from __future__ import annotations

import csv
import json
import re
import warnings

import pytest

from bias_suite.benchmarks import BenchmarkError, load_benchmark
from bias_suite.benchmarks.registry import file_format
from bias_suite.errors import BiasSuiteWarning
from bias_suite.vocabulary import BehaviourKind

from .public_layouts import VLIND_INSTANCE, write_caption_jsonl, write_mmvp, write_vfat, write_vlind


def raises(fragments: list[str]):
    return pytest.raises(BenchmarkError, match=".*".join(re.escape(fragment) for fragment in fragments))


@pytest.fixture(scope="module")
def pairs():
    return load_benchmark("paired-images", n_samples=6).samples


@pytest.fixture
def mmvp(tmp_path, pairs):
    return write_mmvp(tmp_path / "MMVP", pairs)


def rewrite_csv(folder, change):
    """Apply ``change(rows)`` to Questions.csv's rows (header first) and write it back."""
    path = folder / "Questions.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


# --------------------------------------------------------------------------- MMVP


@pytest.mark.parametrize("header, bom", [("lndex", True), ("Index", False)])
def test_an_mmvp_folder_loads_as_pairs_with_the_official_prompt(tmp_path, pairs, header, bom):
    folder = write_mmvp(tmp_path / "MMVP", pairs, index_header=header, bom=bom)
    benchmark = load_benchmark(folder)
    assert (benchmark.source, benchmark.behaviour, benchmark.size) == ("mmvp", BehaviourKind.PAIRED_IMAGES, 6)
    first, original = benchmark.samples[0], pairs[0]
    assert first.sample_id == "1-2"
    a, b = first.queries
    letters = " ".join(f"({'ab'[i]}) {c}" for i, c in enumerate(original.queries[0].candidates))
    assert a.prompt == f"{original.prompt} {letters}"  # MMVP: Question + " " + Options
    assert (a.candidates, a.answer, b.answer) == (original.queries[0].candidates, original.answer,
                                                  original.queries[1].answer)
    assert b.image is not None and b.image.size == original.image.size


def test_mmvp_rows_pair_by_position_and_must_share_their_question(mmvp):
    def swap(rows):
        rows[2][1] = "Is the sky green?"
    rewrite_csv(mmvp, swap)
    with raises([str(mmvp / "Questions.csv"), "line 3, column 'Question'", "differs from line 2"]):
        load_benchmark(mmvp)


def test_an_odd_number_of_mmvp_rows_leaves_one_without_a_partner(mmvp):
    rewrite_csv(mmvp, lambda rows: rows.pop())
    with raises(["11 rows, an odd number", "line 12"]):
        load_benchmark(mmvp)


@pytest.mark.parametrize("column, value, message", [
    (3, "(c)", "line 2, column 'Correct Answer': '(c)' names no option of ['a', 'b']"),
    (2, "Open or Closed", "line 2, column 'Options': expected two or more different options"),
    (0, "one", "line 2, column 'lndex': 'one' is not an image number"),
])
def test_bad_mmvp_cells_are_named_by_line_and_column(mmvp, column, value, message):
    def spoil(rows):
        rows[1][column] = value
    rewrite_csv(mmvp, spoil)
    with raises([str(mmvp / "Questions.csv"), message]):
        load_benchmark(mmvp)


def test_mmvp_without_a_column_or_an_image_is_refused(mmvp):
    (mmvp / "MMVP Images" / "3.jpg").unlink()
    with raises(["line 4, column 'lndex'", "3.jpg", "not found"]):
        load_benchmark(mmvp)
    rewrite_csv(mmvp, lambda rows: [row.pop(3) for row in rows])
    with raises(["Questions.csv line 1", "no 'Correct Answer' column"]):
        load_benchmark(mmvp)


def test_an_mmvp_index_that_is_not_the_row_position_is_warned_about(mmvp):
    def renumber(rows):
        rows[1][0], rows[2][0] = "2", "1"
    rewrite_csv(mmvp, renumber)
    with pytest.warns(BiasSuiteWarning, match="is not the row's position") as caught:
        load_benchmark(mmvp)
    assert any("line 2: lndex 2 is not the row's position 1" in str(w.message) for w in caught)


def test_samples_draws_whole_mmvp_pairs(mmvp):
    subset = load_benchmark(mmvp, n_samples=2, seed=3)
    assert subset.size == 2 and all(len(s.queries) == 2 for s in subset.samples)


# --------------------------------------------------------------------------- VLind-Bench


@pytest.mark.parametrize("inside, images", [(True, True), (False, False)], ids=["hf-snapshot", "readme-layout"])
def test_a_vlind_folder_loads_the_released_stages(tmp_path, inside, images):
    root = write_vlind(tmp_path / "vlind", inside_dataset_folder=inside, images_folder=images)
    benchmark = load_benchmark(root)
    assert (benchmark.source, benchmark.behaviour, benchmark.size) == ("vlind", BehaviourKind.VLIND, 1)
    item = benchmark.samples[0]
    roles = [q.role for q in item.queries]
    assert roles == ["lp1@2", "ck1", "ck2", "vp1", "vp2", "cb1", "cb2", "lp2@2", "lp1@5", "lp2@5"]  # 0 has 1 vote
    by_role = {q.role: q for q in item.queries}
    assert by_role["ck1"].prompt.startswith("Statement: The banana is yellow.\nBased on the common sense")
    assert by_role["ck1"].answer == "True" and by_role["ck2"].answer == "False"
    assert by_role["vp2"].prompt.startswith("Statement: There is an apple in the given image.")
    assert by_role["cb1"].prompt.startswith("Context: bananas are blue\nStatement: The banana is blue.")
    assert by_role["lp2@5"].prompt.endswith("Forget real-world common sense and just follow the information "
                                            "provided in the image. Only respond in True or False.")
    assert all(q.candidates == ("True", "False") for q in item.queries)


def test_vlind_accepts_the_reupload_spelling_and_a_context_folder_found_by_its_prefix(tmp_path):
    instance = {**VLIND_INSTANCE}
    instance["non_existent_noun"] = instance.pop("non-existent_noun")
    root = write_vlind(tmp_path / "vlind", [instance])
    folder = root / "VLind-Bench Dataset/images/counterfactual/color/7_bananas are blue"
    folder.rename(folder.with_name("7_bananas_are_blue"))
    assert load_benchmark(root).size == 1


def test_vlind_skips_instances_without_a_good_image(tmp_path):
    poor = {**VLIND_INSTANCE, "context_id": 8, "aggregated_human_label_good_images": {"0": 1}}
    assert load_benchmark(write_vlind(tmp_path / "vlind", [VLIND_INSTANCE, poor])).size == 1


@pytest.mark.parametrize("change, message", [
    (lambda i: i.pop("existent_noun"), "instance 0: no key 'existent_noun'"),
    (lambda i: i.update(aggregated_human_label_good_images=[2, 3]),
     "instance 0, key 'aggregated_human_label_good_images': expected an object"),
    (lambda i: i.update(context="x/../../../../../../outside"), "instance 0, key 'context': image path"),
    (lambda i: i.update(concept="../../../.."), "leads outside the VLind-Bench folder"),
])
def test_bad_vlind_instances_are_named_by_instance_and_key(tmp_path, change, message):
    root = write_vlind(tmp_path / "vlind")
    data = root / "VLind-Bench Dataset" / "data.json"
    instances = json.loads(data.read_text())
    change(instances[0])
    data.write_text(json.dumps(instances))
    with raises([str(data), message]):
        load_benchmark(root)


def test_a_missing_vlind_stage_image_is_named(tmp_path):
    root = write_vlind(tmp_path / "vlind")
    (root / "VLind-Bench Dataset/images/factual/color/7_bananas are yellow/0.jpg").unlink()
    with raises(["instance 0", "0.jpg", "of stage ck1 not found"]):
        load_benchmark(root)


# --------------------------------------------------------------------------- V-FAT (assumed layout)


@pytest.fixture(scope="module")
def levels():
    return load_benchmark("conflict-levels", n_samples=3).samples


def test_a_vfat_file_in_the_assumed_layout_loads_one_item_per_line(tmp_path, levels):
    path = write_vfat(tmp_path / "vfat.jsonl", levels)
    benchmark = load_benchmark(path)
    assert (benchmark.source, benchmark.behaviour, benchmark.size) == ("vfat", BehaviourKind.CONFLICT_LEVELS, 9)
    l3 = next(s for s in benchmark.samples if s.sample_id.endswith("-L3"))
    original = next(q for q in levels[0].queries if q.role == "L3")
    assert (l3.prompt, l3.answer, l3.queries[0].trap) == (original.prompt, original.answer, original.trap)
    assert l3.queries[0].info == {"domain": "colour"}


@pytest.mark.parametrize("change, message", [
    (lambda row: row.pop("answer"), "line 1: no key 'answer' (assumed V-FAT layout"),
    (lambda row: row.update(level="L4"), "line 1, key 'level': 'L4' is not one of"),
    (lambda row: row.update(trap="grey"), "line 1, key 'trap': 'grey' is not one of 'options'"),
    (lambda row: row.update(image="../elsewhere.png"), "line 1: image path '../elsewhere.png' leads outside"),
])
def test_bad_vfat_lines_are_named_by_line_and_key(tmp_path, levels, change, message):
    path = write_vfat(tmp_path / "vfat.jsonl", levels[:1])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows[0])
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    with raises([str(path), message]):
        load_benchmark(path)


# --------------------------------------------------------------------------- caption variants


def test_a_caption_variant_file_scores_every_variant_and_its_text_only_twin(tmp_path):
    items = load_benchmark("caption-variants", n_samples=3).samples
    benchmark = load_benchmark(write_caption_jsonl(tmp_path / "captions.jsonl", items))
    assert (benchmark.source, benchmark.behaviour) == ("caption-jsonl", BehaviourKind.CAPTION_VARIANTS)
    loaded, original = benchmark.samples[0], {q.role: q for q in items[0].queries}
    roles = [q.role for q in loaded.queries]
    assert roles == ["corrupted", "none", "matching", "irrelevant", "blank-matching", "blank-corrupted",
                     "blank-irrelevant"]
    for query in loaded.queries:
        assert (query.prompt, query.answer) == (original[query.role].prompt, original[query.role].answer)
    blank = loaded.queries[5].image
    assert blank.size == loaded.image.size and blank.getcolors() == [(blank.width * blank.height, (255, 255, 255))]


def test_a_caption_file_may_give_any_subset_of_variants(tmp_path):
    items = load_benchmark("caption-variants", n_samples=2).samples
    benchmark = load_benchmark(write_caption_jsonl(tmp_path / "c.jsonl", items, variants=("matching",)))
    assert [q.role for q in benchmark.samples[0].queries] == ["none", "matching", "blank-matching"]


@pytest.mark.parametrize("change, message", [
    (lambda row: row["caption_answers"].update(corrupted=row["answer"]), "line 1, key 'caption_answers.corrupted'"),
    (lambda row: row["captions"].update(sarcastic="Sure."), "line 1, key 'captions': expected an object from"),
    (lambda row: row.update(answer="violet"), "line 1, key 'answer': 'violet' is not one of 'choices'"),
])
def test_bad_caption_lines_are_named_by_line_and_key(tmp_path, change, message):
    items = load_benchmark("caption-variants", n_samples=1).samples
    path = write_caption_jsonl(tmp_path / "c.jsonl", items)
    row = json.loads(path.read_text())
    change(row)
    path.write_text(json.dumps(row) + "\n")
    with raises([str(path), message]):
        load_benchmark(path)


def test_layouts_are_told_apart_by_their_files(tmp_path, pairs, levels):
    assert file_format(write_mmvp(tmp_path / "m", pairs[:1])) == "mmvp"
    assert file_format(write_vlind(tmp_path / "v")) == "vlind"
    assert file_format(write_vfat(tmp_path / "f" / "x.jsonl", levels[:1])) == "vfat"
    items = load_benchmark("caption-variants", n_samples=1).samples
    assert file_format(write_caption_jsonl(tmp_path / "c" / "x.jsonl", items)) == "caption-jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = tmp_path / "plain.jsonl"
        plain.write_text(json.dumps({"image": "a.png", "question": "Q?"}) + "\n")
        assert file_format(plain) == "jsonl"
