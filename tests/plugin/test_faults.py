"""Every fault a named error with the documented exit code, and no traceback: the careless and hostile inputs
of the fault review, each through the real command line (pytester, or a subprocess where a signal or a
separate interpreter is part of the fault)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from bias_suite.models.loading import load_model
from bias_suite.models.tiny import ensure_checkpoint
from tests.plugin.planted import FAST

USAGE, FAIL, INTERRUPTED = pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED


def no_traceback(result) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback (most recent call last)" not in text and "INTERNALERROR" not in text, text[-3000:]


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    loaded = load_model("tiny-llava", device="cpu", dtype="float32")
    with torch.no_grad():
        loaded.model.model.language_model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    directory = tmp_path_factory.mktemp("nan") / "diverged"
    loaded.model.save_pretrained(directory)
    loaded.processor.save_pretrained(directory)
    return directory


class _RunsCode:
    """What a hostile pickle holds: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_nan_weights_are_a_named_error_about_the_checkpoint(gate, nan_checkpoint):
    result = gate(f"--model={nan_checkpoint}", "--layers=0")
    assert result.ret == 6  # INCONCLUSIVE: nothing could be measured
    result.stdout.fnmatch_lines(["*NaN or inf because 1 weight tensor(s) of the checkpoint are: "
                                 "model.language_model.layers.1.mlp.down_proj.weight; the checkpoint is damaged*"])
    assert "differ from the model's own forward" not in result.stdout.str()
    no_traceback(result)


