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

import os
import warnings
from pathlib import Path

import pytest

from bias_suite import options as validate
from bias_suite.errors import BiasGateWarning, BiasSuiteError, GateFailure, GateInconclusive, NoBaseline

GATE_MARKER = "bias_gate"
GATE_INI = "bias_gate"
SESSION_STASH = pytest.StashKey["object"]()
_typed = validate.argparse_type  # a validator of bias_suite.options as an argparse type (usage error, exit 4)

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
REFERENCE_OPTION = "--bias-reference"
ALLOW_UNBASELINED_OPTION = "--allow-unbaselined"
ACCEPT_REGRESSION_OPTION = "--accept-regression"
BOOTSTRAP_OPTION = "--bias-bootstrap"
SHARD_OPTION = "--bias-shard"
DEVICE_MAP_OPTION = "--device-map"
MAX_MEMORY_OPTION = "--max-memory"
ALIASES = pytest.StashKey["list"]()



def _parse_seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"seed {value!r} is not an integer; pass a whole number with 0 <= seed < 2**32") from None
    return validate.validate_seed(number)


_PENDING_ALIASES: dict[int, list] = {}  # id(parser) → short spellings to register once the conftests are in


def _add(group, name: str, **kwargs) -> None:
    """Register ``--bias-NAME`` now and ``--NAME`` later, after the initial conftests and every plugin loaded
    before them had their say: the short spelling is only taken when nobody else owns it, whichever order
    they register in (a project conftest defining ``--device`` keeps it; bias-suite keeps ``--bias-device``)."""
    prefixed = name if name.startswith("--bias-") else "--bias-" + name.removeprefix("--")
    group.addoption(prefixed, **kwargs)
    if name != prefixed:
        _PENDING_ALIASES.setdefault(id(group.parser), []).append((group, name, kwargs))


def _taken_names(parser: pytest.Parser) -> set[str]:
    groups = [parser._anonymous, *parser._groups]  # pytest keeps every option in these groups
    return {name for group in groups for option in group.options for name in option.names()}


def _register_aliases(parser: pytest.Parser) -> None:
    """The short spellings still free (see :func:`_add`)."""
    taken = _taken_names(parser)
    for group, name, kwargs in _PENDING_ALIASES.pop(id(parser), []):
        if name not in taken:
            group.addoption(name, **kwargs)
            taken.add(name)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    """After the initial conftests registered their options, take the short spellings nobody owns."""
    result = yield
    _register_aliases(parser)
    return result


