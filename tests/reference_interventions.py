"""A slow, literal reading of docs/interventions.md, for tests only.

Everything is recomputed from the whole history at every step, one row at a time, in plain Python
straight from the words of the docs (TIP itself comes from tests/reference.py). The library's
batched tensor state is checked against this on every shared tokenizer and through vLLM.

Everything about the vocabulary comes from the independent oracle (tests/vocab_oracle.py, built
from the tokenizer's own tokenizer.json), never from the library: TIP's and gated TIP's switch
vocabulary (hits, multi-token patterns, word ends), the token texts NoWait matches, the special ids
and think markers no rule touches, the entries CyclicReflex biases and the ids of a budget's forced
word (encoded by tokenizer.json itself), so that these tests do not check the library against itself.

A row is described by its prompt facts (does the prompt end inside an open think block, how many
thinking tokens it already holds), its generated tokens and, because `gated` and `budget` look at
the logits, the raw logits row of every step so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import reference
import torch
from vocab_oracle import Rules, oracle_for

from tip_decode.core.vocabulary import ThinkMarkers

FORCED = 1e9


@dataclass
class Row:
    prompt_open: bool
    prompt_think: int
    generated: list[int] = field(default_factory=list)
    logits: list[torch.Tensor] | dict[int, torch.Tensor] = field(default_factory=list)  # raw logits of steps 0..t
    entropies: dict[int, float] = field(default_factory=dict)
    #: Positions where the state was rebuilt from the token history (a request resumed after
    #: preemption): apply-time statistics (gated's entropies, a word being forced) restart there.
    restarts: list[int] = field(default_factory=list)

    tops: dict[int, int] = field(default_factory=dict)

    def entropy(self, step: int) -> float:
        """Entropy of the raw logits of `step` (cached; a test may fill the cache itself)."""
        if step not in self.entropies:
            self.entropies[step] = entropy(self.logits[step])
        return self.entropies[step]

    def top(self, step: int) -> int:
        """The most likely token of the raw logits of `step` (cached likewise)."""
        if step not in self.tops:
            self.tops[step] = int(torch.argmax(self.logits[step]))
        return self.tops[step]


class Reference:
    """The docs' rules for one tokenizer and think markers."""

    def __init__(self, tokenizer, markers: ThinkMarkers | None = None, gate_margin: float = 1e-4, raw=None) -> None:
        """`raw`: the `tokenizers.Tokenizer` the switch oracle reads (default: the tokenizer's own
        tokenizer.json); `markers`: think markers given from elsewhere (vLLM's reasoning parser)."""
        self.tokenizer = tokenizer
        self.gate_margin = gate_margin  # a gate this close to its threshold is not called
        self.oracle = oracle_for(raw if raw is not None else raw_tokenizer(tokenizer))
        # Think markers: the given ones, else the oracle's own reading of the vocabulary.
        self.markers = markers if markers is not None else ThinkMarkers(self.oracle.think_start, self.oracle.think_end)
        self.switch_markers = (self.markers.start_id, self.markers.end_id)
        #: Special tokens and the think markers: no keyword rule ever touches them.
        self.excluded = frozenset(self.oracle.special | {i for i in self.switch_markers if i is not None})
        eos = getattr(tokenizer, "eos_token_id", None)
        self.eos_ids = [int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None]

    # ----- reasoning -----

    def reasoning_start(self, row: Row, history: list[int]) -> int | None:
        """0 when the prompt is open or there are no markers; else right after the first start marker."""
        if row.prompt_open or not self.markers.available:
            return 0
        for j, token in enumerate(history):
            if token == self.markers.start_id:
                return j + 1
        return None

    def reasoning_open(self, row: Row, history: list[int]) -> bool:
        start = self.reasoning_start(row, history)
        if start is None:
            return False
        return not (self.markers.available and self.markers.end_id in history[start:])

    def acts(self, scope: str, row: Row, history: list[int]) -> bool:
        return scope == "all" or self.reasoning_open(row, history)

    def resolve(self, scope: str) -> str:
        return ("think" if self.markers.available else "all") if scope == "auto" else scope

    # ----- nowait -----

    @lru_cache(maxsize=8)  # noqa: B019 (one reference object per test session; its cache lives as long anyway)
    def nowait_ids(self, keywords: tuple[str, ...]) -> frozenset[int]:
        """Tokens whose text holds a keyword (any case) with no letter right before or after it."""
        out = set()
        for token_id, (text, _, _) in enumerate(self.oracle.texts):
            if token_id in self.excluded:
                continue
            lowered = text.lower()
            for keyword in keywords:
                if keyword not in lowered:
                    continue
                for i in range(len(lowered) - len(keyword) + 1):
                    if lowered[i : i + len(keyword)] != keyword:
                        continue
                    before_letter = i > 0 and lowered[i - 1].isalpha()
                    after_letter = i + len(keyword) < len(lowered) and lowered[i + len(keyword)].isalpha()
                    if not before_letter and not after_letter:
                        out.add(token_id)
        return frozenset(out)

    def nowait(self, config, row: Row, t: int) -> dict[int, float]:
        if not self.acts(self.resolve(config.scope), row, row.generated[:t]):
            return {}
        return {i: -math.inf for i in self.nowait_ids(config.keywords)}

    # ----- cyclic -----

    @lru_cache(maxsize=8)  # noqa: B019 (one reference object per test session; its cache lives as long anyway)
    def cyclic_ids(self, words: tuple[str, ...]) -> list[int]:
        vocab = self.oracle.raw.get_vocab(with_added_tokens=True)
        return sorted({vocab[w] for w in words if w in vocab and vocab[w] not in self.excluded})

    def cyclic(self, config, row: Row, t: int) -> dict[int, float]:
        """The authors' `cyclical_processor`, with t = tokens generated so far."""
        if not self.acts(self.resolve(config.scope), row, row.generated[:t]):
            return {}
        if t < config.start or (config.end is not None and t >= config.end):
            return {}
        amplitude, period, shift = config.amplitude, config.period, config.shift
        cycle_pos = ((t + shift * period) % period) / period
        if cycle_pos <= 0.25:
            penalty = (cycle_pos / 0.25) * amplitude
        elif cycle_pos <= 0.75:
            penalty = amplitude - ((cycle_pos - 0.25) / 0.5) * 2 * amplitude
        else:
            penalty = -amplitude + ((cycle_pos - 0.75) / 0.25) * amplitude
        return {i: penalty for i in self.cyclic_ids(config.words)}

    # ----- tip and gated -----

    @lru_cache(maxsize=16)  # noqa: B019 (one reference object per test session; its cache lives as long anyway)
    def switch_rules(self, triggers: tuple[str, ...]) -> Rules:
        """What the contract penalises for `triggers`, from the oracle, with the plan's think markers."""
        start, end = self.switch_markers
        return replace(self.oracle.rules(triggers), think_start=start, think_end=end)

    def switch_scope(self, scope: str) -> str:
        if scope != "auto":
            return scope
        start, end = self.switch_markers
        return "think" if start is not None and end is not None else "all"

    def tip(self, config, row: Row, t: int) -> dict[int, float]:
        rules = self.switch_rules(config.triggers)
        ids = reference.penalised(rules, self.switch_scope(config.scope), row.prompt_open, row.generated, t, config.beta)
        return {i: -config.alpha for i in ids}

    def gated(self, config, row: Row, t: int) -> tuple[dict[int, float], bool]:
        """TIP's penalty when the thought's mean entropy (step t included) is below the threshold.

        Returns the bias and whether the mean is too close to the threshold to call.
        """
        rules = self.switch_rules(config.triggers)
        scope = self.switch_scope(config.scope)
        history = row.generated[:t]
        ids = reference.penalised(rules, scope, row.prompt_open, row.generated, t, config.beta)
        if not ids:
            return {}, False
        # Steps counted: after reasoning opened and after the token that completed the latest switch.
        start = 0 if scope == "all" else self.reasoning_start(row, history)
        completed = [end for _, end in reference.switch_events(rules, scope, row.prompt_open, history)]
        first = max([start] + [end + 1 for end in completed] + [r for r in row.restarts if r <= t])
        entropies = [row.entropy(s) for s in range(first, t + 1)]
        mean = sum(entropies) / len(entropies)
        close = abs(mean - config.threshold) < self.gate_margin
        return ({i: -config.alpha for i in ids} if mean < config.threshold else {}), close

    # ----- budget -----

    def budget(self, config, row: Row, t: int) -> tuple[dict[int, float], int | None]:
        """(bias, forced id) at step t, replaying the word-forcing decisions of every earlier step."""
        end_id = self.markers.end_id
        eos = [i for i in self.eos_ids if i != end_id]
        word = self.oracle.raw.encode(config.word, add_special_tokens=False).ids if config.word else []
        progress = 0
        for s in range(t + 1):
            if s in row.restarts:
                progress = 0
            history = row.generated[:s]
            bias: dict[int, float] = {}
            forced = None
            started = False
            if self.reasoning_open(row, history):
                start = self.reasoning_start(row, history)
                length = row.prompt_think + s if row.prompt_open else s - start
                at_max = config.max is not None and length >= config.max
                if at_max:
                    forced = end_id
                elif word and progress > 0:
                    forced = word[progress]
                elif length < config.min:
                    top = row.top(s)
                    if word and (top == end_id or top in eos):
                        forced, started = word[0], True
                    else:
                        bias = {i: -math.inf for i in [end_id, *eos]}
            if s == t:
                return bias, forced
            # The next token confirms a forced word token; anything else ends the word.
            index = progress if (word and progress > 0 and forced == word[progress]) else (0 if started else None)
            token = row.generated[s]
            if index is not None and token == word[index] and index + 1 < len(word):
                progress = index + 1
            else:
                progress = 0
        raise AssertionError("unreachable")

    # ----- all together -----

    def expected(self, settings, row: Row, t: int) -> tuple[dict[int, float], int | None, bool]:
        """Every intervention of `settings` at step t: the summed bias per id (plan order), the forced
        id, and whether a gate was too close to call."""
        bias: dict[int, float] = {}
        uncertain = False
        forced = None

        def add(part: dict[int, float]) -> None:
            for i, value in part.items():
                bias[i] = bias.get(i, 0.0) + value

        for name in settings.names:
            config = getattr(settings, name)
            if name == "tip":
                add(self.tip(config, row, t))
            elif name == "nowait":
                add(self.nowait(config, row, t))
            elif name == "cyclic":
                add(self.cyclic(config, row, t))
            elif name == "gated":
                part, close = self.gated(config, row, t)
                uncertain |= close
                add(part)
            elif name == "budget":
                part, forced = self.budget(config, row, t)
                add(part)
        return bias, forced, uncertain

    @staticmethod
    def apply(raw: torch.Tensor, ids: list[int], bias: dict[int, float], forced: int | None) -> torch.Tensor:
        """The logits at `ids` after adding `bias` once (zero: untouched) and forcing; a row whose
        forced token arrives banned (-inf: a grammar or another stage ruled it out) is left as it arrived."""
        out = raw[ids].clone()
        if forced is not None and raw[forced] == -math.inf:
            return out
        for k, i in enumerate(ids):
            value = bias.get(i, 0.0)
            if value != 0:
                out[k] = out[k] + torch.tensor(value, dtype=out.dtype)
            if i == forced:
                out[k] = FORCED
        return out


_RAW: dict[str, object] = {}


def raw_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` of a transformers tokenizer, read again from its own file (once
    per file: the oracle is cached per tokenizer object)."""
    from tokenizers import Tokenizer

    path = Path(str(getattr(tokenizer, "name_or_path", ""))) / "tokenizer.json"
    if path.is_file():
        key = str(path.resolve())
        if key not in _RAW:
            _RAW[key] = Tokenizer.from_file(key)
        return _RAW[key]
    return Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())


def entropy(logits: torch.Tensor) -> float:
    probs = torch.softmax(logits.double(), dim=-1)
    return float(-(probs[probs > 0] * probs[probs > 0].log()).sum())
