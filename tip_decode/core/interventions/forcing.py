"""Forcing a text one token per step: the part every rule that writes user text shares.

A rule that forces a text (budget's s1 word, AlphaOne's "Wait", thinking intervention's inserted
text, NoThinking's closing sentence) decides at some step to force the text's first token; the
following tokens are forced on the following steps, one per step, as long as each step's token is
the one that was forced. A step whose token differs (another rule forced its own token first, or
the forced token could not be written) ends the text there: it is not resumed.

`ForcedText` owns one int column per row, NEXT: the index of the text token forced at the next step
while the text is under way, -1 otherwise. The rule says, for the step being advanced, which index
it forced (`forced`: NEXT where the text was under way, 0 where the rule started it, -1 for none)
and gets the new NEXT; at apply time it turns an index into the plan column to force. The text's
ids come from `TokenizerInfo.ordinary_ids` (user text, encoded the one way the core encodes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tip_decode.core.interventions.arrays import ArrayOps, TableBuilder
    from tip_decode.core.interventions.base import Layout

__all__ = ["ForcedText", "host_next"]


class ForcedText:
    """One rule's forced text inside one plan (its NEXT column and the text's tables).

    Args:
        layout: where NEXT is allocated (named `{name}.next`).
        tables: the plan's table builder.
        name: the rule's name (column names).
        ids: the text's token ids, in order.
        positions: where each of `ids` sits in the rule's `token_ids` (the columns it writes).
    """

    def __init__(self, layout: Layout, tables: TableBuilder, name: str, ids: Sequence[int], positions: Sequence[int]) -> None:
        if not ids or len(ids) != len(positions):
            raise ValueError(f"`{name}`: a forced text needs at least one token and a column for each")
        self.length = len(ids)
        self.ids = tuple(int(i) for i in ids)
        self.id_table = tables.ints(self.ids)
        self.positions = tables.ints(list(positions))
        self.NEXT = layout.add_int(f"{name}.next", default=-1)

    def under_way(self, ints: Any) -> Any:
        """Rows whose text is under way (NEXT >= 0)."""
        return ints[:, self.NEXT] >= 0

    def following(self, ops: ArrayOps, forced: Any, tokens: Any) -> Any:
        """NEXT after a step that forced text index `forced` (-1: none) and produced `tokens`."""
        index = ops.clip(forced, 0, self.length - 1)
        confirmed = (forced >= 0) & (tokens == ops.table(self.id_table)[index])
        return ops.where(confirmed & (forced + 1 < self.length), forced + 1, -1)

    def position(self, ops: ArrayOps, forced: Any) -> Any:
        """The index into the rule's `token_ids` of text token `forced` (-1 where `forced` is -1)."""
        return ops.where(forced >= 0, ops.table(self.positions)[ops.clip(forced, 0, self.length - 1)], -1)


def host_next(ids: Sequence[int], forced: int, token: int) -> int:
    """`ForcedText.following` for one row on the host (replay)."""
    if forced >= 0 and token == ids[forced] and forced + 1 < len(ids):
        return forced + 1
    return -1


def force_positions(step: Any, rule_index: torch.Tensor, positions: Any, count: int) -> None:
    """Force, per row, the rule's token at `positions` (an index into its `token_ids`, -1: none)."""
    ops = step.ops
    step.force(ops.where(positions >= 0, ops.table(rule_index)[ops.clip(positions, 0, count - 1)], -1))
