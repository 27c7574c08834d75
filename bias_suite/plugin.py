"""pytest plugin: the bias gate as the plugin's own test items, its options, and the report card.

Registered through the ``pytest11`` entry point ``bias_suite.plugin`` (a source checkout's root
``conftest.py`` loads it under the same name). Installed, it is a guest in other test suites: at load it
imports neither torch nor transformers, and it touches nothing — no threads, no deselection, no items —
unless a gate option is given (``--model``) or the ini option ``bias_gate = true`` asks for the gate on
the default model (in a run without path arguments). Then it adds one item per case
(``bias_gate::key_separation[MODEL-BENCH-L3]``,
``attention_share[…]``, ``text_preference[MODEL-BENCH]``), runs them through
:class:`bias_suite.run.session.GateSession` and, on the controller, merges the rows into the card
(:mod:`bias_suite.run.finish`, :mod:`bias_suite.report.card`) and sets the exit status.

Under pytest-xdist each item's rows travel to the controller as an attribute of its test report.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from bias_suite import options as validate
from bias_suite.errors import BiasGateWarning, BiasSuiteError, GateError, GateFailure

GATE_MARKER = "bias_gate"
GATE_INI = "bias_gate"
SESSION_STASH = pytest.StashKey["object"]()

# Option spellings. --model is the interface users ask for; the others also have a --bias- spelling, the
# only one registered when another plugin already owns the short name.
MODEL_OPTION = "--model"
LAYERS_OPTION = "--layers"
BENCHMARK_OPTION = "--benchmark"
SAMPLES_OPTION = "--samples"
SEED_OPTION = "--seed"
DEVICE_OPTION = "--device"
DTYPE_OPTION = "--dtype"
THRESHOLDS_OPTION = "--thresholds"
UPDATE_OPTION = "--update-thresholds"
REASON_OPTION = "--reason"
FAMILY_OPTION = "--family"
STRICT_ENV_OPTION = "--strict-env"
REQUIRE_BASELINE_OPTION = "--require-baseline"
TRUST_REMOTE_CODE_OPTION = "--trust-remote-code"
INCOMPLETE_WEIGHTS_OPTION = "--allow-incomplete-weights"
REPORT_OPTION = "--bias-report"
BASELINE_OPTION = "--bias-baseline"


def _checked(parse: Callable):
    def check(value: str):
        try:
            return parse(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    check.__name__ = parse.__name__
    return check


def _parse_seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"seed {value!r} is not an integer; pass a whole number with 0 <= seed < 2**32") from None
    return validate.validate_seed(number)


def _add(group, name: str, **kwargs) -> None:
    """Register ``--bias-NAME`` and, unless a plugin loaded before bias-suite owns it, ``--NAME`` (load a
    plugin that defines e.g. ``--device`` first, with ``-p``, and bias-suite keeps ``--bias-device``)."""
    prefixed = name if name.startswith("--bias-") else "--bias-" + name.removeprefix("--")
    names = [prefixed] if name == prefixed else [name, prefixed]
    try:
        group.addoption(*names, **kwargs)
    except (ValueError, argparse.ArgumentError):  # the short spelling is taken
        group.addoption(prefixed, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bias", "bias-suite: intrinsic text bias of multimodal LLMs")
    _add(group, MODEL_OPTION, dest="bias_models", action="append", default=None, metavar="SPEC",
         help="run the bias gate on this model (repeatable): hub id, local checkpoint dir, built-in alias "
              "or shape:NAME")
    _add(group, LAYERS_OPTION, dest="bias_layers", default="all", type=_checked(validate.parse_layers),
         metavar="SELECTOR", help="decoder layers: all, 0,4,8, 0-7, every:4, first_third, middle_third, last_third")
    _add(group, BENCHMARK_OPTION, dest="bias_benchmarks", action="append", default=None,
         type=_checked(validate.parse_benchmark), metavar="NAME_OR_PATH",
         help=f"benchmark, repeatable (default: {', '.join(validate.DEFAULT_BENCHMARKS)})")
    _add(group, SAMPLES_OPTION, dest="bias_samples", default=validate.DEFAULT_SAMPLES,
         type=_checked(validate.parse_positive), metavar="N",
         help=f"samples per benchmark, a seeded subset (default {validate.DEFAULT_SAMPLES})")
    _add(group, SEED_OPTION, dest="bias_seed", default=0, type=_checked(_parse_seed),
         help="seed of subsets, folds and bootstrap (0 to 2**32 - 1)")
    _add(group, DEVICE_OPTION, dest="bias_device", default="auto", type=_checked(validate.parse_device),
         help="device for models under test: auto (CUDA when present), cpu, cuda, cuda:N")
    _add(group, DTYPE_OPTION, dest="bias_dtype", default="auto", type=_checked(validate.parse_dtype),
         help="weight dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    _add(group, THRESHOLDS_OPTION, dest="bias_thresholds", default=None, metavar="PATH",
         help="threshold file or folder (default: ./thresholds/ when it exists, else the package's generic defaults)")
    _add(group, UPDATE_OPTION, dest="bias_update", action="store_true",
         help="bless this run: write the next version of each model's family threshold file (needs --reason)")
    _add(group, REASON_OPTION, dest="bias_reason", default=None, metavar="TEXT",
         help="why the thresholds change (recorded in the file's provenance)")
    _add(group, FAMILY_OPTION, dest="bias_family", default=None, metavar="NAME",
         help="with --update-thresholds, the family of a new threshold file (matches models named *NAME*)")
    _add(group, STRICT_ENV_OPTION, dest="bias_strict_env", action="store_true",
         help="fail when torch/transformers/attention backend differ from the threshold file's")
    _add(group, REQUIRE_BASELINE_OPTION, dest="bias_require_baseline", action="store_true",
         help="fail a model that only generic (not baselined) thresholds gate")
    _add(group, TRUST_REMOTE_CODE_OPTION, dest="bias_trust_remote_code", action="store_true",
         help="allow checkpoints that ship their own modelling code (off by default)")
    _add(group, INCOMPLETE_WEIGHTS_OPTION, dest="bias_allow_incomplete_weights", action="store_true",
         help="load checkpoints with missing or unexpected weights (random gaps; the card says so)")
    _add(group, REPORT_OPTION, dest="bias_reports", action="append", default=[],
         type=_checked(validate.parse_report_path),
         metavar="PATH", help="write the bias report card; format by suffix (.md, .json, .html); repeatable")
    _add(group, BASELINE_OPTION, dest="bias_baseline", default=None, metavar="CARD.json",
         help="compare with a previous run's JSON card (same samples and seed): change per metric, paired bootstrap")
    parser.addini(GATE_INI, "run the bias gate on the default model even without --model", type="bool", default=False)


def gate_requested(config: pytest.Config) -> bool:
    """``--model`` given; or ``bias_gate = true`` in the ini file and pytest run without path arguments
    (``pytest tests/x.py`` runs just those tests)."""
    if config.option.bias_models:
        return True
    return bool(config.getini(GATE_INI)) and config.args_source != pytest.Config.ArgsSource.ARGS


def default_model() -> str:
    from bias_suite.demo import DEFAULT_MODEL

    return DEFAULT_MODEL


def thresholds_location(config: pytest.Config) -> Path:
    """``--thresholds``, else ``./thresholds/`` (possibly absent: the package's generic defaults then gate)."""
    chosen = config.option.bias_thresholds
    return Path(chosen) if chosen else Path("thresholds")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{GATE_MARKER}: a bias-gate item (--model × --benchmark × --layers)")
    if not gate_requested(config):
        return
    option = config.option
    if option.bias_update and not (option.bias_reason or "").strip():
        raise pytest.UsageError(f"{UPDATE_OPTION} needs {REASON_OPTION} TEXT: say why the thresholds change")
    if not hasattr(config, "workerinput"):
        _check_destinations(config)
        config.pluginmanager.register(ReportCardPlugin(config), "bias_suite.report_card")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        # Share the cores between workers: torch's default of one thread per core in every worker
        # oversubscribes the machine and makes small tensor work crawl.
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def _check_destinations(config: pytest.Config) -> None:
    """Report files, the threshold folder (when blessing) and the baseline card are checked before any
    model loads: a run never measures for an hour and then loses its card."""
    option = config.option
    problems = [problem for path in option.bias_reports if (problem := validate.unwritable(Path(path)))]
    if option.bias_update:
        location = thresholds_location(config)
        problem = validate.unwritable(location) if location.is_file() else validate.unwritable(location, directory=True)
        if problem:
            problems.append(problem)
    if problems:
        raise pytest.UsageError("cannot write " + "; ".join(problems))
    if option.bias_baseline:
        from bias_suite.gate.baseline import load_baseline

        try:
            load_baseline(option.bias_baseline)
        except BiasSuiteError as error:
            raise pytest.UsageError(str(error)) from None


def settings_from(config: pytest.Config):
    from bias_suite.options import RunSettings

    option = config.option
    return RunSettings(layers=option.bias_layers, n_samples=option.bias_samples, seed=option.bias_seed,
                       device=option.bias_device, dtype=option.bias_dtype,
                       trust_remote_code=option.bias_trust_remote_code,
                       allow_incomplete_weights=option.bias_allow_incomplete_weights)


def gate_session(config: pytest.Config):
    """The per-process :class:`~bias_suite.run.session.GateSession` (models and benchmarks cached)."""
    if SESSION_STASH not in config.stash:
        from bias_suite.run.session import GateSession

        option = config.option
        config.stash[SESSION_STASH] = GateSession(
            models=tuple(option.bias_models or [default_model()]),
            benchmarks=tuple(option.bias_benchmarks or validate.DEFAULT_BENCHMARKS),
            settings=settings_from(config), thresholds=thresholds_location(config),
            worker=os.environ.get("PYTEST_XDIST_WORKER"),
            projections=any(Path(path).suffix.lower() == ".html" for path in option.bias_reports),
        )
    return config.stash[SESSION_STASH]


# --------------------------------------------------------------------------- the gate's items


class GateCollector(pytest.Collector):
    """Parent of the gate items (node id ``bias_gate``)."""

    def collect(self):
        session = gate_session(self.config)
        for case in session.cases():
            yield GateItem.from_parent(self, name=f"{case.kind.test_name}[{case.id}]", case=case)


class GateItem(pytest.Item):
    """One case: measure, record the rows for the card, then pass, warn, fail or error."""

    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.record = None  # the case's CaseRecord, once measured
        self.add_marker(GATE_MARKER)
        self.add_marker(pytest.mark.xdist_group(case.model))

    def runtest(self) -> None:
        from bias_suite.gate.judge import verdict
        from bias_suite.vocabulary import Status

        self.record = gate_session(self.config).measure(self.case, progress=_progress_bar(self.case))
        for row in self.record.rows:  # readable properties, e.g. for --junitxml
            if row.gated:
                ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
                value = "nan" if row.value is None else f"{row.value:.4g}"
                self.user_properties.append((f"bias {row.metric} {row.benchmark} L{row.layer}",
                                             f"{value}{ci} {row.status} ({row.rule})"))
        status, message = verdict(self.record.rows)
        if status is Status.ERROR:
            raise GateError(message)
        if status is Status.FAIL and not self.config.option.bias_update:
            raise GateFailure(message)
        if status in (Status.WARN, Status.FAIL):
            warnings.warn(BiasGateWarning(message), stacklevel=1)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BiasSuiteError):  # the gate's outcomes and bad input: no traceback
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"bias gate {self.name}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the gate's items (before -k and xdist see the list); ``--model`` runs the gate only."""
    if not gate_requested(config):
        return
    try:
        collector = GateCollector.from_parent(session, name=GATE_MARKER, nodeid=GATE_MARKER)
        gate_items = list(collector.collect())
        gate = gate_session(config)
        for spec in gate.models:
            gate.selection(spec)  # a broken threshold file stops the run here, once, naming file and key
    except BiasSuiteError as error:
        raise pytest.UsageError(str(error)) from None
    if config.option.bias_models:
        others = [item for item in items if not isinstance(item, GateItem)]
        if others:
            config.hook.pytest_deselected(items=others)
        items[:] = gate_items
    else:
        items.extend(gate_items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if isinstance(item, GateItem):
        report.bias_case = item.case.to_json()
        if call.when == "call" and item.record is not None:
            report.bias_record = item.record.to_json()
    return report


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
    """Registered on the controller only: merges recorded rows from every report (local or from xdist
    workers), then compares, blesses, writes the card and report files, and sets the exit status."""

    def __init__(self, config: pytest.Config):
        from bias_suite.run.finish import RunRecord

        self.config = config
        self.record = RunRecord()
        self.outcome = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = getattr(report, "bias_case", None)
        if case is None:
            return
        from bias_suite.run.records import Case, CaseRecord

        reason = ""
        if report.failed:
            text = str(report.longrepr).strip()
            reason = text.splitlines()[-1] if text else "the case failed before recording"
        recorded = getattr(report, "bias_record", None) if report.when == "call" else None
        self.record.add(Case.from_json(case), None if recorded is None else CaseRecord.from_json(recorded),
                        report.failed, reason)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        if not self.record.has_results:
            return
        from bias_suite.run.finish import FinishOptions, finish_run

        option = self.config.option
        finish = FinishOptions(
            reports=tuple(option.bias_reports), update=option.bias_update, reason=option.bias_reason,
            family=option.bias_family, thresholds_location=thresholds_location(self.config),
            strict_env=option.bias_strict_env, require_baseline=option.bias_require_baseline,
            baseline=option.bias_baseline, interrupted=exitstatus == pytest.ExitCode.INTERRUPTED,
        )
        self.outcome = finish_run(self.record, finish, session=gate_session(self.config))
        if self.outcome.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.outcome is None:
            return
        terminalreporter.section("bias report card")
        for line in self.outcome.card.lines:
            terminalreporter.write_line(line)
