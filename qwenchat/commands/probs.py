"""Token probabilities: `:probs` (record, heat map), `:alt N` (the candidates at a token), `:branch N K`,
`:score TEXT|@FILE` (a given answer, teacher-forced)."""

from __future__ import annotations

from qwenchat.commands.registry import CommandContext, CommandError, command
from qwenchat.paths import expand_user
from qwenchat.probs.branch import plan_branch
from qwenchat.probs.record import DEFAULT_TOP_K, MAX_TOP_K, TokenProb, parse_k
from qwenchat.text.numbers import parse_index
from qwenchat.ui.probs import score_lines


def _last_probs(ctx: CommandContext) -> list[TokenProb]:
    msgs = ctx.session.conversation.messages
    last = next((m for m in reversed(msgs) if m.role == "assistant"), None)
    if last is None:
        raise CommandError("there is no answer yet")
    if last.probs is None:
        state = "on" if ctx.session.probs_k else "off (:probs on turns it on)"
        raise CommandError(f"the last answer has no token probabilities; recording is {state}, then :retry")
    if not last.probs:
        raise CommandError("the last answer has no tokens with probabilities (the engine sent none)")
    return last.probs


@command(
    "probs",
    usage=":probs [on [K]|off]",
    help="Record each answer token's probability and its top-K alternatives (on/off, K 5 by default), "
    "or show the last answer as a heat map with a summary.",
    arg_words=lambda ctx: ["on", "off"],
    example=":probs on 10",
)
def cmd_probs(ctx: CommandContext, args: str) -> None:
    words = args.split()
    s = ctx.session
    if not words:
        ctx.renderer.token_probs(_last_probs(ctx))
        return
    if words[0] == "off" and len(words) == 1:
        s.probs_k = 0
        ctx.renderer.info("token probabilities off")
        return
    if words[0] != "on" or len(words) > 2:
        raise CommandError(f"usage: :probs [on [K]|off] (K from 1 to {MAX_TOP_K})")
    s.probs_k = parse_k(words[1]) if len(words) == 2 else DEFAULT_TOP_K
    ctx.renderer.info(f"token probabilities on: the top {s.probs_k} alternatives of every answer token")


@command(
    "alt",
    usage=":alt N",
    help="Show the alternatives the model had at token N of the last answer (:probs shows the numbers).",
    example=":alt 12",
)
def cmd_alt(ctx: CommandContext, args: str) -> None:
    probs = _last_probs(ctx)
    if not args:
        raise CommandError(f"usage: :alt N (N from 1 to {len(probs)})")
    n = parse_index(args, "token", len(probs))
    ctx.renderer.token_alternatives(n, probs[n - 1])


@command(
    "branch",
    usage=':branch N K | :branch N "text"',
    help="Regenerate the last answer from token N with its K-th alternative (or the text) there; "
    "the tokens before N are kept as they were. :undo brings the old answer back.",
    example=":branch 12 2",
)
def cmd_branch(ctx: CommandContext, args: str) -> None:
    n_text, _, choice = args.partition(" ")
    if not choice.strip():
        raise CommandError('usage: :branch N K or :branch N "text"')
    plan = plan_branch(ctx.session.engine, _last_probs(ctx), n_text, choice)
    ctx.session.branch(plan)


@command(
    "score",
    usage=":score TEXT | :score @FILE",
    help="How likely the model finds TEXT (or a file's text) as the answer to your last message, "
    "teacher-forced: total and mean log-probability, perplexity, the least likely tokens and a heat map. "
    "Nothing changes.",
    example=":score The capital of France is Paris.",
)
def cmd_score(ctx: CommandContext, args: str) -> None:
    answer = _answer_argument(args)
    if ctx.session.last_user_text() is None:
        raise CommandError("there is no message of yours to score an answer to yet")
    score = ctx.session.score(answer)
    for line in score_lines(score.total, len(score.tokens)):
        ctx.renderer.info(line)
    ctx.renderer.token_probs(score.tokens)


def _answer_argument(args: str) -> str:
    """The text to score: as typed, or `@FILE`'s text (without the newline a file ends with)."""
    if not args.strip():
        raise CommandError("usage: :score TEXT or :score @FILE (an answer to your last message)")
    if not args.startswith("@"):
        return args
    from qwenchat.chat.attach import read_file

    name = args[1:].strip()
    if not name:
        raise CommandError("usage: :score @FILE")
    text = read_file(expand_user(name), name).text.removesuffix("\n")
    if not text.strip():
        raise CommandError(f"{name} is empty: nothing to score")
    return text
