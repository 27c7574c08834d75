"""Bad benchmark input gets a BenchmarkError naming the file, the row or line, and the column at fault."""

from __future__ import annotations

import base64
import json
import re
import sys

import datasets
import pytest

from bias_suite.benchmarks import BUILTIN_BENCHMARKS, BenchmarkError, load_benchmark

from .files import png_bytes, to_dataset, write_jsonl, write_tsv


@pytest.fixture(scope="module")
def samples():
    return load_benchmark("shapes", n_samples=3).samples


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_lines(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def raises(fragments: list[str]):
    """``pytest.raises`` for a BenchmarkError whose message contains every fragment, in order."""
    return pytest.raises(BenchmarkError, match=".*".join(re.escape(fragment) for fragment in fragments))


def test_unknown_benchmark_name_lists_the_builtins():
    with raises(["'photoz'", "neither a built-in", ", ".join(BUILTIN_BENCHMARKS), ".tsv"]):
        load_benchmark("photoz")


def test_unknown_file_suffix_is_refused_listing_the_formats(tmp_path):
    path = write_lines(tmp_path / "bench.csv", "image,question")
    with raises([str(path), "suffix", ".tsv", ".jsonl", "save_to_disk", ".parquet"]):
        load_benchmark(path)


def test_folder_without_dataset_or_parquet_is_refused(tmp_path):
    with raises([str(tmp_path), "neither a datasets save_to_disk dataset", "nor .parquet"]):
        load_benchmark(tmp_path)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_empty_file_is_refused(tmp_path, suffix):
    path = write_lines(tmp_path / f"empty{suffix}", "")
    with raises([str(path), "is empty"]):
        load_benchmark(path)


def test_tsv_with_only_a_header_has_no_samples(tmp_path):
    path = write_lines(tmp_path / "header.tsv", "index\timage\tquestion")
    with raises([str(path), "has no samples"]):
        load_benchmark(path)


def test_empty_parquet_is_refused(tmp_path, samples):
    to_dataset(samples).select([]).to_parquet(str(tmp_path / "empty.parquet"))
    with raises([str(tmp_path / "empty.parquet"), "has no samples"]):
        load_benchmark(tmp_path / "empty.parquet")


def test_tsv_without_question_column_names_the_file_and_its_columns(tmp_path, samples):
    path = write_lines(tmp_path / "q.tsv", "index\timage\tanswer", f"0\t{b64(png_bytes(samples[0].image))}\tred")
    with raises([str(path), "no 'question' column", "['index', 'image', 'answer']"]):
        load_benchmark(path)


def test_jsonl_without_question_names_the_line(tmp_path, samples):
    path = write_jsonl(tmp_path / "q.jsonl", samples)
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    del broken["question"]
    write_lines(path, lines[0], json.dumps(broken), lines[2])
    with raises([f"{path} line 2", "no 'question' key", "['id', 'image', 'answer']"]):
        load_benchmark(path)


@pytest.mark.parametrize("layout", ["hf-dataset", "parquet"])
def test_dataset_without_question_column_names_the_dataset(tmp_path, samples, layout):
    dataset = to_dataset(samples).remove_columns("question")
    path = tmp_path / ("saved" if layout == "hf-dataset" else "bench.parquet")
    dataset.save_to_disk(str(path)) if layout == "hf-dataset" else dataset.to_parquet(str(path))
    with raises([str(path), "no 'question' column"]):
        load_benchmark(path)


def test_tsv_corrupt_base64_names_the_line_row_and_column(tmp_path, samples):
    good = b64(png_bytes(samples[0].image))
    path = write_lines(tmp_path / "b64.tsv", "index\timage\tquestion", f"0\t{good}\tOne?",
                       f"1\t{good[:100]}!!not*base64{good[100:]}\tTwo?")
    with raises([f"{path} line 3 (row 1)", "column 'image'", "not valid base64"]):
        load_benchmark(path)


def test_jsonl_missing_image_file_names_the_line_and_the_path(tmp_path, samples):
    path = write_jsonl(tmp_path / "bench.jsonl", samples)
    (tmp_path / "images" / "0001.png").unlink()
    with raises([f"{path} line 2", "image file", "0001.png", "not found", "relative to"]):
        load_benchmark(path)


def test_tsv_image_that_is_not_an_image_names_the_row(tmp_path):
    junk = b64(b"not a picture at all" * 10)
    path = write_lines(tmp_path / "junk.tsv", "index\timage\tquestion", f"0\t{junk}\tWhat?")
    with raises([f"{path} line 2 (row 0)", "column 'image'", "200 bytes", "not an image"]):
        load_benchmark(path)


def test_jsonl_image_file_that_is_not_an_image_names_the_file(tmp_path, samples):
    path = write_jsonl(tmp_path / "bench.jsonl", samples)
    (tmp_path / "images" / "0000.png").write_bytes(b"\x89PNG but truncated")
    with raises([f"{path} line 1", "0000.png", "not an image"]):
        load_benchmark(path)


def test_parquet_image_bytes_that_are_not_an_image_name_the_row(tmp_path, samples):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [png_bytes(samples[0].image), b"garbage"], "question": ["a?", "b?"]}),
                   tmp_path / "junk.parquet")
    with raises([f"{tmp_path / 'junk.parquet'} row 1", "column 'image'", "not an image"]):
        load_benchmark(tmp_path / "junk.parquet")


