"""Installed, the plugin is a guest in other test suites: nothing heavy at load, nothing touched without
a gate option, and its option names give way to another plugin's."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_loading_the_plugin_imports_neither_torch_nor_transformers():
    completed = subprocess.run([sys.executable, "-c", "import sys, bias_suite.plugin; "
                                "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                               capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


def test_without_a_gate_option_a_test_suite_runs_as_if_the_plugin_were_absent(pytester):
    pytester.makepyfile(test_theirs="""
import sys
def test_their_own_code():
    assert "torch" not in sys.modules   # nothing of bias-suite's weight was imported
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=1)
    assert "bias report card" not in result.stdout.str()


def test_with_model_the_gate_runs_and_their_tests_are_deselected(pytester):
    pytester.makepyfile(test_theirs="def test_their_own_code():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--model=tiny-llava", "--bias-samples=4",
                                "--bias-benchmark=shapes", "--bias-layers=0", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["bias_gate::key_separation[[]tiny-llava-shapes-L0[]]", "*1 deselected*"])
    assert "test_their_own_code" not in result.stdout.str()


def test_an_option_name_another_plugin_owns_keeps_only_its_bias_spelling(pytester):
    pytester.makepyfile(their_plugin="""
def pytest_addoption(parser):
    parser.addoption("--device", dest="their_device", default="tpu")
""")
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "their_plugin", "-p", "no:cacheprovider", "--model=tiny-llava",
                                "--device=tpu-v9", "--bias-device=cpu", "--bias-layers=0", "--bias-samples=4",
                                "--bias-benchmark=shapes", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["bias_gate::key_separation[[]tiny-llava-shapes-L0[]]"])
