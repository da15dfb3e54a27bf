"""`qwenchat batch` (checked before the model loads, then run), `qwenchat diff` and `qwenchat check`.
Every refusal is one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qwenchat.batch.inputs import BatchError, Prompt, check_placeholders, read_prompts, read_vars
from qwenchat.checks.spec import Check
from qwenchat.cli.options import BatchOptions, CheckOptions, DiffOptions, ModelOptions
from qwenchat.cli.startup import Startup
from qwenchat.compare.variants import Variant, parse_variants
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.batch.runner import Summary
    from qwenchat.checks.judge import Judge
    from qwenchat.checks.rates import PassRates
    from qwenchat.engines.api import Engine
    from qwenchat.environment import EngineFactory, Environment
    from qwenchat.ui.render import Renderer

MAX_PARALLEL = 256


@dataclass
class BatchInputs:
    prompts: list[Prompt]
    var_rows: list[dict[str, str]] | None
    variants: list[Variant]
    seeds: list[int]
    checks: dict[int, list[Check]] = field(default_factory=dict)  # prompt index -> its checks, shared too
    fail_under: float | None = None

    @property
    def judged(self) -> bool:
        return any(c.kind == "judge" for checks in self.checks.values() for c in checks)


def judge_options(base: ModelOptions, spec: str) -> ModelOptions:
    """The model options of `--judge SPEC`: an http(s) URL is an endpoint, a .gguf runs on llama.cpp, and
    anything else loads as -c would (demo: the demo model); the run's device and dtype flags carry over."""
    if spec.startswith(("http://", "https://")):
        return dataclasses.replace(base.for_spec("judge"), endpoint=spec, checkpoint_path=None)
    options = dataclasses.replace(base.for_spec(spec), endpoint=None, draft_model=None)
    if spec.endswith(".gguf"):
        options = dataclasses.replace(options, engine="llama.cpp")
    return options


def _prompt_checks(prompts: list[Prompt], shared: list[Check], name: str) -> dict[int, list[Check]]:
    from qwenchat.checks.suite import own_checks

    base = Path(name).resolve().parent
    out = {}
    for p in prompts:
        where = f"{name} line {p.line}"
        own = own_checks(p.checks, where, base=base, has_reference=p.reference is not None)
        if own or shared:
            out[p.index] = [*own, *shared]
    return out


def prepare(options: BatchOptions, err: Renderer) -> BatchInputs | None:
    """Everything that can be checked before the slow model load; None after a one-line error."""
    from qwenchat.batch.plan import parse_seeds
    from qwenchat.checks.rates import parse_rate
    from qwenchat.checks.suite import read_checks

    try:
        if not options.out:
            raise BatchError("qwenchat batch needs --out FILE.jsonl (where the results go, and resume from)")
        prompts = read_prompts(options.prompts)
        var_rows = read_vars(options.vars) if options.vars else None
        check_placeholders(prompts, set(var_rows[0]) if var_rows else set(), str(options.prompts))
        variants = parse_variants(list(options.grid), grid=True) if options.grid else [Variant("")]
        seeds = parse_seeds(options.seeds) if options.seeds else [options.generation.seed]
        if options.seeds and any("seed" in v.overrides for v in variants):
            raise BatchError("seed is both in --grid and --seeds; give it in one place")
        shared = read_checks(options.checks) if options.checks else []
        checks = _prompt_checks(prompts, shared, str(options.prompts))
        fail_under = parse_rate(options.fail_under) if options.fail_under is not None else None
        if not 1 <= options.parallel <= MAX_PARALLEL:
            raise BatchError(f"--parallel must be between 1 and {MAX_PARALLEL}, not {options.parallel}")
        if options.parallel > 1 and not options.model.endpoint:
            raise BatchError(
                "--parallel needs --endpoint: an in-process engine answers one prompt at a time "
                "(a server batches requests)"
            )
    except UserError as exc:
        err.error(first_line(exc))
        return None
    return BatchInputs(prompts, var_rows, variants, seeds, checks, fail_under)


class _NoStatus:
    """The renderer the extra connections are made with: the first one's "connecting" line says it all;
    an error still shows."""

    def __init__(self, err: Renderer) -> None:
        self._err = err

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[Callable[[str], None]]:
        yield lambda message: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._err, name)


