"""Token probabilities for the llama.cpp engine (`:probs on`): the raw distribution of each sampled token.

After llama.cpp has evaluated a token, the logits of the batch's last position stay in its context until the
next evaluation; the sampler works on a copy. So right after `Llama.generate` yields a token, its logits are
read once (llama_get_logits_ith(ctx, -1)) and reduced to the chosen token's log-probability and the top-k.
llama.cpp does not expose the distribution after its samplers, so only the raw one is recorded (labelled).
Nothing is read when probabilities are off.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qwenchat.probs.record import Alt, TokenProb, WholeChars


class LlamaProbs:
    def __init__(self, llm: Any, llama_cpp: Any, k: int) -> None:
        self.llm = llm
        self.llama_cpp = llama_cpp
        self.k = k
        self.n_vocab = llm.n_vocab()
        self.records: list[TokenProb] = []
        self._chars = WholeChars(self._decode)

    def take(self, token: int, row: int = -1) -> None:
        """Record `token`, just sampled from the logits the context holds now (of the batch's `row`: the last
        by default; scoring reads every row of its batch)."""
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))  # a view: llama.cpp's own buffer
        peak = float(logits.max())
        lse = peak + float(np.log(np.exp(logits - peak).sum(dtype=np.float64)))  # one pass, no log_softmax
        top = np.argpartition(logits, -self.k)[-self.k :]
        top = top[np.argsort(-logits[top], kind="stable")]
        self.records.append(
            TokenProb(
                id=token,
                text=self._chars.text(token),
                logprob=float(logits[token]) - lse,
                top=[Alt(self._text(int(i)), int(i), float(logits[i]) - lse) for i in top],
            )
        )

    def force(self, token: int) -> None:
        """Record `token` as put there, not sampled (the closing tag of a spent thinking budget)."""
        text = self._chars.text(token)
        self.records.append(TokenProb(id=token, text=text, logprob=None, top=[], forced=True))

    def _text(self, token: int) -> str:
        return self._decode([token])

    def _decode(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")