def test_tsv_sample_id_used_twice_names_both_rows(tmp_path, samples):
    path = write_tsv(tmp_path / "dup.tsv", samples)
    text = path.read_text().replace(samples[2].sample_id, samples[0].sample_id)
    path.write_text(text)
    with raises([f"'{samples[0].sample_id}' at {path} line 2 (row 0), {path} line 4 (row 2)", "'id' (or 'index')"]):
        load_benchmark(path)


def test_jsonl_sample_id_used_twice_names_both_lines(tmp_path, samples):
    path = write_jsonl(tmp_path / "dup.jsonl", samples)
    path.write_text(path.read_text().replace(samples[1].sample_id, samples[0].sample_id))
    with raises([f"'{samples[0].sample_id}' at {path} line 1, {path} line 2"]):
        load_benchmark(path)


def test_duplicate_ids_are_refused_even_outside_the_subsample(tmp_path, samples):
    path = write_jsonl(tmp_path / "dup.jsonl", samples)
    path.write_text(path.read_text().replace(samples[1].sample_id, samples[0].sample_id))
    with raises(["sample ids must be unique"]):
        load_benchmark(path, n_samples=1)


def test_tsv_row_with_missing_fields_names_the_line(tmp_path):
    path = write_lines(tmp_path / "short.tsv", "index\timage\tquestion", "0\tAAAA")
    with raises([f"{path} line 2", "2 tab-separated fields", "header has 3"]):
        load_benchmark(path)


def test_jsonl_line_that_is_not_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "bad.jsonl", '{"image": "a.png", "question": "q"', "")
    with raises([f"{path} line 1", "not valid JSON"]):
        load_benchmark(path)


def test_empty_question_cell_names_the_row(tmp_path, samples):
    path = write_lines(tmp_path / "blank.tsv", "index\timage\tquestion", f"0\t{b64(png_bytes(samples[0].image))}\t ")
    with raises([f"{path} line 2 (row 0)", "'question' cell is empty"]):
        load_benchmark(path)


def test_dataset_dict_with_several_splits_asks_for_one(tmp_path, samples):
    datasets.DatasetDict({"dev": to_dataset(samples), "test": to_dataset(samples)}).save_to_disk(str(tmp_path / "dd"))
    with raises([str(tmp_path / "dd"), "splits ['dev', 'test']", "pass one split's folder"]):
        load_benchmark(tmp_path / "dd")


def test_parquet_folder_with_several_splits_is_refused(tmp_path, samples):
    to_dataset(samples).to_parquet(str(tmp_path / "dev-00000-of-00001.parquet"))
    to_dataset(samples).to_parquet(str(tmp_path / "test-00000-of-00001.parquet"))
    with raises([str(tmp_path), "several splits ['dev', 'test']"]):
        load_benchmark(tmp_path)


@pytest.mark.parametrize("module", ["datasets", "pyarrow.parquet"])
def test_missing_optional_package_names_it_and_the_install_command(tmp_path, samples, monkeypatch, module):
    path = tmp_path / "saved" if module == "datasets" else tmp_path / "bench.parquet"
    to_dataset(samples).save_to_disk(str(path)) if module == "datasets" else to_dataset(samples).to_parquet(str(path))
    monkeypatch.setitem(sys.modules, module, None)
    with raises([str(path), f"'{module.split('.')[0]}' package", 'pip install "bias-suite[files]"']):
        load_benchmark(path)


def test_truncated_png_names_the_row(tmp_path, samples):
    truncated = png_bytes(samples[0].image)[:200]
    path = write_lines(tmp_path / "cut.tsv", "index\timage\tquestion", f"0\t{b64(truncated)}\tWhat?")
    with raises([f"{path} line 2 (row 0)", "column 'image'", "200 bytes", "not an image Pillow can read"]):
        load_benchmark(path)


# --- image paths stay inside the benchmark's folder ------------------------------------------------------------