def _parse_samples(value: str) -> int:
    number = validate.parse_positive(value)
    if number < validate.MIN_SAMPLES:
        raise ValueError(f"--samples {number}: key-space statistics need at least {validate.MIN_SAMPLES} samples "
                         f"(and a gated row {validate.MIN_GATED_SAMPLES}); pass --samples 16")
    return number


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    group = parser.getgroup("bias", "bias-suite: intrinsic text bias of multimodal LLMs")
    _add(group, MODEL_OPTION, dest="bias_models", action="append", default=None, metavar="SPEC",
         help="run the bias gate on this model (repeatable): hub id, local checkpoint dir, built-in alias "
              "or shape:NAME")
    _add(group, LAYERS_OPTION, dest="bias_layers", default="all", type=_typed(validate.parse_layers),
         metavar="SELECTOR", help="decoder layers: all, 0,4,8, 0-7, every:4, first_third, middle_third, last_third")
    _add(group, BENCHMARK_OPTION, dest="bias_benchmarks", action="append", default=None,
         type=_typed(validate.parse_benchmark), metavar="NAME_OR_PATH",
         help=f"benchmark, repeatable (default: {', '.join(validate.DEFAULT_BENCHMARKS)})")
    _add(group, SAMPLES_OPTION, dest="bias_samples", default=validate.DEFAULT_SAMPLES,
         type=_typed(_parse_samples), metavar="N",
         help=f"samples per benchmark, a seeded subset (default {validate.DEFAULT_SAMPLES}, at least "
              f"{validate.MIN_SAMPLES}; a gated row needs {validate.MIN_GATED_SAMPLES})")
    _add(group, SEED_OPTION, dest="bias_seed", default=0, type=_typed(_parse_seed),
         help="seed of subsets, folds and bootstrap (0 to 2**32 - 1)")
    _add(group, DEVICE_OPTION, dest="bias_device", default="auto", type=_typed(validate.parse_device),
         help="device for models under test: auto (CUDA when present), cpu, cuda, cuda:N")
    _add(group, DTYPE_OPTION, dest="bias_dtype", default="auto", type=_typed(validate.parse_dtype),
         help="weight dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    _add(group, THRESHOLDS_OPTION, dest="bias_thresholds", default=None, metavar="PATH",
         help="threshold folder or FILE.yaml (default: ./thresholds/ when it exists, else the package's generic "
              "bounds); with --update-thresholds a FILE.yaml that does not exist yet is created")
    _add(group, UPDATE_OPTION, dest="bias_update", action="store_true",
         help="bless this run: write the next version of each model's family threshold file (needs --reason)")
    _add(group, REASON_OPTION, dest="bias_reason", default=None, metavar="TEXT",
         help="why the thresholds change (recorded in the file's provenance)")
    _add(group, FAMILY_OPTION, dest="bias_families", action="append", default=None, metavar="[SPEC=]NAME",
         type=_typed(validate.parse_family),
         help="the family each model declares: its threshold file is the one of family NAME (SPEC=NAME for one "
              "model; repeatable); with --update-thresholds, the family a new file is blessed for")
    _add(group, STRICT_ENV_OPTION, dest="bias_strict_env", action="store_true",
         help="fail when torch/transformers/attention backend differ from the threshold file's")
    _add(group, REQUIRE_BASELINE_OPTION, dest="bias_require_baseline", action="store_true",
         help="kept for old CI recipes: a model nothing baselines is NO BASELINE (exit 7) by default now")
    _add(group, ALLOW_UNBASELINED_OPTION, dest="bias_allow_unbaselined", action="store_true",
         help="report only: a NO BASELINE model does not fail the run (the card still says NO BASELINE)")
    _add(group, ACCEPT_REGRESSION_OPTION, dest="bias_accept_regression", action="store_true",
         help="with --update-thresholds: bless even though the run is worse than the current file (recorded with "
              "the --reason; the run still exits with its verdict)")
    _add(group, TRUST_REMOTE_CODE_OPTION, dest="bias_trust_remote_code", action="store_true",
         help="allow checkpoints that ship their own modelling code (off by default)")
    _add(group, INCOMPLETE_WEIGHTS_OPTION, dest="bias_allow_incomplete_weights", action="store_true",
         help="load checkpoints with missing or unexpected weights (random gaps; the card says so)")
    _add(group, REPORT_OPTION, dest="bias_reports", action="append", default=[],
         type=_typed(validate.parse_report_path),
         metavar="PATH", help="write the bias report card; format by suffix (.md, .json, .html); repeatable")
    _add(group, BASELINE_OPTION, dest="bias_baseline", default=None, metavar="CARD.json",
         help="compare with a previous run's JSON card (same samples and seed): change per metric, paired bootstrap")
    _add(group, REFERENCE_OPTION, dest="bias_reference", default=None, metavar="SPEC",
         help="measure this model (the base model, the last release) on the same samples in the same run and judge "
              "every model's paired changes against it: GO, NO-GO or INCONCLUSIVE per metric")
    _add(group, BOOTSTRAP_OPTION, dest="bias_bootstrap", default=None, type=_typed(validate.parse_bootstrap),
         metavar="N", help=f"bootstrap replicates per interval (default {validate.DEFAULT_BOOTSTRAP})")
    _add(group, DEVICE_MAP_OPTION, dest="bias_device_map", default=None, type=_typed(validate.parse_device_map),
         metavar="STRATEGY", help="spread each model over the GPUs, then CPU, then disk with accelerate: auto, "
                                  "balanced, balanced_low_0, sequential (models larger than one GPU)")
    _add(group, MAX_MEMORY_OPTION, dest="bias_max_memory", default=None, type=_typed(validate.parse_max_memory),
         metavar="DEVICE=AMOUNT,…", help="with --device-map: each device's budget, e.g. 0=20GiB,1=20GiB,cpu=60GiB "
                                         "(what does not fit is offloaded to disk)")
    _add(group, SHARD_OPTION, dest="bias_shard", default=None, type=_typed(validate.parse_shard), metavar="K/N",
         help="run the K-th of N shards of the (model × benchmark) cells; its JSON --bias-report is what "
              "`bias-suite merge` reads")
    parser.addini(GATE_INI, "run the bias gate on the default model even without --model", type="bool", default=False)
    if getattr(pluginmanager, "_conftest_plugins", None):  # registered by a conftest: the others are in already
        _register_aliases(parser)


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


