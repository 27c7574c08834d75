"""The package's public API: what a notebook imports from ``bias_suite`` itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bias_suite


def test_the_names_the_readme_uses_import_from_the_package():
    from bias_suite import CaptureConfig, Sample, extract, keyspace_metrics, load_benchmark, load_model
    from bias_suite.capture.batch import CaptureConfig as defined

    assert CaptureConfig is defined
    assert all(callable(name) for name in (Sample, extract, keyspace_metrics, load_benchmark, load_model))


@pytest.mark.parametrize("name", [name for name in bias_suite.__all__ if name != "__version__"])
def test_every_exported_name_is_the_object_its_module_defines(name):
    value = getattr(bias_suite, name)
    module = sys.modules[bias_suite._EXPORTS[name]]
    assert getattr(module, name) is value
    assert name in dir(bias_suite)


def test_all_lists_exactly_the_exported_names():
    assert sorted(bias_suite.__all__) == sorted(["__version__", *bias_suite._EXPORTS])


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'load_modle'"):
        bias_suite.load_modle  # noqa: B018


def test_importing_the_package_imports_neither_torch_nor_transformers():
    code = "import sys, bias_suite; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_every_error_is_a_bias_suite_error_and_every_warning_a_bias_suite_warning():
    import inspect

    from bias_suite import errors

    classes = [value for value in vars(errors).values()
               if inspect.isclass(value) and value.__module__ == errors.__name__]
    assert len(classes) > 10
    for cls in classes:
        base = errors.BiasSuiteWarning if issubclass(cls, Warning) else errors.BiasSuiteError
        assert issubclass(cls, base), cls