def jsonl_pointing_at(folder, image: str):
    """A one-line JSONL benchmark in ``folder`` whose image is ``image``, as written."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_lines(folder / "bench.jsonl", json.dumps({"id": "a", "image": image, "question": "What?"}))


@pytest.fixture
def outside_image(tmp_path, samples):
    """A real PNG next to (not inside) the benchmark folder ``tmp_path / "bench"``."""
    path = tmp_path / "outside.png"
    path.write_bytes(png_bytes(samples[0].image))
    return path


@pytest.mark.parametrize("how", ["relative", "absolute", "dot-dot-etc-passwd"])
def test_jsonl_image_path_outside_its_folder_is_refused(tmp_path, outside_image, how):
    image = {"relative": "../outside.png", "absolute": str(outside_image),
             "dot-dot-etc-passwd": "../../../../../../../../etc/passwd"}[how]
    path = jsonl_pointing_at(tmp_path / "bench", image)
    with raises([f"{path} line 1", repr(image), "outside the JSONL file's folder", "allow_paths_outside=True"]):
        load_benchmark(path)


def test_jsonl_image_symlink_leading_outside_its_folder_is_refused(tmp_path, outside_image):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "link.png").symlink_to(outside_image)
    path = jsonl_pointing_at(tmp_path / "bench", "link.png")
    with raises([f"{path} line 1", "'link.png'", "outside the JSONL file's folder"]):
        load_benchmark(path)


def test_jsonl_image_path_outside_its_folder_loads_when_allowed(tmp_path, outside_image, samples):
    path = jsonl_pointing_at(tmp_path / "bench", "../outside.png")
    (sample,) = load_benchmark(path, allow_paths_outside=True).samples
    assert sample.image.tobytes() == samples[0].image.tobytes()


def test_jsonl_image_path_that_climbs_out_and_back_in_is_accepted(tmp_path, samples):
    (tmp_path / "bench" / "images").mkdir(parents=True)
    (tmp_path / "bench" / "images" / "a.png").write_bytes(png_bytes(samples[0].image))
    path = jsonl_pointing_at(tmp_path / "bench", "images/../../bench/images/a.png")
    assert load_benchmark(path).size == 1


# --- decompression bombs ---------------------------------------------------------------------------------------


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width × height`` black pixels, a few kB however large it claims to be."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """20000 × 20000 pixels: beyond twice Pillow's default limit, where Pillow raises instead of warning."""
    return bomb_png(20_000, 20_000)


def test_tsv_decompression_bomb_names_the_row_and_the_pixel_limit(tmp_path, huge_png):
    from PIL import Image

    path = write_lines(tmp_path / "bomb.tsv", "index\timage\tquestion", f"0\t{b64(huge_png)}\tWhat?")
    with raises([f"{path} line 2 (row 0)", "column 'image'", f"pixel limit of {Image.MAX_IMAGE_PIXELS} pixels",
                 "PIL.Image.MAX_IMAGE_PIXELS", "400000000 pixels"]):
        load_benchmark(path)


def test_jsonl_decompression_bomb_names_the_line_and_the_image_file(tmp_path, huge_png):
    (tmp_path / "bomb.png").write_bytes(huge_png)
    path = write_lines(tmp_path / "bomb.jsonl", json.dumps({"image": "bomb.png", "question": "What?"}))
    with raises([f"{path} line 1", "bomb.png", "pixel limit", "400000000 pixels"]):
        load_benchmark(path)


def test_parquet_decompression_bomb_names_the_row(tmp_path, samples, huge_png):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [png_bytes(samples[0].image), huge_png], "question": ["a?", "b?"]}),
                   tmp_path / "bomb.parquet")
    with raises([f"{tmp_path / 'bomb.parquet'} row 1", "column 'image'", "pixel limit"]):
        load_benchmark(tmp_path / "bomb.parquet")


def test_image_beyond_the_limit_only_by_a_warning_is_refused_too(tmp_path, samples, monkeypatch):
    from PIL import Image

    width, height = samples[0].image.size
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", width * height * 2 // 3)  # Pillow would only warn
    path = write_lines(tmp_path / "big.tsv", "index\timage\tquestion", f"0\t{b64(png_bytes(samples[0].image))}\tWhat?")
    with raises([f"{path} line 2 (row 0)", f"pixel limit of {width * height * 2 // 3} pixels",
                 f"({width * height} pixels)"]):
        load_benchmark(path)


# --- text encodings ------------------------------------------------------------------------------------------


def test_tsv_that_is_not_utf8_names_the_line(tmp_path, samples):
    image = b64(png_bytes(samples[0].image))
    lines = ["index\timage\tquestion", f"0\t{image}\tWhat colour?", f"1\t{image}\tQuelle forme a le caf\u00e9?"]
    path = tmp_path / "latin1.tsv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with raises([f"{path} line 3", "not UTF-8", "byte 0xe9", "save it as UTF-8"]):
        load_benchmark(path)


def test_jsonl_that_is_not_utf8_names_the_line(tmp_path, samples):
    path = write_jsonl(tmp_path / "latin1.jsonl", samples)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"question": "', '"question": "caf\u00e9 ')
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with raises([f"{path} line 2", "not UTF-8", "save it as UTF-8"]):
        load_benchmark(path)


def test_utf8_with_bom_still_loads(tmp_path, samples):
    path = write_jsonl(tmp_path / "bom.jsonl", samples)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_benchmark(path).size == len(samples)
