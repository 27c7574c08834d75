"""pytest plugin: options, parametrization, fixtures and the report card's plumbing.

Registered through the ``pytest11`` entry point ``bias_suite.plugin`` (the root ``conftest.py`` loads
it under the same name for a source checkout). Hook functions stay short: measuring is
:mod:`bias_suite.suite`, gating :mod:`bias_suite.assess`, files :mod:`bias_suite.thresholds` and
:mod:`bias_suite.report`.

Data flow under pytest-xdist: each gate test records its rows with ``record_property``; they reach
the controller in ``report.user_properties``, where :class:`~bias_suite.session.RunRecord` merges them.
The card, the report files, threshold updates and the exit status are produced on the controller only.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import pytest

from bias_suite.loading import DTYPES

DEVICE_OPTION = "--device"
DTYPE_OPTION = "--dtype"
MODEL_OPTION = "--model"
LAYERS_OPTION = "--layers"
BENCHMARK_OPTION = "--benchmark"
SAMPLES_OPTION = "--samples"
SEED_OPTION = "--seed"
TRUST_REMOTE_CODE_OPTION = "--trust-remote-code"
THRESHOLDS_OPTION = "--thresholds"
REPORT_OPTION = "--bias-report"
UPDATE_OPTION = "--update-thresholds"
REASON_OPTION = "--reason"
STRICT_ENV_OPTION = "--strict-env"

DEFAULT_BENCHMARKS = ("photos", "shapes", "conflict")
DEFAULT_SAMPLES = 16
REPORT_SUFFIXES = (".md", ".json", ".html")
GATE_MARKER = "bias_gate"

SESSION_STASH = pytest.StashKey["object"]()


def default_model() -> str:
    from bias_suite.demo import DEFAULT_MODEL

    return DEFAULT_MODEL


# --------------------------------------------------------------------------- option validators


def _device_choice(value: str) -> str:
    from bias_suite.loading import parse_device

    try:
        return parse_device(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seed_choice(value: str) -> int:
    from bias_suite.benchmarks import validate_seed

    try:
        return validate_seed(int(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{value!r} is not a seed: {error}") from None


def _dtype_choice(value: str) -> str:
    if value == "auto" or value in DTYPES:
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a dtype: use auto, {', '.join(DTYPES)}")


def _layers_choice(value: str) -> str:
    from bias_suite.errors import LayerSelectionError
    from bias_suite.layers import LayerSelector

    try:
        return LayerSelector.parse(value).text
    except LayerSelectionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _benchmark_choice(value: str) -> str:
    from bias_suite.benchmarks import BUILTIN_BENCHMARKS

    if value in BUILTIN_BENCHMARKS or Path(value).exists():
        return value
    raise argparse.ArgumentTypeError(
        f"unknown benchmark {value!r}: not a built-in ({', '.join(BUILTIN_BENCHMARKS)}) and no such file or folder")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive integer")
    return number


def _report_path(value: str) -> str:
    if Path(value).suffix.lower() not in REPORT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{value!r}: the report format comes from the suffix: {', '.join(REPORT_SUFFIXES)}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bias", "bias-suite: intrinsic text bias of multimodal LLMs")
    group.addoption(MODEL_OPTION, dest="bias_models", action="append", default=None, metavar="SPEC",
                    help="model under test, repeatable: hub id, local checkpoint dir or built-in alias "
                         "(default: the embedded demo model)")
    group.addoption(LAYERS_OPTION, dest="bias_layers", default="all", type=_layers_choice, metavar="SELECTOR",
                    help="decoder layers: all, 0,4,8, 0-7, every:4, first_third, middle_third, last_third")
    group.addoption(BENCHMARK_OPTION, dest="bias_benchmarks", action="append", default=None, type=_benchmark_choice,
                    metavar="NAME_OR_PATH", help=f"benchmark, repeatable (default: {', '.join(DEFAULT_BENCHMARKS)})")
    group.addoption(SAMPLES_OPTION, dest="bias_samples", default=DEFAULT_SAMPLES, type=_positive_int, metavar="N",
                    help=f"samples per benchmark, a seeded subset (default {DEFAULT_SAMPLES})")
    group.addoption(SEED_OPTION, dest="bias_seed", default=0, type=_seed_choice,
                    help="seed of subsets, folds and bootstrap (0 to 2**32 - 1)")
    group.addoption(DEVICE_OPTION, dest="bias_device", default="auto", type=_device_choice,
                    help="device for models under test: auto (CUDA when present), cpu, cuda, cuda:N")
    group.addoption(DTYPE_OPTION, dest="bias_dtype", default="auto", type=_dtype_choice,
                    help="weight dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    group.addoption(TRUST_REMOTE_CODE_OPTION, dest="bias_trust_remote_code", action="store_true",
                    help="allow checkpoints that ship their own modelling code (off by default)")
    group.addoption(THRESHOLDS_OPTION, dest="bias_thresholds", default=None, metavar="PATH",
                    help="threshold file or directory (default: thresholds/ under the rootdir)")
    group.addoption(REPORT_OPTION, dest="bias_reports", action="append", default=[], type=_report_path, metavar="PATH",
                    help="write the bias report card; format by suffix (.md, .json, .html); repeatable")
    group.addoption(UPDATE_OPTION, dest="bias_update", action="store_true",
                    help="write the next version of each model's threshold file from this run (needs --reason)")
    group.addoption(REASON_OPTION, dest="bias_reason", default=None, metavar="TEXT",
                    help="why the thresholds change (recorded in the file's provenance)")
    group.addoption(STRICT_ENV_OPTION, dest="bias_strict_env", action="store_true",
                    help="fail when torch/transformers/attention backend differ from the threshold file's")


# --------------------------------------------------------------------------- configuration


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{GATE_MARKER}: a release-gate test parametrized by --model/--benchmark/--layers")
    if config.option.bias_update and not (config.option.bias_reason or "").strip():
        raise pytest.UsageError(f"{UPDATE_OPTION} needs {REASON_OPTION} TEXT: say why the thresholds change")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        # Share the cores between workers: torch's default of one thread per core in every worker
        # oversubscribes the machine and makes small tensor work crawl.
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ReportCardPlugin(config), "bias_suite.report_card")


def default_thresholds(rootpath: Path) -> Path:
    """``thresholds/`` under the rootdir when it exists, else the suite's own (source checkout)."""
    own = rootpath / "thresholds"
    if own.is_dir():
        return own
    shipped = Path(__file__).resolve().parents[1] / "thresholds"
    return shipped if shipped.is_dir() else own


