"""Constrained decoding: every answer of the transformers provider is JSON of the verdict schema.

xgrammar compiles the schema into a grammar over the model's tokenizer; a logits processor keeps
one matcher per batch row and masks, at every step, the tokens the grammar does not allow (rows
without a schema are left free). Why xgrammar: it installs as a plain wheel beside torch 2.14
and transformers 5.23, compiles the verdict schema in about 0.05 s, and masks the 151k-token
Qwen vocabulary per row in C++; outlines 1.3 took 132 s and 6 GB of memory to index this schema
over the same vocabulary (measured here, 2026-11-23).

Two choices keep every answer complete and fast:
- strings are compiled without their ``maxLength`` (bounded strings make the grammar huge); the
  parser trims long strings and says so;
- a token budget: in the last ``reserve`` steps of ``max_new_tokens`` the processor closes what
  is open (it prefers ``"``, ``]``, ``}``, ``,`` whenever the grammar allows one), so even a
  random model ends with a complete object instead of one cut in the middle.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import torch
from transformers import LogitsProcessor

# The shortest answer the verdict schema admits is about 220 characters; a token holds at least
# one character, so this many steps always suffice to close an answer from any point.
CLOSING_RESERVE = 260
CLOSERS = ('"', "]", "}", ",")


def _strip_max_length(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_max_length(v) for k, v in node.items() if k != "maxLength"}
    if isinstance(node, list):
        return [_strip_max_length(v) for v in node]
    return node


@cache
def _tokenizer_info(tokenizer: Any, vocab_size: int, stop_ids: tuple[int, ...]) -> Any:
    import xgrammar as xgr

    return xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))


_GRAMMARS: dict[tuple[int, str], tuple[Any, Any]] = {}  # (id(info), schema) → (info, compiled grammar)


def _compiled(info: Any, schema_json: str) -> Any:
    import xgrammar as xgr

    key = (id(info), schema_json)
    if key not in _GRAMMARS:
        schema = _strip_max_length(json.loads(schema_json))
        grammar = xgr.GrammarCompiler(info, max_threads=2).compile_json_schema(json.dumps(schema), any_whitespace=False)
        _GRAMMARS[key] = (info, grammar)  # holding info keeps its id from being reused
    return _GRAMMARS[key][1]


class JsonSchemaLogitsProcessor(LogitsProcessor):
    """One grammar matcher per batch row; a new instance for every ``generate`` call."""

    def __init__(self, grammars: list[Any | None], vocab_size: int, closer_ids: list[int], max_new_tokens: int):
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)
        self.closer_ids = closer_ids
        self.max_new_tokens = max_new_tokens
        self.reserve = min(CLOSING_RESERVE, max_new_tokens // 2)
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.step > 0:  # feed each live row the token chosen at the previous step
            for row, matcher in enumerate(self.matchers):
                if matcher is not None and not matcher.is_terminated():
                    matcher.accept_token(int(input_ids[row, -1]))
        self.step += 1
        self.bitmask.fill_(-1)  # all allowed, for free and finished rows
        live = [(r, m) for r, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        for row, matcher in live:
            matcher.fill_next_token_bitmask(self.bitmask, row)
        width = min(scores.shape[-1], self.vocab_size)
        self.xgr.apply_token_bitmask_inplace(scores[:, :width], self.bitmask.to(scores.device), vocab_size=width)
        if self.max_new_tokens - self.step < self.reserve:
            for row, _ in live:
                for closer in self.closer_ids:  # close what is open, the innermost first
                    if scores[row, closer] > float("-inf"):
                        keep = scores[row, closer].clone()
                        scores[row].fill_(float("-inf"))
                        scores[row, closer] = keep
                        break
        return scores


def json_schema_processor(
    tokenizer: Any, vocab_size: int, stop_ids: list[int], schemas: list[dict | None], max_new_tokens: int
) -> JsonSchemaLogitsProcessor:
    info = _tokenizer_info(tokenizer, vocab_size, tuple(stop_ids))
    grammars = [
        _compiled(info, json.dumps(s, sort_keys=False, ensure_ascii=False)) if s is not None else None for s in schemas
    ]
    closers = [tokenizer.convert_tokens_to_ids(c) for c in CLOSERS]
    return JsonSchemaLogitsProcessor(grammars, vocab_size, [c for c in closers if c is not None], max_new_tokens)