def families(config: pytest.Config) -> dict[str, str]:
    """``--family``: model spec → declared family (``*``: every model without its own)."""
    return validate.family_map(config.option.bias_families) or {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{GATE_MARKER}: a bias-gate item (--model × --benchmark × --layers)")
    if not gate_requested(config):
        return
    option = config.option
    if option.bias_update and not (option.bias_reason or "").strip():
        raise pytest.UsageError(f"{UPDATE_OPTION} needs {REASON_OPTION} TEXT: say why the thresholds change")
    if option.bias_accept_regression and not option.bias_update:
        raise pytest.UsageError(f"{ACCEPT_REGRESSION_OPTION} only means something with {UPDATE_OPTION}")
    _check_scale_options(option)
    _check_device(option.bias_device)
    _check_thresholds(config)
    _check_families(config)
    if not hasattr(config, "workerinput"):
        _check_destinations(config)
        config.pluginmanager.register(ReportCardPlugin(config), "bias_suite.report_card")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        # Share the cores between workers: torch's default of one thread per core in every worker
        # oversubscribes the machine and makes small tensor work crawl.
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def _check_scale_options(option) -> None:
    """``--bias-shard``, ``--device-map`` and ``--max-memory`` that cannot work stop here, before any model loads."""
    if option.bias_shard is not None:
        if option.bias_update:
            raise pytest.UsageError(f"{SHARD_OPTION} with {UPDATE_OPTION}: a shard is not the whole run; bless the "
                                    f"merged run: bias-suite merge SHARD.json… {UPDATE_OPTION} {REASON_OPTION} TEXT")
        if not any(Path(path).suffix.lower() == ".json" for path in option.bias_reports):
            raise pytest.UsageError(f"{SHARD_OPTION} {option.bias_shard}: a shard's JSON card is what bias-suite merge "
                                    f"reads: add {REPORT_OPTION}=shard-{option.bias_shard.replace('/', '-of-')}.json")
    if option.bias_max_memory is not None and option.bias_device_map is None:
        raise pytest.UsageError(f"{MAX_MEMORY_OPTION} only means something with {DEVICE_MAP_OPTION} auto")
    if option.bias_device_map is not None:
        import importlib.util

        if importlib.util.find_spec("accelerate") is None:
            raise pytest.UsageError(f"{DEVICE_MAP_OPTION} {option.bias_device_map} needs accelerate: "
                                    "pip install accelerate (or bias-suite[scale])")


def _check_device(device: str) -> None:
    """``--device cuda`` on a machine where torch sees no GPU stops here, before any model loads."""
    if not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if count == 0:
        raise pytest.UsageError(f"{DEVICE_OPTION} {device}: torch sees no CUDA device on this machine (torch "
                                f"{torch.__version__}); pass --device cpu, or install a CUDA build of torch")
    if index >= count:
        raise pytest.UsageError(f"{DEVICE_OPTION} {device}: torch sees {count} CUDA device(s): use cuda:0 to "
                                f"cuda:{count - 1}")


def _check_families(config: pytest.Config) -> None:
    """``--family SPEC=NAME`` whose SPEC is no model of the run would declare nothing (a typo would leave the
    model to its name's match): a usage error naming the models."""
    models = list(config.option.bias_models or [default_model()])
    if config.option.bias_reference:
        models.append(config.option.bias_reference)
    unknown = [spec for spec in families(config) if spec != "*" and spec not in models]
    if unknown:
        raise pytest.UsageError(f"{FAMILY_OPTION} {unknown[0]}=…: {unknown[0]!r} is not a {MODEL_OPTION} of this run "
                                f"(models: {', '.join(models)})")


def _check_thresholds(config: pytest.Config) -> None:
    """``--thresholds FILE.yaml`` that does not exist: created by a bless, a typo otherwise."""
    chosen = config.option.bias_thresholds
    if chosen and Path(chosen).suffix.lower() in (".yaml", ".yml") and not Path(chosen).exists() \
            and not config.option.bias_update:
        raise pytest.UsageError(f"{THRESHOLDS_OPTION} {chosen}: no such threshold file (a bless creates it: "
                                f"{UPDATE_OPTION} --family NAME --reason TEXT)")


def _check_destinations(config: pytest.Config) -> None:
    """Report files, the threshold folder (when blessing) and the baseline card are checked before any
    model loads: a run never measures for an hour and then loses its card."""
    option = config.option
    problems = validate.unwritable_destinations(option.bias_reports,
                                                thresholds_location(config) if option.bias_update else None)
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
    bootstrap = {} if option.bias_bootstrap is None else {"n_bootstrap": option.bias_bootstrap}
    return RunSettings(layers=option.bias_layers, n_samples=option.bias_samples, seed=option.bias_seed,
                       device=option.bias_device, dtype=option.bias_dtype,
                       trust_remote_code=option.bias_trust_remote_code,
                       allow_incomplete_weights=option.bias_allow_incomplete_weights,
                       device_map=option.bias_device_map, max_memory=option.bias_max_memory, **bootstrap)


def gate_options(config: pytest.Config):
    """The options every shard of a run shares (a shard's manifest records them)."""
    from bias_suite.run.shards import GateOptions

    option = config.option
    return GateOptions(models=tuple(option.bias_models or [default_model()]),
                       benchmarks=tuple(option.bias_benchmarks or validate.DEFAULT_BENCHMARKS),
                       settings=settings_from(config), thresholds=str(thresholds_location(config)),
                       families=families(config), reference=option.bias_reference, baseline=option.bias_baseline,
                       strict_env=option.bias_strict_env, allow_unbaselined=option.bias_allow_unbaselined)


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
            reference=option.bias_reference, families=families(config), baseline=option.bias_baseline,
            blessing=option.bias_update, shard=option.bias_shard,
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
        if self.config.pluginmanager.has_plugin("xdist"):  # the mark means nothing (and is unknown) without it
            self.add_marker(pytest.mark.xdist_group(gate_session(self.config).worker_group(case)))

    def runtest(self) -> None:
        from bias_suite.gate.judge import describe_row
        from bias_suite.vocabulary import Status, Verdict

        self.record = gate_session(self.config).measure(self.case, progress=_progress_bar(self.case))
        for row in self.record.rows:  # readable properties, e.g. for --junitxml
            if row.gated:
                ci = f" [{row.ci[0]:.4g}, {row.ci[1]:.4g}]" if row.ci else ""
                value = "nan" if row.value is None else f"{row.value:.4g}"
                self.user_properties.append((f"bias {row.metric} {row.benchmark} L{row.layer}",
                                             f"{value}{ci} {row.status} ({row.rule})"))
        verdict, message = self.record.verdict, self.record.message
        option = self.config.option
        warned = [row for row in self.record.rows if row.status is Status.WARN]
        if verdict is Verdict.FAIL:
            raise GateFailure(message)
        if verdict is Verdict.INCONCLUSIVE and not (option.bias_update and not self.record.regression):
            raise GateInconclusive(message)
        if verdict is Verdict.NO_BASELINE and not (option.bias_allow_unbaselined or option.bias_update):
            raise NoBaseline(f"NO BASELINE: no baseline judged {self.case.id} ({self.case.kind}): nothing but generic "
                             "sanity bounds gate it. Bless the checkpoint it must not be worse than (never this "
                             "candidate) with --update-thresholds --family NAME, gate with --family NAME, or pass "
                             f"{REFERENCE_OPTION}=BASELINE_CHECKPOINT ({ALLOW_UNBASELINED_OPTION}: report only)"
                             + (f"\n{message}" if message else ""))
        if warned or message:
            warnings.warn(BiasGateWarning(message or "\n".join(describe_row(row) for row in warned)), stacklevel=1)

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
    """Registered on the controller only: merges the record of every gate item (local or from xdist
    workers), then gives the verdicts, blesses, writes the card and report files, and sets the exit status:
    0 PASS, 1 FAIL (or a refused bless, an unwritable report, another failed test), 2 interrupted, 6
    INCONCLUSIVE, 7 NO BASELINE (see :class:`bias_suite.vocabulary.Verdict`)."""

    def __init__(self, config: pytest.Config):
        from bias_suite.run.finish import RunRecord

        self.config = config
        self.record = RunRecord()
        self.outcome = None
        self.interrupted_while = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        case = getattr(report, "bias_case", None)
        if case is None:
            if report.failed:
                self.record.other_failures += 1
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
        option = self.config.option
        sharded = option.bias_shard is not None and exitstatus not in (pytest.ExitCode.USAGE_ERROR,
                                                                       pytest.ExitCode.INTERNAL_ERROR)
        if not (self.record.has_results or sharded):
            return
        from bias_suite.run.finish import FinishOptions, finish_run

        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        shard = None
        if sharded:  # the shard's card carries its manifest and entries, even when its cells hold no case
            from bias_suite.run.shards import shard_record

            shard = shard_record(gate_session(self.config), self.record.entries, gate_options(self.config),
                                 self.record.other_failures, interrupted)
        finish = FinishOptions(
            reports=tuple(option.bias_reports), update=option.bias_update, reason=option.bias_reason,
            families=families(self.config), thresholds_location=thresholds_location(self.config),
            strict_env=option.bias_strict_env, allow_unbaselined=option.bias_allow_unbaselined,
            accept_regression=option.bias_accept_regression, reference=option.bias_reference,
            interrupted=interrupted, shard=shard,
        )
        try:
            self.outcome = finish_run(self.record, finish, session=gate_session(self.config))
        except KeyboardInterrupt:
            # Ctrl-C while blessing or writing reports: every file is written atomically, so each one is either
            # its previous version or the new one, never a part of either.
            self.interrupted_while = "finishing the run (verdicts, bless, report files)"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            return
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or (
                sharded and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = self.outcome.exit_code

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.interrupted_while is not None:
            terminalreporter.section("bias report card")
            terminalreporter.write_line(f"interrupted while {self.interrupted_while}: nothing was half-written "
                                        "(threshold files and reports are replaced atomically); run again")
        if self.outcome is None:
            return
        terminalreporter.section("bias report card")
        for line in self.outcome.card.terminal_lines(verbose=self.config.option.verbose > 0):
            terminalreporter.write_line(line)
