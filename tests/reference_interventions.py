"""A slow, literal reading of docs/interventions.md, for tests only.

Everything is recomputed from the whole history at every step, one row at a time, in plain Python
straight from the words of the docs (TIP itself comes from tests/reference.py). The library's
batched tensor state is checked against this on every shared tokenizer and through vLLM.

Everything about the vocabulary comes from the independent oracle (tests/vocab_oracle.py, built
from the tokenizer's own tokenizer.json), never from the library: TIP's and gated TIP's switch
vocabulary (hits, multi-token patterns, word ends), the token texts NoWait matches, the special ids
and think markers no rule touches, the entries CyclicReflex biases, the ids of a budget's forced
word (encoded by tokenizer.json itself), the tokens self-affirmation suppression judges, AlphaOne's
delimiters and banned tokens, and the texts thinking intervention searches and forces, so that these
tests do not check the library against itself.

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
    confidences: dict[tuple[int, int], float] = field(default_factory=dict)

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
        self.gate_margin = gate_margin  # a gate (or a margin, a mean) this close to its threshold is not called
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

    # ----- thinkbrake -----

    def reasoning_text(self, history: list[int]) -> str:
        """The text of `history` as the boundary test reads it: each token's mid-sequence text from
        the oracle; a special token, a think marker or a character cut between tokens stands as
        U+FFFD (a character no boundary holds)."""
        parts = []
        for token in history:
            text, starts_inside, ends_inside = self.oracle.texts[token] if 0 <= token < self.oracle.size else ("", True, True)
            if token in self.excluded or not 0 <= token < self.oracle.size:
                parts.append("\ufffd")
                continue
            parts.append(("\ufffd" if starts_inside else "") + text + ("\ufffd" if ends_inside else ""))
        return "".join(parts)

    def thinkbrake(self, config, row: Row, t: int, bias: dict[int, float]) -> tuple[bool, bool]:
        """(brake, too close to call): at the step right after the reasoning text ends with a
        boundary, m = (max z - z_end) / T from the raw logits, brake iff m <= tau; never where
        `</think>` arrived banned or an earlier intervention of the request bans it."""
        history = row.generated[:t]
        end = self.markers.end_id
        if not self.reasoning_open(row, history):
            return False, False
        start = self.reasoning_start(row, history)
        text = self.reasoning_text(history[start:])
        if not any(text.endswith(b) for b in config.boundary):
            return False, False
        raw = row.logits[t].double()
        if bias.get(end, 0.0) == -math.inf or raw[end] == -math.inf:
            return False, False
        m = float((raw.max() - raw[end]) / config.temperature)
        return m <= config.tau, abs(m - config.tau) < self.gate_margin

    # ----- deepconf -----

    def confidence(self, row: Row, step: int, topk: int) -> float:
        """C = -(1/k) * sum of the k largest log-probabilities of the raw logits of `step` (cached)."""
        if (step, topk) not in row.confidences:
            logp = torch.log_softmax(row.logits[step].double(), dim=-1)
            row.confidences[step, topk] = float(-logp.topk(topk).values.sum() / topk)
        return row.confidences[step, topk]

    def deepconf(self, config, row: Row, t: int, bias: dict[int, float]) -> tuple[bool, bool]:
        """(stop, too close to call): the mean of C over the last `window` steps (step t included,
        none before the latest restart) below the threshold, once the window is full; never where the
        end-of-sequence id arrived banned or an earlier intervention of the request bans it."""
        eos = self.eos_ids[0]
        first = max([0] + [r for r in row.restarts if r <= t])
        if t + 1 - first < config.window:
            return False, False
        if bias.get(eos, 0.0) == -math.inf or row.logits[t][eos] == -math.inf:
            return False, False
        mean = sum(self.confidence(row, s, config.topk) for s in range(t + 1 - config.window, t + 1)) / config.window
        # float32 sums of up to thousands of confidences: not called closer than 1e-3.
        return mean < config.threshold, abs(mean - config.threshold) < max(self.gate_margin, 1e-3)

    # ----- affirm -----

    @lru_cache(maxsize=8)  # noqa: B019 (one reference object per test session; its cache lives as long anyway)
    def affirm_ids(self, words: tuple[str, ...]) -> frozenset[int]:
        """Tokens whose text, leading whitespace removed, is exactly one of the words."""
        return frozenset(i for i, (text, _, _) in enumerate(self.oracle.texts) if i not in self.excluded and text.lstrip() in words)

    def affirm(self, config, row: Row, t: int) -> tuple[dict[int, float], bool]:
        """-inf for each word token whose own probability (softmax of the raw logits, T=1) is below
        tau; also whether one of them is too close to tau to call."""
        if not self.acts(self.resolve(config.scope), row, row.generated[:t]):
            return {}, False
        probs = torch.softmax(row.logits[t].double(), dim=-1)
        bias, close = {}, False
        for i in self.affirm_ids(config.words):
            if i >= probs.shape[0]:
                continue
            p = float(probs[i])
            if p > 0 and abs(math.log(p) - math.log(config.tau)) < self.gate_margin:
                close = True
            if p < config.tau:
                bias[i] = -math.inf
        return bias, close

    # ----- alphaone -----

    DELIMITERS = ("\n\n", ",\n\n", ".\n\n", "]\n\n", ")\n\n", "],\n\n", "].\n\n", "].\n\n", ").\n\n", ".)\n\n")

    @staticmethod
    def splitmix(z: int) -> int:
        """SplitMix64's finaliser on a 64-bit pattern (Python ints, masked)."""
        mask = 2**64 - 1
        z &= mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def alphaone_draws(self, seed: int, history: list[int]) -> list[int]:
        """The 24-bit draw of every step 0..len(history): H_0 = mix(seed), H_{s+1} = mix(H_s xor g_s),
        r_s = top 24 bits of mix(H_s xor 0x9E3779B97F4A7C15)."""
        h = self.splitmix(seed)
        out = []
        for s in range(len(history) + 1):
            out.append(self.splitmix(h ^ 0x9E3779B97F4A7C15) >> 40)
            if s < len(history):
                h = self.splitmix(h ^ (history[s] & (2**64 - 1)))
        return out

    @lru_cache(maxsize=8)  # noqa: B019
    def alphaone_ids(self, word: str) -> tuple[tuple[int, ...], frozenset[int], frozenset[int]]:
        """(the word's ids, tokens whose text holds the word, delimiter tokens by exact text)."""
        ids = tuple(self.oracle.raw.encode(word, add_special_tokens=False).ids)
        stem = word.strip()
        banned = frozenset(i for i, (text, _, _) in enumerate(self.oracle.texts) if i not in self.excluded and stem in text)
        delimiters = frozenset(i for i, (text, _, _) in enumerate(self.oracle.texts) if i not in self.excluded and text in self.DELIMITERS)
        return ids, banned, delimiters

    @staticmethod
    def alpha_moment(config) -> int:
        """The code: threshold = int(max_tokens - alpha * N), phase 1 runs max_tokens - threshold tokens."""
        if config.moment is not None:
            return config.moment
        threshold = int(8192 - config.alpha * config.think_tokens)
        return 8192 - threshold

    def alphaone(self, config, row: Row, t: int) -> tuple[dict[int, float], int | None]:
        """(bias, forced id) at step t, replaying the decisions of every earlier step."""
        from fractions import Fraction

        ids, banned, delimiters = self.alphaone_ids(config.word)
        moment = self.alpha_moment(config)
        draws = self.alphaone_draws(config.seed, row.generated[:t])
        progress = -1  # index of the word token forced next, -1: none
        for s in range(t + 1):
            history = row.generated[:s]
            thinking = self.reasoning_open(row, history)
            forced_index = None
            if thinking and progress >= 0:
                forced_index = progress
            elif thinking and 2 <= s < moment and history[-1] in delimiters and Fraction(draws[s], 2**24) < Fraction(moment - s, moment):
                forced_index = 0
            fast = thinking and s >= moment and forced_index is None
            if s == t:
                if forced_index is not None:
                    return {}, ids[forced_index]
                if not fast:
                    return {}, None
                end = self.markers.end_id
                logits = row.logits[t].double()
                pool = [i for i in banned if i < logits.shape[0]] + [end]
                values = logits[pool]
                if config.temperature > 0:
                    target = float(config.temperature * torch.logsumexp(values / config.temperature, dim=0))
                else:
                    target = float(values.max())
                bias = {i: -math.inf for i in banned}
                if math.isfinite(target) and math.isfinite(float(logits[end])) and target != float(logits[end]):
                    bias[end] = target - float(logits[end])
                return bias, None
            token = row.generated[s]
            progress = forced_index + 1 if forced_index is not None and token == ids[forced_index] and forced_index + 1 < len(ids) else -1
        raise AssertionError("unreachable")

    # ----- inject and nothinking -----

    def reasoning_text_anchor(self, row: Row, trigger: str) -> int | None:
        """The step right after the token in which the generated reasoning text first holds
        `trigger` (token texts from the oracle; a split character, a special token or a think marker
        reads as U+FFFD), or None."""
        text = ""
        for s, token in enumerate(row.generated):
            history = row.generated[:s]
            if not self.reasoning_open(row, history) or (self.markers.available and token == self.markers.end_id):
                continue
            if 0 <= token < self.oracle.size and token not in self.excluded:
                piece, cut_start, cut_end = self.oracle.texts[token]
                piece = ("\ufffd" if cut_start else "") + piece + ("\ufffd" if cut_end else "")
            else:
                piece = "\ufffd"
            before = len(text)
            text += piece
            found = text.find(trigger)
            if found >= 0 and found + len(trigger) > before:
                return s + 1
        return None

    def forced_text(self, ids: list[int], anchor: int | None, row: Row, t: int) -> int | None:
        """The id forced at step t for a text forced from step `anchor` on, one token per step while
        reasoning is open and every earlier token of it was generated."""
        if anchor is None or t < anchor or t - anchor >= len(ids):
            return None
        j = t - anchor
        if row.generated[anchor:t] != ids[:j] or not self.reasoning_open(row, row.generated[:t]):
            return None
        return ids[j]

    def first_reasoning_step(self, row: Row, t: int) -> int | None:
        for s in range(t + 1):
            if self.reasoning_open(row, row.generated[:s]):
                return s
        return None

    def inject(self, config, row: Row, t: int) -> int | None:
        ids = self.oracle.raw.encode(config.text, add_special_tokens=False).ids
        anchor = self.first_reasoning_step(row, t) if config.after is None else self.reasoning_text_anchor(row, config.after)
        return self.forced_text(ids, anchor, row, t)

    def nothinking(self, config, row: Row, t: int) -> int | None:
        ids = self.oracle.raw.encode(config.text, add_special_tokens=False).ids if config.text else []
        return self.forced_text([*ids, self.markers.end_id], self.first_reasoning_step(row, t), row, t)

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

        def force(token: int | None) -> None:
            nonlocal forced
            if forced is None:  # in plan order, an earlier force is kept
                forced = token

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
                part, token = self.budget(config, row, t)
                add(part)
                force(token)
            elif name in ("deepconf", "thinkbrake"):
                if forced is None:  # an earlier intervention's forcing stands; these force only over what is not banned
                    acts, close = (self.deepconf if name == "deepconf" else self.thinkbrake)(config, row, t, bias)
                    uncertain |= close
                    if acts:
                        forced = self.eos_ids[0] if name == "deepconf" else self.markers.end_id
            elif name == "affirm":
                part, close = self.affirm(config, row, t)
                uncertain |= close
                add(part)
            elif name == "alphaone":
                part, token = self.alphaone(config, row, t)
                add(part)
                force(token)
            elif name == "inject":
                force(self.inject(config, row, t))
            elif name == "nothinking":
                force(self.nothinking(config, row, t))
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
