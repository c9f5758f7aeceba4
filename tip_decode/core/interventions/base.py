"""What every intervention shares: the per-row layout, the step views, the rule protocol.

An intervention is one module of this package (see tip.py for the model) holding:

- a frozen configuration dataclass (per request; its vocabulary-defining settings form its
  *structure*, the rest are per-row numbers);
- its declaration, an `Intervention` (registry.py): name, flat keys and their parsers, paper
  default, display, effect, and the rule;
- a `Rule` (host side, built once per structure and tokenizer): which token ids it touches;
- a `RuleTables` (built once per rule, logits width and device): which columns of the per-row
  state it owns, how one generated token advances them (`advance`), and what it adds to the
  logits of the next step (`contribute`).

The rule modules import no torch: a rule's tables are made by the `TableBuilder` handed to
`Rule.compile`, and every step runs through `step.ops` (`ArrayOps`: torch operations on the device,
numpy ones on the host; arrays.py).

The per-row state is one int64 and one float32 array per row (`InterventionState`); `Layout`
allocates their columns: shared ones first (active flag, tokens generated, reasoning phase,
reasoning start, thinking tokens already in the prompt, the newest tokens, the position of pending
apply-time decisions), then each rule's own. Everything a step computes is a fixed number of array
operations over these columns: O(1) in the history length, no reads back to the host.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import (  # noqa: F401 (the flat-key parsers, re-exported for the rule modules)
    bad_value,
    parse_count,
    parse_number,
    parse_optional_count,
    parse_switch,
    parse_words,
)
from tip_decode.core.recognizer import ENDED, REASONING, WAITING
from tip_decode.core.vocabulary import ThinkMarkers, TokenizerView, view_of

if TYPE_CHECKING:
    import torch

    from tip_decode.core.interventions.arrays import ArrayOps, TableBuilder
    from tip_decode.core.pieces import TokenTexts

__all__ = [
    "ENDED",
    "FORCED_LOGIT",
    "NO_MARKER",
    "REASONING",
    "WAITING",
    "AdvanceStep",
    "ApplyStep",
    "Layout",
    "PhaseTrace",
    "Rule",
    "RuleTables",
    "TokenizerInfo",
]

NO_MARKER = -2  # never equal to a real token (nor to -1, a placeholder some engines send)
#: The logit a forced token gets: vLLM's own thinking budget writes the same value, so that a
#: forced token wins under any temperature, top-k or top-p (other logits stay finite).
FORCED_LOGIT = 1e9


def resolve_scope(scope: str, markers: ThinkMarkers, key: str) -> str:
    """ "auto" -> "think" when the plan has think markers, else "all"; "think" without markers is an error."""
    if scope == "auto":
        return "think" if markers.available else "all"
    if scope == "think" and not markers.available:
        raise ValueError(f"`{key}` is 'think', but the tokenizer has no single-token think markers; use 'all'")
    return scope


# ----- the tokenizer as the rules see it -----


@dataclass(eq=False)
class TokenizerInfo:
    """One tokenizer with the think markers and end-of-sequence ids a plan uses.

    `markers` may come from elsewhere than the tokenizer (vLLM's reasoning parser); every rule of a
    plan reads the same markers, so "reasoning" means one thing inside a request.
    """

    tokenizer: Any
    markers: ThinkMarkers
    eos_ids: tuple[int, ...] = ()
    view: TokenizerView = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.view = view_of(self.tokenizer)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, markers: ThinkMarkers | None = None) -> TokenizerInfo:
        view = view_of(tokenizer)
        eos = getattr(tokenizer, "eos_token_id", None)
        eos_ids = tuple(int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None)
        return cls(tokenizer, markers if markers is not None else ThinkMarkers.from_tokenizer(view), eos_ids)

    @property
    def size(self) -> int:
        return self.view.size

    def token_texts(self) -> list[str]:
        """The text of every id as keyword matching reads it.

        The one place the intervention family takes token texts from the vocabulary module: each
        token's text as it reads in the middle of a sequence, read from its piece (leading
        whitespace included; the bytes of a character cut between two tokens left out).
        """
        return self.view.token_texts().text

    def text_table(self) -> TokenTexts:
        """`token_texts` with where each text is cut inside a character (`TokenTexts`), for rules
        that read the text across token boundaries (the text automaton, suffix.py: a text matched
        across tokens must not run over a cut character)."""
        return self.view.token_texts()

    def excluded_ids(self) -> frozenset[int]:
        """Special tokens and the think markers: no keyword rule ever touches them."""
        ids = set(self.view.special_ids())
        ids.update(i for i in (self.markers.start_id, self.markers.end_id) if i is not None)
        return frozenset(ids)

    def encode(self, text: str) -> list[int]:
        """User text as ids, the way the tokenizer's tokenizer.json encodes it (the one path for every
        text a rule matches or forces: `TokenizerView.encode`, repaired where transformers mis-loads
        a tokenizer)."""
        return self.view.encode(text)

    def ordinary_ids(self, text: str, key: str) -> tuple[int, ...]:
        """The ids of `text` that a rule forces, which have to be ordinary tokens (no special token,
        no think marker); a ValueError names `key` otherwise."""
        ids = self.encode(text)
        if not ids:
            raise bad_value(key, text, "has to encode to at least one token, and encodes to none with this tokenizer")
        excluded = self.excluded_ids()
        special = [i for i in ids if i in excluded]
        if special:
            raise bad_value(key, text, f"has to encode to ordinary tokens, but encodes to special tokens or think markers {special}")
        return tuple(int(i) for i in ids)


# ----- the per-row layout -----


class Layout:
    """Column allocation of the per-row int and float tensors.

    Shared int columns: `ACTIVE` (1 for a live row), `POSITION` (tokens generated), `PHASE`
    (WAITING / REASONING / ENDED, from the plan's think markers), `REASONING_START` (position where
    reasoning began, -1 before), `PROMPT_THINK` (thinking tokens already in the prompt) and, when a
    rule decides something in `apply` that the next token confirms, `PENDING_AT` (the position that
    decision was made for).
    """

    def __init__(self, pending: bool) -> None:
        self.int_names: list[str] = []
        self.float_names: list[str] = []
        self.int_defaults: dict[int, int] = {}
        self.float_defaults: dict[int, float] = {}
        self.ACTIVE = self.add_int("active")
        # POSITION, PHASE, REASONING_START stay adjacent: `PlanTables.advance` writes them at once.
        self.POSITION = self.add_int("position")
        self.PHASE = self.add_int("phase", default=ENDED)
        self.REASONING_START = self.add_int("reasoning_start", default=-1)
        self.PROMPT_THINK = self.add_int("prompt_think")
        self.PENDING_AT = self.add_int("pending_at", default=-1) if pending else None

    def add_int(self, name: str, width: int = 1, default: int = 0) -> int:
        start = len(self.int_names)
        self.int_names += [name] * width if width != 1 else [name]
        for c in range(start, start + width):
            self.int_defaults[c] = default
        return start

    def add_float(self, name: str, width: int = 1, default: float = 0.0) -> int:
        start = len(self.float_names)
        self.float_names += [name] * width if width != 1 else [name]
        for c in range(start, start + width):
            self.float_defaults[c] = default
        return start

    @property
    def ints(self) -> int:
        return len(self.int_names)

    @property
    def floats(self) -> int:
        return len(self.float_names)


# ----- the two step views -----


@dataclass(slots=True)
class AdvanceStep:
    """One generated token per row: the state before it (read) and the state after it (written).

    `reasoning` is the phase before the token; `opens` / `closes` tell whether this token is the
    think start marker that opens reasoning or the end marker that closes it. `pending` is true
    where an apply-time decision was made for exactly this token's position. The arrays are torch
    tensors or numpy arrays (the host engine); `ops` works on either (see arrays.py).
    """

    layout: Layout
    ops: ArrayOps
    ints: torch.Tensor
    floats: torch.Tensor | None
    out_ints: torch.Tensor
    out_floats: torch.Tensor | None
    tokens: torch.Tensor
    position: torch.Tensor
    reasoning: torch.Tensor | None  # None when the plan does not track the phase (no "think" rule)
    opens: torch.Tensor | None
    closes: torch.Tensor | None
    pending: torch.Tensor | None


@dataclass(slots=True)
class ApplyStep:
    """The state of each row (after its newest token) and the logits the next token is chosen from.

    Rules add float32 values to `bias` (one column per plan column, summed, then added to the
    logits once; a rule writes -0.0, never +0.0, where it adds nothing), set `forced` (an index into
    the plan's columns; the forced token's logit becomes `FORCED_LOGIT`), and record apply-time
    decisions with `write_int` / `write_float`. The state arrays are torch tensors or numpy arrays
    (the host engine, never for a plan with a rule that reads the logits); `ops` works on either.

    Decisions are kept per column (`int_writes` / `float_writes`) and written into the state by
    `store`, after every rule has read `ints` / `floats` as they were: a rule with a wide block of
    columns (DeepConf's window of confidences) then costs no copy of whole rows per step.
    """

    layout: Layout
    ops: ArrayOps
    ints: torch.Tensor
    floats: torch.Tensor
    columns: int  # the plan's column count
    full: Callable[[], torch.Tensor]  # the whole logits rows, gathered on first use
    bias: torch.Tensor | None = None
    forced: torch.Tensor | None = None
    int_writes: dict[int, torch.Tensor] | None = None
    float_writes: dict[int, torch.Tensor] | None = None
    _full: torch.Tensor | None = None

    @property
    def active(self) -> torch.Tensor:
        return self.ints[:, self.layout.ACTIVE] == 1

    @property
    def position(self) -> torch.Tensor:
        return self.ints[:, self.layout.POSITION]

    @property
    def reasoning(self) -> torch.Tensor:
        return self.ints[:, self.layout.PHASE] == REASONING

    def logits(self) -> torch.Tensor:
        if self._full is None:
            self._full = self.full()
        return self._full

    def add_bias(self, index: torch.Tensor | None, values: torch.Tensor) -> None:
        """Add `values` (rows, k) at plan columns `index` (k,); `index` None means all columns in order."""
        if index is None:
            self.bias = values if self.bias is None else self.bias + values
            return
        if self.bias is None:
            self.bias = self.ops.full((self.ints.shape[0], self.columns), -0.0, self.ints)  # "nothing added", see PlanTables.combine
        self.bias = self.ops.add_columns(self.bias, self.ops.table(index), values)

    def force(self, columns: torch.Tensor) -> None:
        """Force, per row, plan column `columns[row]` (-1: nothing); an earlier force is kept."""
        self.forced = columns if self.forced is None else self.ops.where(self.forced >= 0, self.forced, columns)

    def write_int(self, column: int, values: torch.Tensor) -> None:
        """Set int column `column` of every row to `values` once the step is done (`store`)."""
        if self.int_writes is None:
            self.int_writes = {}
        self.int_writes[column] = values

    def write_float(self, column: int, values: torch.Tensor) -> None:
        """Set float column `column` of every row to `values` once the step is done (`store`)."""
        if self.float_writes is None:
            self.float_writes = {}
        self.float_writes[column] = values

    @property
    def writes(self) -> bool:
        """Some rule recorded a decision (`store` has something to write)."""
        return bool(self.int_writes) or bool(self.float_writes)

    def store(self, ints: Any, floats: Any, rows: Any = None) -> None:
        """Write the recorded decisions into the state arrays `ints` / `floats` (the state's rows
        `rows`: a slice or an index array, default every row), one column at a time."""
        every = slice(None) if rows is None else rows
        for column, values in (self.int_writes or {}).items():
            ints[every, column] = values
        for column, values in (self.float_writes or {}).items():
            floats[every, column] = values


# ----- the rule protocol -----


class RuleTables(ABC):
    """Device tables and step functions of one rule inside one plan (fixed width, device, layout)."""

    #: token ids this rule may write, in the order of `values` passed to `ApplyStep.add_bias`.
    token_ids: tuple[int, ...] = ()
    #: where those ids sit among the plan's columns (set by the plan).
    index: torch.Tensor | None = None
    #: the same, as host ints (set by the plan): a rule that forces one of its ids names its column.
    plan_columns: tuple[int, ...] = ()
    #: True when the rule's ids are exactly the plan's columns in order (add_bias needs no scatter).
    identity: bool = False
    #: True when `contribute` reads the whole logits rows (`ApplyStep.logits()`), not only the plan's
    #: columns: an adapter that runs the step on static buffers (a CUDA graph) must copy them in.
    reads_logits: bool = False

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        """Per-row values of this rule's setting columns for one request's configuration."""
        return {}, {}

    @abstractmethod
    def advance(self, step: AdvanceStep) -> None:
        """Write this rule's columns of `step.out_ints` / `step.out_floats` after one token per row."""

    @abstractmethod
    def contribute(self, step: ApplyStep) -> None:
        """Add this rule's bias (and forcing) for the next token."""

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:  # noqa: B027 (optional)
        """Set this rule's columns of one row (host lists) to the state after `generated`."""

    def bias_into(self, step: ApplyStep, values: torch.Tensor) -> None:
        step.add_bias(None if self.identity else self.index, values)


class Rule(ABC):
    """Host side of one intervention for one structure and tokenizer: which ids it touches."""

    name: str = ""
    needs_pending: bool = False  # decides something in apply that the next token confirms
    scope: str = "all"

    @abstractmethod
    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> RuleTables:
        """Allocate this rule's columns in `layout` and build its tables (with `tables`, on its device)."""


@dataclass
class PhaseTrace:
    """The shared columns of one row replayed on the host (preemption, resumption)."""

    markers: ThinkMarkers
    prompt_open: bool
    position: int = 0
    phase: int = WAITING
    reasoning_start: int = -1

    @classmethod
    def run(cls, markers: ThinkMarkers, prompt_open: bool, generated: Sequence[int]) -> PhaseTrace:
        trace = cls(markers, prompt_open)
        if prompt_open or not markers.available:
            trace.phase, trace.reasoning_start = REASONING, 0
        for token in generated:
            if trace.phase == WAITING and token == markers.start_id:
                trace.phase, trace.reasoning_start = REASONING, trace.position + 1
            elif trace.phase == REASONING and markers.available and token == markers.end_id:
                trace.phase = ENDED
            trace.position += 1
        return trace