def test_a_pickle_checkpoint_is_refused_by_name_and_never_runs(gate, pytester):
    evil = pytester.path / "evil"
    shutil.copytree(ensure_checkpoint("tiny-llava"), evil)
    (evil / "model.safetensors").unlink()
    (evil / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": _RunsCode()}))
    result = gate(f"--model={evil}", "--layers=0")
    assert result.ret == 6
    result.stdout.fnmatch_lines(["*evil: its weights are a pickle*convert the checkpoint to safetensors*"])
    assert not (pytester.path / "PWNED").exists()
    no_traceback(result)


def test_a_question_that_spells_the_image_placeholder_names_file_row_and_column(gate, pytester):
    folder = pytester.mkdir("bench")
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / "red.png")
    rows = [{"id": str(i), "image": "red.png", "question": "What colour is it?"} for i in range(8)]
    rows[3]["question"] = "Look at <image> again: what colour is it?"
    (folder / "q.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = gate("--model=tiny-llava", "--layers=0", "--benchmark=bench/q.jsonl")
    result.stdout.fnmatch_lines(["*bench/q.jsonl line 4, column 'question': the text contains '<image>', the "
                                 "model's image placeholder*"])
    assert result.ret == 6
    no_traceback(result)


@pytest.mark.parametrize("samples, message", [("1", "*--samples 1: key-space statistics need at least 3 samples*"),
                                              ("0", "*'0' is not a positive integer*")])
def test_too_few_samples_is_a_usage_error_before_any_model_loads(gate, samples, message):
    result = gate("--model=tiny-llava", "--samples", samples)
    assert result.ret == USAGE
    result.stderr.fnmatch_lines([message])


def test_more_samples_than_a_file_holds_records_what_was_measured(gate, pytester):
    folder = pytester.mkdir("bench")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(folder / "green.png")
    (folder / "q.jsonl").write_text("".join(json.dumps({"id": str(i), "image": "green.png",
                                                        "question": f"What colour is it ({i})?"}) + "\n"
                                            for i in range(8)))
    result = gate("--model=tiny-llava", "--layers=0", "--benchmark=bench/q.jsonl", "--samples=1000",
                  "--allow-unbaselined", "--bias-report=card.json")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    card = json.loads((pytester.path / "card.json").read_text())
    measured = {benchmark["name"]: benchmark["n_samples"] for benchmark in card["benchmarks"]}
    assert measured == {"bench/q.jsonl": 8, "shapes": 24}  # every row of both, not 1000
    assert card["settings"]["n_samples"] == 24  # the most any benchmark of the run held


def test_a_seeded_subset_of_a_file_says_the_other_rows_were_not_decoded(gate, pytester):
    """Seed 4 draws 8 of the 22 rows and none of the last two, whose image is missing: the run passes, and the
    card says that 14 rows were never decoded (so nobody mistakes the pass for a check of the whole file)."""
    folder = pytester.mkdir("bench")
    Image.new("RGB", (32, 32), (10, 10, 200)).save(folder / "blue.png")
    rows = [{"id": str(i), "image": "blue.png", "question": f"What colour is it ({i})?"} for i in range(20)]
    rows += [{"id": f"broken-{i}", "image": "no-such-image.png", "question": "?"} for i in range(2)]
    (folder / "q.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = gate("--model=tiny-llava", "--layers=0", "--benchmark=bench/q.jsonl", "--samples=8", "--seed=4",
                  "--allow-unbaselined", "--bias-report=card.md")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*q.jsonl (8 of 22 rows, a seeded subset, *the other rows were not decoded*"])
    assert "8 of 22 rows, a seeded subset" in (pytester.path / "card.md").read_text()


def test_a_report_destination_that_cannot_be_created_is_refused_before_loading_even_as_root(gate):
    result = gate("--model=tiny-llava", "--bias-report=/proc/nonexistent/card.md")
    assert result.ret == USAGE
    result.stderr.fnmatch_lines(["*cannot write /proc/nonexistent/card.md: cannot write in /proc/nonexistent*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU has cuda")
def test_device_cuda_without_a_gpu_is_a_usage_error_before_any_model_loads(gate):
    result = gate("--model=tiny-llava", "--device=cuda")
    assert result.ret == USAGE
    result.stderr.fnmatch_lines(["*--device cuda: torch sees no CUDA device on this machine*--device cpu*"])


def test_html_in_a_benchmark_file_name_is_escaped_in_the_markdown_card(gate, pytester):
    folder = pytester.mkdir("bench")
    Image.new("RGB", (32, 32), (10, 10, 200)).save(folder / "blue.png")
    hostile = folder / "<b onmouseover=alert(1)>x.jsonl"
    hostile.write_text("".join(json.dumps({"id": str(i), "image": "blue.png", "question": f"Colour ({i})?"}) + "\n"
                               for i in range(8)))
    gate("--model=tiny-llava", "--layers=0", f"--benchmark={hostile}", "--allow-unbaselined", "--bias-report=card.md")
    card = (pytester.path / "card.md").read_text()
    assert "<b onmouseover" not in card and "&lt;b onmouseover=alert(1)&gt;" in card


@pytest.mark.parametrize("order", ["conftest registers first", "bias-suite registers first"])
def test_a_project_option_with_a_short_name_bias_suite_uses_keeps_it_in_either_order(pytester, order):
    """A conftest (or plugin) owning --device, --seed, --layers keeps them; bias-suite keeps --bias-*."""
    pytester.makeconftest("""
def pytest_addoption(parser):
    parser.addoption("--device", default="theirs")
    parser.addoption("--seed", default="7")
    parser.addoption("--layers", default="none")

def pytest_configure(config):
    print("their device:", config.getoption("--device"))
""")
    plugin_first = ["-p", "bias_suite.plugin"] if order == "bias-suite registers first" else []
    result = pytester.runpytest_subprocess(*plugin_first, *FAST, "--model=tiny-llava", "--bias-layers=0",
                                           "--device=mine", "--bias-device=cpu", "--collect-only", "-s")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()[-3000:]
    result.stdout.fnmatch_lines(["their device: mine", "*key_separation[[]tiny-llava-shapes-L0[]]*"])
    no_traceback(result)


INTERRUPTING_CONFTEST = """
import bias_suite.gate.bless as bless

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

bless.write_threshold_file = interrupted
"""

FULL_DISK_CONFTEST = """
import errno
import bias_suite.gate.bless as bless

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "thresholds/tiny.yaml")

bless.atomic_write = full
"""


def test_ctrl_c_while_blessing_exits_2_without_a_traceback_and_the_file_is_intact(pytester):
    pytester.makeconftest(INTERRUPTING_CONFTEST)
    result = pytester.runpytest_subprocess(*FAST, "--model=tiny-llava", "--layers=0", "--update-thresholds",
                                           "--family", "tiny", "--reason", "cut off while writing")
    assert result.ret == INTERRUPTED
    result.stdout.fnmatch_lines(["*interrupted while finishing the run*nothing was half-written*"])
    no_traceback(result)
    assert not (pytester.path / "thresholds" / "tiny.yaml").exists()


def test_a_full_disk_while_blessing_is_a_named_problem_and_the_card_is_still_printed(pytester):
    pytester.makeconftest(FULL_DISK_CONFTEST)
    result = pytester.runpytest_subprocess(*FAST, "--model=tiny-llava", "--layers=0", "--update-thresholds",
                                           "--family", "tiny", "--reason", "disk full")
    assert result.ret == FAIL
    result.stdout.fnmatch_lines(["*bias report card*", "*thresholds NOT updated: could not write thresholds/tiny.yaml: "
                                 "No space left on device; nothing was changed*"])
    no_traceback(result)
