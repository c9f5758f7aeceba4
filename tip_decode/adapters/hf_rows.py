"""Which row continues which in the Hugging Face processor: beam tracking and rollback history.

`generate` hands a processor only `(input_ids, scores)`, and beam search reorders rows without saying
so. `_RowTracker` finds each row's previous row among the rows that shared its prompt (a pairwise
divergence table, O(rows x group size**2) a step, no host sync); `_TokenHistory` keeps the tokens a
batch of one has seen, to recognise an assisted-decoding rollback. Used by
`tip_decode.adapters.hf.ReasoningInterventionsProcessor`.
"""

from __future__ import annotations

import torch

_UNSEEN = torch.iinfo(torch.long).max  # "these two rows have not diverged"


class _TokenHistory:
    """The tokens a batch of one has seen so far (prompt and generated), to recognise a rollback.

    Each step writes its newest token at its position (O(1), on the device, no sync); the buffer
    doubles when full. Only a rollback reads it back, to compare with the new input.
    """

    def __init__(self, ids: torch.Tensor) -> None:
        length = ids.shape[1]
        self.tokens = torch.empty((1, max(64, 2 * length)), dtype=torch.long, device=ids.device)
        self.tokens[:, :length] = ids

    def write(self, token: torch.Tensor, position: int) -> None:
        if position >= self.tokens.shape[1]:
            self.tokens = torch.cat((self.tokens, torch.empty_like(self.tokens)), dim=1)
        self.tokens[:, position : position + 1].copy_(token)

    def starts(self, input_ids: torch.Tensor, length: int) -> bool:
        """The first `length` tokens of `input_ids` are the first `length` seen (one host sync)."""
        return bool(torch.equal(input_ids[:, :length].to(self.tokens.device), self.tokens[:, :length]))


