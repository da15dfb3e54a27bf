""":check and :keep: checks on the last answer, and the last exchange kept as a test case a batch run
replays (the logic lives in qwenchat/checks/)."""

from __future__ import annotations

from pathlib import Path

from qwenchat.checks.grade import Answer, grade
from qwenchat.checks.keep import append_case, changed_settings, make_case
from qwenchat.checks.spec import KINDS, Check, parse_inline
from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.paths import expand_user
from qwenchat.settings import Settings
from qwenchat.text.fences import one_line


def _kind_words(ctx: CommandContext) -> list[str]:
    return [f"{k}=" for k in KINDS]


def _answer(ctx: CommandContext) -> Answer:
    s = ctx.session
    msgs = s.conversation.messages
    if not msgs or msgs[-1].role != "assistant":
        raise CommandError("there is no answer to check yet")
    last = msgs[-1]
    stats = s.last_stats
    return Answer(
        text=last.content,
        finish_reason=stats.finish_reason if stats else ("length" if last.interrupted else "stop"),
        generated_tokens=stats.generated_tokens if stats else None,
        thinking_tokens=stats.thinking_tokens if stats else None,
        tool_calls=[{"name": c.get("name"), "arguments": c.get("arguments")} for c in last.tool_calls or []],
        prompt=s.last_user_text() or "",
        system=s.conversation.system,
    )


def _grade(ctx: CommandContext, checks: list[Check], answer: Answer) -> list[dict]:
    judge = None
    if any(c.kind == "judge" for c in checks):
        from qwenchat.checks.model_judge import ModelJudge

        judge = ModelJudge(ctx.session.engine, ctx.session.model, ctx.session.settings)
        with ctx.renderer.status("the model is judging the answer …"):
            return grade(checks, answer, judge)["checks"]
    return grade(checks, answer, judge)["checks"]


@command(
    "check",
    usage=":check CHECK...",
    help="Run checks on the last answer: contains=TEXT, not_contains=, regex=, equals=, starts_with=, "
    "json_schema=FILE, max_tokens=N, finish=stop|length, think=present|absent|N, tool_call=NAME, "
    "judge=RUBRIC (docs/checks.md).",
    arg_words=_kind_words,
    example=':check contains=Paris not_contains=Lyon judge="answers in one sentence"',
)
def cmd_check(ctx: CommandContext, args: str) -> None:
    if not args:
        raise CommandError("usage: :check CHECK... (e.g. :check contains=Paris finish=stop)")
    checks = parse_inline(args, ":check", base=Path.cwd())
    answer = _answer(ctx)
    ctx.renderer.check_verdicts(_grade(ctx, checks, answer))


@command(
    "keep",
    usage=":keep FILE.jsonl [CHECK...]",
    help="Append the last exchange to FILE.jsonl as a test case (conversation, system prompt, changed "
    "settings, seed, the answer as reference, the checks given); qwenchat batch FILE replays it.",
    example=":keep suite.jsonl contains=Paris not_contains=Lyon",
)
def cmd_keep(ctx: CommandContext, args: str) -> None:
    path, _, rest = args.strip().partition(" ")
    if not path:
        raise CommandError("usage: :keep FILE.jsonl [CHECK...] (e.g. :keep suite.jsonl contains=Paris)")
    checks = parse_inline(rest, ":keep", base=Path.cwd())
    s = ctx.session
    model = Settings(s.engine.default_settings(), schema=s.settings.schema).effective()
    case = make_case(s.conversation, changed_settings(s.settings.effective(), model), s.settings.seed, checks)
    if checks:  # the checks must hold for the answer being kept, or the suite starts with a failure
        failed = [v for v in _grade(ctx, checks, _answer(ctx)) if not v["pass"]]
        for v in failed:
            ctx.renderer.notice(f"note: {v['name']} fails on this answer: {v['detail']}")
    n = append_case(expand_user(path), case)
    for note in _replay_notes(ctx):
        ctx.renderer.notice(note)
    what = f" with {len(checks)} check{'s' if len(checks) != 1 else ''}" if checks else ""
    ctx.renderer.info(
        f"kept as case {n} of {one_line(path, 200)}{what}; replay: qwenchat batch {path} --out FILE"
    )


def _replay_notes(ctx: CommandContext) -> list[str]:
    """What a batch run of the case would not repeat: said once, the case is kept anyway."""
    s = ctx.session
    notes = []
    if s.reasoning.mode != "auto" or s.reasoning.budget is not None:
        notes.append("note: batch runs use the chat template's default reasoning, not :reasoning's choice")
    if s.json_schema is not None:
        notes.append("note: answers were constrained by :json; run the batch with --json-schema FILE too")
    if s.toolbox.definitions:
        notes.append("note: batch runs have no tools; the case is replayed without them")
    return notes