def settings_from(config: pytest.Config):
    from bias_suite.suite import SuiteSettings

    option = config.option
    return SuiteSettings(layers=option.bias_layers, n_samples=option.bias_samples, seed=option.bias_seed,
                         device=option.bias_device, dtype=option.bias_dtype,
                         trust_remote_code=option.bias_trust_remote_code)


def gate_session(config: pytest.Config):
    """The per-process :class:`~bias_suite.session.GateSession` (models and benchmarks cached)."""
    if SESSION_STASH not in config.stash:
        from bias_suite.session import GateSession

        option = config.option
        thresholds = Path(option.bias_thresholds) if option.bias_thresholds else default_thresholds(config.rootpath)
        config.stash[SESSION_STASH] = GateSession(
            models=tuple(option.bias_models or [default_model()]),
            benchmarks=tuple(option.bias_benchmarks or DEFAULT_BENCHMARKS),
            settings=settings_from(config), thresholds=thresholds, worker=os.environ.get("PYTEST_XDIST_WORKER"),
        )
    return config.stash[SESSION_STASH]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = [name for name in ("bias_case", "bias_behaviour_case") if name in metafunc.fixturenames]
    if not names:
        return
    from bias_suite.errors import BiasSuiteError

    session = gate_session(metafunc.config)
    try:
        cases = session.layer_cases() if names[0] == "bias_case" else session.behaviour_cases()
        for model in session.models:
            session.threshold(model)  # a broken threshold file stops the run here, once, naming file and key
    except BiasSuiteError as error:
        raise pytest.UsageError(str(error)) from None
    params = [pytest.param(case, id=case.id, marks=pytest.mark.xdist_group(case.model)) for case in cases]
    if not params:
        params = [pytest.param(None, id="no-case", marks=pytest.mark.skip(reason="no benchmark with conflict pairs selected"))]
    metafunc.parametrize(names[0], params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``pytest --model=X`` runs the gate only; plain ``pytest`` runs the library tests and the gate."""
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("bias_case", item.callspec.params.get("bias_behaviour_case"))
        if case is not None:
            item.user_properties.append(("bias_case", case.as_dict()))
    if config.option.bias_models:
        gate = [item for item in items if item.get_closest_marker(GATE_MARKER)]
        deselected = [item for item in items if not item.get_closest_marker(GATE_MARKER)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = gate


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bias_device_and_dtype(pytestconfig: pytest.Config):
    """``(torch.device, torch.dtype)`` chosen by ``--device`` / ``--dtype``."""
    from bias_suite.loading import resolve_device

    return resolve_device(pytestconfig.option.bias_device, pytestconfig.option.bias_dtype)


@pytest.fixture
def bias_gate(pytestconfig: pytest.Config, record_property) -> "GateChecker":
    """Runs a gate check and records its rows for the report card. Models are loaded once per worker
    and shared read-only between tests."""
    return GateChecker(gate_session(pytestconfig), record_property, updating=pytestconfig.option.bias_update)


class GateChecker:
    """``check(case, kind)``: measure, record the rows, then pass, warn, fail or error.

    While ``--update-thresholds`` rewrites the bounds, a bound crossed is a warning (the card still
    shows it against the old file); a metric that could not be computed stays an error.
    """

    def __init__(self, session, record_property, updating: bool = False):
        self.session = session
        self.record_property = record_property
        self.updating = updating

    def check(self, case, kind: str) -> None:
        from bias_suite.assess import verdict

        rows, context = self.session.measure(case, kind, progress=_progress_bar(case))
        self.record_property("bias_rows", [row.to_json() | {"message": row.message} for row in rows])
        self.record_property("bias_context", context)
        status, message = verdict(rows)
        if status == "error":
            raise MetricNotComputedError(message)
        if status == "fail" and not self.updating:
            pytest.fail(message, pytrace=False)
        if status in ("warn", "fail"):
            warnings.warn(BiasGateWarning(message), stacklevel=2)


class MetricNotComputedError(RuntimeError):
    """A gated metric came out NaN/inf: the check did not run, which is an error, not a pass."""


def _progress_bar(case):
    """A progress bar for extraction on the real terminal (pytest captures sys.stderr)."""
    import sys

    stream = sys.__stderr__
    if stream is None or not stream.isatty():
        return None
    from tqdm.auto import tqdm

    bar = None

    def update(n: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc=f"extracting {case.model} on {case.benchmark}", unit="sample", file=stream, leave=False)
        bar.update(n)

    return update


# --------------------------------------------------------------------------- controller side


class ReportCardPlugin:
    """Registered on the controller only: merges recorded rows from every test report (local or from
    xdist workers), then writes the card, report files and threshold updates, and sets the exit status."""

    def __init__(self, config: pytest.Config):
        from bias_suite.session import RunRecord

        self.config = config
        self.record = RunRecord()
        self.outcome = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record.add_report(report.nodeid, report.when, report.outcome, report.user_properties,
                               str(report.longrepr) if report.failed else "")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.record.has_results:
            return
        from bias_suite.session import finish_run

        option = self.config.option
        self.outcome = finish_run(self.record, reports=option.bias_reports, update=option.bias_update,
                                  reason=option.bias_reason, strict_env=option.bias_strict_env)
        if self.outcome.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.outcome is None:
            return
        terminalreporter.section("bias report card")
        for line in self.outcome.card.lines:
            terminalreporter.write_line(line)


class BiasGateWarning(UserWarning):
    """A metric's point estimate is beyond its bound, but its interval is not (noise could explain it)."""