def more_engines(
    options: BatchOptions, banner: dict[str, Any], make: EngineFactory, err: Renderer
) -> list[Engine] | None:
    """--parallel N: N-1 more connections to the same server and model, since an engine runs one turn
    at a time; None after a one-line error."""
    model = dataclasses.replace(options.model, checkpoint_path=banner["model"])  # the model the first chose
    quiet = cast("Renderer", _NoStatus(err))
    extra: list[Engine] = []
    for _ in range(options.parallel - 1):
        made = make(model, quiet)
        if made is None:
            for e in extra:
                e.close()
            return None
        extra.append(made[0])
    return extra


def run(
    options: BatchOptions,
    startup: Startup,
    engine: Engine,
    banner: dict[str, Any],
    inputs: BatchInputs,
    err: Renderer,
    extra: Sequence[Engine] = (),
    make: EngineFactory | None = None,
) -> int:
    from qwenchat.batch.plan import check_variants, plan_runs
    from qwenchat.batch.records import ResultsFile
    from qwenchat.batch.runner import BatchContext, check_resumable, run_batch
    from qwenchat.cli.startup import session_inputs
    from qwenchat.ui.batch import ProgressBar

    out = str(options.out)  # prepare() refused a batch without one
    try:
        system, settings = session_inputs(options.generation, startup, engine)
        schema = settings.schema
        check_variants(inputs.variants, schema, engine, bool(options.seeds))
        runs = plan_runs(
            inputs.prompts,
            inputs.var_rows,
            inputs.variants,
            inputs.seeds,
            default_system=system,
            base_settings=settings.effective(),
            schema=schema,
            name=str(options.prompts),
        )
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    judge = None
    if inputs.judged:  # loaded before the results file is touched: a judge that fails to load changes nothing
        judge = _judge(options.judge, options.model, make, err, engine, banner, settings)
        if judge is None:
            return 2
    try:
        results = ResultsFile(out).open()
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    model = options.model
    engine_name = f"openai:{engine.base_url}" if model.endpoint else model.engine
    ctx = BatchContext(
        engine,
        settings,
        model=banner["model"],
        engine_name=engine_name,
        adapter=", ".join(model.adapter) or None,
        overflow=options.generation.overflow,
        json_schema=startup.schema,
        checks=inputs.checks,
        references={p.index: p.reference for p in inputs.prompts if p.reference is not None},
        judge=judge,
    )
    try:
        check_resumable(runs, results)
        if results.torn:
            err.notice(f"{out}: its last line was cut by a killed write; that run is done again")
        if results.done:
            err.info(f"resuming {out}: {len(results.done)} of {len(runs)} runs already done")
        bar = ProgressBar(err.console)
        try:
            if extra:  # --parallel N: N requests in flight, written in the prompts' order
                from qwenchat.batch.parallel import contexts, run_parallel

                summary = run_parallel(contexts(ctx, [engine, *extra]), runs, results, bar)
            else:
                summary = run_batch(ctx, runs, results, bar)
        finally:
            bar.stop()
            for e in extra:
                e.close()
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    finally:
        results.close()
    code = _report(summary, out, err)
    if inputs.checks:
        from qwenchat.checks.rates import pass_rates

        rates = pass_rates([results.done[r.key] for r in runs if r.key in results.done])
        code = max(code, _show_rates(rates, err, inputs.fail_under))
    return code


def _show_rates(rates: PassRates, err: Renderer, fail_under: float | None) -> int:
    from qwenchat.ui.checks import ChecksView

    ChecksView(err.console).show(rates)
    return rates.exit_code(fail_under)


def _judge(
    spec: str | None,
    model: ModelOptions,
    make: EngineFactory | None,
    err: Renderer,
    engine: Engine | None = None,
    banner: dict[str, Any] | None = None,
    settings: Any = None,
) -> Judge | None:
    """The judge for `judge` checks: the --judge model (loaded now), else the model under test; None after
    a one-line error."""
    from qwenchat.checks.model_judge import ModelJudge

    if spec is None:
        if engine is None or banner is None:
            err.error(
                "judge checks need a model to grade them: --judge SPEC (demo, a directory, a .gguf, ...)"
            )
            return None
        return ModelJudge(engine, banner["model"], settings, under_test=True)
    if make is None:
        from qwenchat.cli.engine import make_engine

        make = make_engine
    made = make(judge_options(model, spec), err)
    if made is None:
        return None
    return ModelJudge(made[0], f"{made[1]['model']} (judge)")


