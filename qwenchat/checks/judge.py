"""The `judge` check: a rubric graded by a model. The judge's answer is constrained to VERDICT_SCHEMA (the
engines' JSON-schema machinery), so the verdict is read, never guessed; an answer that is still not a
verdict (cut by the token limit, an error) fails the check and says why. The prompt and the answer the
judge gave are kept in the verdict."""

from __future__ import annotations

import json
from typing import Any, Protocol

# `reason` first: the judge writes its reasoning before it decides.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 200},
        "pass": {"type": "boolean"},
    },
    "required": ["reason", "pass"],
    "additionalProperties": False,
}
JUDGE_SYSTEM = (
    "You are a strict grader. You read a rubric, a question and an answer, and decide whether the answer "
    'meets the rubric. Reply with JSON only: {"reason": "<one short sentence>", "pass": true or false}.'
)
MAX_ANSWER_CHARS = 8000  # the answer shown to the judge; a longer one is cut (and the prompt says so)


class JudgeError(Exception):
    """The judge could not answer (interrupted, the engine failed): the check fails with this line."""


class Judge(Protocol):
    """A model that answers one prompt under a JSON schema (checks/model_judge.py runs it through a
    headless ChatSession); `name` says which model judged."""

    name: str

    def ask(self, system: str, prompt: str, schema: dict[str, Any]) -> str: ...


def judge_prompt(rubric: str, question: str, answer: str, reference: str | None = None) -> str:
    shown = answer if len(answer) <= MAX_ANSWER_CHARS else answer[:MAX_ANSWER_CHARS] + "\n[… cut]"
    parts = [f"Rubric:\n{rubric.strip()}", f"Question:\n{question.strip()}"]
    if reference:
        parts.append(f"A reference answer (for comparison):\n{reference.strip()}")
    parts.append(f"Answer to grade:\n{shown.strip()}")
    parts.append("Does the answer meet the rubric? Reply with the JSON verdict.")
    return "\n\n".join(parts)


def read_verdict(text: str) -> tuple[bool, str] | None:
    """(pass, reason) from the judge's answer; None when it is not a verdict of the schema's shape."""
    from qwenchat.structured.check import answer_json_text, validate_answer

    ok, _ = validate_answer(text, VERDICT_SCHEMA)
    if not ok:
        return None
    value = json.loads(answer_json_text(text))
    return bool(value["pass"]), str(value["reason"])


def judge_verdict(
    rubric: str, question: str, answer: str, reference: str | None, judge: Judge | None
) -> tuple[bool, str, dict[str, Any] | None]:
    """(pass, detail, the judge's prompt and answer) for one rubric."""
    if judge is None:
        return False, "no judge model (give --judge SPEC)", None
    prompt = judge_prompt(rubric, question, answer, reference)
    try:
        said = judge.ask(JUDGE_SYSTEM, prompt, VERDICT_SCHEMA)
    except JudgeError as exc:
        return (
            False,
            f"the judge did not answer: {exc}",
            {"model": judge.name, "prompt": prompt, "answer": None},
        )
    kept = {"model": judge.name, "prompt": prompt, "answer": said}
    found = read_verdict(said)
    if found is None:
        return False, "the judge's answer is not a verdict: " + " ".join(said.split())[:80], kept
    ok, reason = found
    return ok, " ".join(reason.split())[:200] or ("pass" if ok else "fail"), kept