class _RowTracker:
    """Which previous row each row continues, for rows that share a prompt (beam search).

    `generate` reorders rows only among the rows of one batch item: beam search moves beams
    within an item, and every other strategy never moves rows. Rows whose first-call inputs are
    identical form a group; a row's parent is searched in its group only, and rows with a prompt
    of their own keep their place at no cost.

    Within a group, for every pair of rows we keep the first position where their sequences
    differ and the token each had there. A previous row a is row b's parent exactly when, at the
    divergence position of a with every other row of the group, row b holds a's token: that
    decides equality of whole sequences by looking at one position per pair, so the cost does
    not grow with the generated length. Groups are padded to one size by repeating their first
    row (a repeated row is identical to itself, so it never changes an answer).
    """

    def __init__(self, groups: list[list[int]], rows: int, length: int, device: torch.device) -> None:
        size = max(len(g) for g in groups)
        padded = [g + [g[0]] * (size - len(g)) for g in groups]
        count = len(groups)
        self.slots = torch.tensor(padded, dtype=torch.long, device=device)  # (groups, size) -> row
        self._row_index = self.slots[:, :, None]
        self._group_index = torch.arange(count, device=device)[:, None, None]
        self._slot_ids = torch.arange(size, device=device)
        # Identical at the first call: no pair has diverged yet.
        self.divergence = torch.full((count, size, size), _UNSEEN, dtype=torch.long, device=device)
        self.divergent_token = torch.zeros((count, size, size), dtype=torch.long, device=device)
        self.gather_at = torch.zeros((count, 1, size * size), dtype=torch.long, device=device)
        self.seen = torch.zeros((count, size, size * size), dtype=torch.long, device=device)
        self.next_position = torch.tensor(length, dtype=torch.long, device=device)
        self.parent_rows = torch.arange(rows, device=device)

    @classmethod
    def for_prompts(cls, ids: torch.Tensor) -> _RowTracker | None:
        """A tracker for the groups of identical rows of a first call; None when all rows differ."""
        groups = [g for g in _identical_row_groups(ids) if len(g) > 1]
        if not groups:
            return None
        return cls(groups, ids.shape[0], ids.shape[1], ids.device)

    def _buffers(self) -> tuple[torch.Tensor, ...]:
        return (self.divergence, self.divergent_token, self.gather_at, self.next_position, self.parent_rows)

    def snapshot(self) -> tuple[torch.Tensor, ...]:
        return tuple(b.clone() for b in self._buffers())

    def restore(self, saved: tuple[torch.Tensor, ...]) -> None:
        for buffer, value in zip(self._buffers(), saved, strict=True):
            buffer.copy_(value)

    def matches(self, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
        same = torch.ones((), dtype=torch.bool, device=self.slots.device)
        for buffer, value in zip(self._buffers(), saved, strict=True):
            same = same & buffer.eq(value).all()
        return same

    def gather(self, ids: torch.Tensor) -> None:
        """Read, for every row of a group, its tokens at the group's divergence positions (outside
        the graph: `ids` is a new tensor every call)."""
        self.seen.copy_(ids[self._row_index, self.gather_at])

    def parents(self, tokens: torch.Tensor) -> torch.Tensor:
        """parents[b] = a previous row whose whole sequence equals row b without its newest token."""
        count, size = self.slots.shape
        diverged = self.divergence != _UNSEEN
        seen = self.seen.view(count, size, size, size)  # [group, new row, previous row a, other row]
        match = ((seen == self.divergent_token[:, None]) | ~diverged[:, None]).all(dim=3)
        # Prefer the row itself (sampling never reorders); else the first match (beam search).
        own = match.diagonal(dim1=1, dim2=2)
        parent_slot = torch.where(own, self._slot_ids, match.int().argmax(dim=2))
        pick = (self._group_index, parent_slot[:, :, None], parent_slot[:, None, :])
        inherited = self.divergence[pick]
        inherited_token = self.divergent_token[pick]
        same_so_far = inherited == _UNSEEN
        slot_tokens = tokens[self.slots]
        differ_now = slot_tokens[:, :, None] != slot_tokens[:, None, :]
        self.divergence.copy_(torch.where(same_so_far & differ_now, self.next_position, inherited))
        self.divergent_token.copy_(torch.where(same_so_far, slot_tokens[:, :, None].expand_as(inherited), inherited_token))
        self.gather_at.copy_(torch.where(self.divergence != _UNSEEN, self.divergence, 0).view(count, 1, size * size))
        self.next_position += 1
        # A padded slot repeats a row and computes the same parent for it, so duplicate writes agree.
        self.parent_rows[self.slots.flatten()] = self.slots.gather(1, parent_slot).flatten()
        return self.parent_rows


def _identical_row_groups(ids: torch.Tensor) -> list[list[int]]:
    """Rows of `ids` grouped by equal content, in order of first appearance.

    Rows are first grouped by three integer checksums (exact integer arithmetic: equal rows always
    agree), then the rows of every group of two or more are compared with the group's first row;
    only if two different rows collided on all three sums does it sort whole rows instead. Reads
    the group labels back to the host (one sync), plus one more when some rows share a group.
    """
    rows, length = ids.shape
    if length == 0:
        return [list(range(rows))]
    positions = torch.arange(1, length + 1, device=ids.device)
    mixed = (positions * 2_654_435_761) % 2_147_483_647
    features = torch.stack((ids.sum(dim=1), _row_dot(ids, positions), _row_dot(ids, mixed)), dim=1)
    labels = torch.unique(features, dim=0, return_inverse=True)[1].tolist()
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(label, []).append(row)
    shared = [g for g in groups.values() if len(g) > 1]
    if shared:
        members = torch.tensor([r for g in shared for r in g], device=ids.device)
        firsts = torch.tensor([g[0] for g in shared for _ in g], device=ids.device)
        if not bool((ids[members] == ids[firsts]).all()):  # a collision of the sums: sort whole rows
            labels = torch.unique(ids, dim=0, return_inverse=True)[1].tolist()
            groups = {}
            for row, label in enumerate(labels):
                groups.setdefault(label, []).append(row)
    return list(groups.values())


def _row_dot(ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ids @ weights in int64 (wrapping on overflow, the same for equal rows); `mv` on the CPU
    avoids a (rows, length) temporary, CUDA has no integer `mv`."""
    if ids.device.type == "cpu":
        return torch.mv(ids.long(), weights)
    return (ids.long() * weights).sum(dim=1)
