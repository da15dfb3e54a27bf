"""Commands to compare answers: :compare runs variants, :diff shows two word by word, :pick keeps one.
The logic lives in qwenchat/compare/; here, only the showing."""

from __future__ import annotations

from typing import Any

from qwenchat.chat.observer import AnswerSink
from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.compare.run import ORIGINAL, CompareRun, VariantResult, find, pick, run_compare
from qwenchat.engines.api import SupportsAdapters, TurnStats
from qwenchat.text.fences import one_line
from qwenchat.text.worddiff import summarize, word_diff

GRID = "--grid"


class _Shown:
    """The session's observer while variants run: each answer opens under its label, its stats follow."""

    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self.inner = ctx.session.observer
        self.title = ""

    # ChatObserver
    def answer(self, *, think_open: bool | None, continues: str | None) -> AnswerSink:
        return self.ctx.renderer.answer(self.title, think_open=think_open)

    def turn_done(self, result: Any) -> None:
        pass

    def notice(self, text: str) -> None:
        self.inner.notice(text)

    # CompareObserver
    def variant_start(self, label: str, describe: str) -> None:
        self.title = f"{label} · {describe}"
        if self.ctx.renderer.plain:  # a pipe: the labels go beside the answers, to stderr
            self.ctx.renderer.hint(self.title)

    def variant_done(self, result: VariantResult) -> None:
        if result.stats is not None:
            self.ctx.renderer.stats(result.stats)


def _rate(stats: TurnStats | None) -> str:
    return f"{stats.decode_tps:.1f}" if stats is not None and stats.generated_tokens > 1 else "-"


def _show_run(ctx: CommandContext, run: CompareRun) -> None:
    r = ctx.renderer
    done = run.results
    if run.stopped:
        r.notice(f"compare stopped: {len(done)} of {run.total} variants ran (kept: :pick and :diff use them)")
    if not done:
        return
    r.answers([(f"{x.label} · {x.describe}", x.text) for x in done])
    rows = []
    for x, diff in zip(done, run.summaries(), strict=True):
        tokens = str(x.stats.generated_tokens) if x.stats is not None else "-"
        vs_a = "—" if diff is None else diff.one_line()
        rows.append((x.label, one_line(x.describe, 40), tokens, _rate(x.stats), x.finish_reason, vs_a))
    r.table(rows, headers=("", "variant", "tokens", "tok/s", "finish", "vs A"), title="Compared")
    r.hint(":pick B keeps variant B as the answer; :diff A B shows the words that differ")


def _variant_words(ctx: CommandContext) -> list[str]:
    words = [GRID, *(f"{k}=" for k in ctx.session.settings.words()), "seed=", "system="]
    engine = ctx.session.engine
    if isinstance(engine, SupportsAdapters) and engine.adapters():
        words.append("adapter=")
    return words


@command(
    "compare",
    usage=":compare [--grid] key=v1,v2 ...",
    help="Answer your last message once per variant (any :conf key, seed, system (text or @file), "
    "adapter): live, then side by side with a word-diff summary. Values of several keys are paired "
    "(--grid: every combination). Your settings do not change.",
    arg_words=_variant_words,
    example=":compare temperature=0.2,1.0 seed=1,2",
)
def cmd_compare(ctx: CommandContext, args: str) -> None:
    words = args.split(None, 1)
    grid = bool(words) and words[0] == GRID
    spec = words[1] if grid and len(words) > 1 else "" if grid else args
    if not spec.strip():
        raise CommandError("usage: :compare [--grid] key=v1,v2 ... (e.g. :compare seed=1,2,3)")
    shown = _Shown(ctx)
    s = ctx.session
    s.observer = shown
    try:
        run = run_compare(s, spec, shown, grid=grid)
    finally:
        s.observer = shown.inner
    _show_run(ctx, run)


def _labels(ctx: CommandContext) -> list[str]:
    msgs = ctx.session.conversation.messages
    alts = msgs[-1].alternatives if msgs and msgs[-1].role == "assistant" else ()
    return sorted({a.label for a in alts}, key=lambda x: (len(x), x))


@command(
    "diff",
    usage=":diff [X Y]",
    help="Word diff of two compared variants of the last answer (A and B by default); "
    "without colours [-removed-] {+added+}.",
    arg_words=_labels,
    example=":diff A C",
)
def cmd_diff(ctx: CommandContext, args: str) -> None:
    names = args.split() or ["A", "B"]
    if len(names) != 2:
        raise CommandError("usage: :diff X Y (two variant labels, e.g. :diff A C)")
    left, right = find(ctx.session, names[0]), find(ctx.session, names[1])
    ctx.renderer.info(f"{left.label} → {right.label}: {summarize(left.content, right.content).one_line()}")
    ctx.renderer.word_diff(word_diff(left.content, right.content))


@command(
    "pick",
    usage=":pick X",
    help=f"Keep compared variant X as the answer in the history; the others (and the answer it replaces, "
    f"as {ORIGINAL}) stay in the session file, not in the prompt.",
    arg_words=_labels,
    example=":pick B",
)
def cmd_pick(ctx: CommandContext, args: str) -> None:
    if not args or len(args.split()) != 1:
        raise CommandError("usage: :pick X (a variant label, e.g. :pick B)")
    alt = pick(ctx.session, args)
    ctx.renderer.info(f"variant {alt.label} is now the answer: {one_line(alt.content)}")