def _report(summary: Summary, out: str, err: Renderer) -> int:
    rate = f" ({summary.per_minute:.1f} answers/min)" if summary.written else ""
    done = f"{summary.written} record{'s' if summary.written != 1 else ''} written to {out}"
    skipped = f", {summary.skipped} already there" if summary.skipped else ""
    if summary.failed:
        first_id, first_error = summary.failed[0]
        n = len(summary.failed)
        err.error(f"{n} run(s) failed (first: {first_id}: {first_error}); run again to retry")
    if summary.interrupted:
        err.info(f"interrupted: {done}{skipped}; run the same command again to resume")
        return 130
    err.info(f"{done}{skipped} in {summary.elapsed_s:.1f} s{rate}")
    return 1 if summary.failed else 0


def diff(options: DiffOptions, env: Environment, err: Renderer) -> int:
    """`qwenchat diff OLD NEW`: 0 identical, 1 changed, 2 bad input."""
    from qwenchat.batch.diff import diff_files
    from qwenchat.ui.batch import DiffView
    from qwenchat.ui.terminal import make_console

    try:
        report = diff_files(options.old, options.new)
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    for note in report.notes:
        err.notice(note)
    DiffView(make_console(env.stdout, plain=True if options.no_color else None)).show(report)
    return report.exit_code


def check(options: CheckOptions, err: Renderer, make: EngineFactory | None, env: Environment) -> int:
    """`qwenchat check RESULTS`: every record graded again (nothing generated; only judge checks load a
    model). 0 all pass (or --fail-under met), 1 otherwise, 2 bad input."""
    from qwenchat.batch.records import read_records
    from qwenchat.checks.grade import Answer, grade
    from qwenchat.checks.rates import parse_rate, pass_rates
    from qwenchat.checks.regrade import record_checks
    from qwenchat.checks.suite import read_checks
    from qwenchat.ui.checks import ChecksView
    from qwenchat.ui.terminal import make_console

    try:
        fail_under = parse_rate(options.fail_under) if options.fail_under is not None else None
        shared = read_checks(options.checks) if options.checks else None
        if options.out and Path(options.out).resolve() == Path(options.results).resolve():
            raise BatchError("--out must be another file than the results it grades")
        records, torn = read_records(options.results)
        plans = [record_checks(r, shared, f"{options.results} record {r.get('id')}") for r in records]
    except UserError as exc:
        err.error(first_line(exc))
        return 2
    if not any(plans):
        err.error(f"{options.results}: no record has checks to grade; give --checks FILE")
        return 2
    if torn:
        err.notice(
            f"{options.results}: its last line was cut by a killed write; left out (the file is unchanged)"
        )
    judge = None
    if any(c.kind == "judge" for checks in plans for c in checks):
        judge = _judge(options.judge, ModelOptions(), make, err)
        if judge is None:
            return 2
    graded = []
    for record, checks in zip(records, plans, strict=True):
        record = {k: v for k, v in record.items() if k not in ("checks", "passed")}
        record.update(grade(checks, Answer.from_record(record), judge))
        graded.append(record)
    if options.out:
        try:
            write_records(options.out, graded)
        except OSError as exc:
            err.error(f"{options.out}: cannot write it ({exc.strerror or exc})")
            return 2
        err.info(f"{len(graded)} graded records written to {options.out}")
    rates = pass_rates(graded)
    ChecksView(make_console(env.stdout, plain=True if options.no_color else None)).show(rates)
    return rates.exit_code(fail_under)


def write_records(path: str, records: list[dict[str, Any]]) -> None:
    """All the records at once: a temporary file beside it, fsynced, renamed over (never half-written)."""
    import json
    import os
    import tempfile

    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for r in records:
                f.write((json.dumps(r, ensure_ascii=True) + "\n").encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
