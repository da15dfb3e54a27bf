"""`qwenchat batch` (checked before the model loads, then run) and `qwenchat diff`. Every refusal is one
line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from qwenchat.batch.inputs import BatchError, Prompt, check_placeholders, read_prompts, read_vars
from qwenchat.cli.options import BatchOptions, DiffOptions
from qwenchat.cli.startup import Startup
from qwenchat.compare.variants import Variant, parse_variants
from qwenchat.errors import UserError, first_line

if TYPE_CHECKING:
    from qwenchat.batch.runner import Summary
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


def prepare(options: BatchOptions, err: Renderer) -> BatchInputs | None:
    """Everything that can be checked before the slow model load; None after a one-line error."""
    from qwenchat.batch.plan import parse_seeds

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
    return BatchInputs(prompts, var_rows, variants, seeds)


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
    return _report(summary, out, err)


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
