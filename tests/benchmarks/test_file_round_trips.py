"""Benchmark files load back to the samples that were written, in every supported format and layout."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import datasets
import pytest

from bias_suite.benchmarks import Benchmark, load_benchmark
from bias_suite.benchmarks.benchmark import subsample_indices
from bias_suite.benchmarks.rows import MCQ_INSTRUCTION

from .files import WRITERS, png_bytes, to_dataset, write_jsonl, write_tsv


@pytest.fixture(scope="module")
def original() -> Benchmark:
    """Samples with every optional field set (answer, conflicting caption, caption answer)."""
    return load_benchmark("conflict", n_samples=4, seed=1)


def assert_same_samples(loaded: Benchmark, original: Benchmark) -> None:
    for got, want in zip(loaded.samples, original.samples, strict=True):
        assert (got.sample_id, got.prompt, got.answer, got.conflicting_caption, got.caption_answer) == (
            want.sample_id, want.prompt, want.answer, want.conflicting_caption, want.caption_answer)
        assert got.image.size == want.image.size
        assert got.image.tobytes() == want.image.tobytes()


@pytest.mark.parametrize("source", list(WRITERS))
def test_written_benchmark_loads_back_identical(source, original, tmp_path):
    filename, write = WRITERS[source]
    path = write(tmp_path / filename, original.samples)
    loaded = load_benchmark(str(path))
    assert (loaded.name, loaded.source) == (str(path), source)
    assert_same_samples(loaded, original)
    assert loaded.content_hash == original.content_hash


@pytest.mark.parametrize("source", list(WRITERS))
def test_file_subsample_keeps_the_rows_the_seed_picks(source, original, tmp_path):
    filename, write = WRITERS[source]
    path = write(tmp_path / filename, original.samples)
    loaded = load_benchmark(path, n_samples=2, seed=5)
    picked = subsample_indices(original.size, 2, seed=5)
    assert [s.sample_id for s in loaded.samples] == [original.samples[i].sample_id for i in picked]


def test_parquet_folder_of_shards_loads_in_file_order(original, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    to_dataset(original.samples[2:]).to_parquet(str(folder / "test-00001-of-00002.parquet"))
    to_dataset(original.samples[:2]).to_parquet(str(folder / "test-00000-of-00002.parquet"))
    loaded = load_benchmark(tmp_path)
    assert loaded.source == "parquet"
    assert_same_samples(loaded, original)


def test_parquet_with_plain_image_bytes_and_no_id_column_uses_row_numbers(original, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"image": [png_bytes(s.image) for s in original.samples],
                      "question": [s.prompt for s in original.samples]})
    pq.write_table(table, tmp_path / "plain.parquet")
    loaded = load_benchmark(tmp_path / "plain.parquet")
    assert [s.sample_id for s in loaded.samples] == ["0", "1", "2", "3"]
    assert [s.image.tobytes() for s in loaded.samples] == [s.image.tobytes() for s in original.samples]


def test_dataset_dict_with_one_split_loads_that_split(original, tmp_path):
    datasets.DatasetDict({"test": to_dataset(original.samples)}).save_to_disk(str(tmp_path / "dict"))
    assert_same_samples(load_benchmark(tmp_path / "dict"), original)


def test_jsonl_image_paths_are_relative_to_the_jsonl_file(original, tmp_path, monkeypatch):
    (tmp_path / "nested").mkdir()
    write_jsonl(tmp_path / "nested" / "bench.jsonl", original.samples)
    monkeypatch.chdir(tmp_path)  # the images are under nested/, not under the working directory
    assert_same_samples(load_benchmark("nested/bench.jsonl"), original)


def mmbench_row(index: int, image_b64: str, **cells: str) -> dict[str, str]:
    return {"index": str(index), "image": image_b64, **cells}


def write_rows(path, rows, header) -> None:
    lines = ["\t".join(header)] + ["\t".join(row.get(name, "") for name in header) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_tsv_options_are_folded_into_the_prompt_and_answer_stays_the_letter(original, tmp_path):
    image = base64.b64encode(png_bytes(original.samples[0].image)).decode()
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "image"]
    write_rows(tmp_path / "mmbench.tsv", [mmbench_row(0, image, question="What colour is the square?",
               hint="Look closely.", A="red", B="blue", C="green", D="", answer="A")], header)
    (sample,) = load_benchmark(tmp_path / "mmbench.tsv").samples
    assert sample.prompt == f"Look closely.\nWhat colour is the square?\nA. red\nB. blue\nC. green\n{MCQ_INSTRUCTION}"
    assert sample.answer == "A"


def test_tsv_row_with_a_short_image_cell_reuses_the_image_of_that_index(original, tmp_path):
    image = base64.b64encode(png_bytes(original.samples[0].image)).decode()
    rows = [mmbench_row(10, image, question="First?"), mmbench_row(11, "10", question="Second?")]
    write_rows(tmp_path / "shared.tsv", rows, ["index", "image", "question"])
    first, second = load_benchmark(tmp_path / "shared.tsv").samples
    assert second.sample_id == "11"
    assert second.image.tobytes() == first.image.tobytes() == original.samples[0].image.tobytes()


def test_tsv_written_by_pandas_like_vlmevalkit_loads(original, tmp_path):
    import pandas  # comes with datasets
    frame = pandas.DataFrame({
        "index": [0, 1], "question": ["Which colour?", "Which shape?"],
        "A": ["red", "circle"], "B": ["blue", "square"], "C": ["green", None], "answer": ["A", "B"],
        "image": [base64.b64encode(png_bytes(s.image)).decode() for s in original.samples[:2]],
    })
    frame.to_csv(tmp_path / "pandas.tsv", sep="\t", index=False)
    first, second = load_benchmark(tmp_path / "pandas.tsv").samples
    assert (first.sample_id, second.sample_id) == ("0", "1")
    assert "C. green" in first.prompt and "C." not in second.prompt
    assert second.image.tobytes() == original.samples[1].image.tobytes()


def test_tsv_cells_may_hold_tabs_and_newlines_when_quoted(original, tmp_path):
    sample = replace(original.samples[0], prompt="Line one\twith a tab\nline two?")
    loaded = load_benchmark(write_tsv(tmp_path / "quoted.tsv", [sample]))
    assert loaded.samples[0].prompt == "Line one\twith a tab\nline two?"


def test_jsonl_numbers_become_text(original, tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(original.samples[0].image))
    line = json.dumps({"id": 7, "image": "a.png", "question": "How many?", "answer": 3})
    (tmp_path / "numbers.jsonl").write_text(line)
    (sample,) = load_benchmark(tmp_path / "numbers.jsonl").samples
    assert (sample.sample_id, sample.answer) == ("7", "3")
