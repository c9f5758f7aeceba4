"""Per-row random draws with no generator and no host sync: a hash of (seed, generated tokens).

A rule that draws random numbers (AlphaOne's Bernoulli "Wait") cannot use a `torch.Generator` in
the step: a generator's state lives on the host, is shared by every row, and its draws depend on how
many rows a batch holds. Instead each row keeps one int64 column, `H`: the SplitMix64 finaliser
(`mix`) chained over the row's seed and every token it generated,

    H_0     = mix(seed)
    H_{t+1} = mix(H_t xor g_t)          (g_t: the t-th generated token)

and the draw at step t is the top `DRAW_BITS` bits of `mix(H_t xor DRAW_KEY)`. The draw is a pure
function of the seed and the token history: the same in both array engines and on every device,
whatever the batch and its order, the same again when a request resumed after preemption is
replayed from its tokens, and different for rows whose histories differ (two samples of one prompt
with one seed draw alike only while they have generated the same tokens). Everything is int64
arithmetic (multiplication wraps modulo 2**64 in torch and numpy alike; right shifts are made
logical by a mask), a fixed number of operations per step.

Torch-free: the functions work on torch tensors and numpy arrays through their operators, and
`host_*` on Python ints (replay).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DRAW_BITS", "draw", "follow", "host_draw", "host_follow", "host_start", "mix"]

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


# SplitMix64's finaliser constants (Steele, Lea and Flood, "Fast splittable pseudorandom number
# generators", 2014), as int64 values.
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
#: Mixed into H before a draw, so that the draw is not the next chained state.
DRAW_KEY = _signed(0x9E3779B97F4A7C15)
#: Bits of one draw: u = r / 2**DRAW_BITS with r in [0, 2**DRAW_BITS).
DRAW_BITS = 24


def _shift(z: Any, bits: int) -> Any:
    """Logical right shift of int64 values (`>>` is arithmetic on signed integers)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: Any) -> Any:
    """SplitMix64's finaliser on int64 arrays (torch or numpy), wrapping modulo 2**64."""
    z = (z ^ _shift(z, 30)) * _MUL1
    z = (z ^ _shift(z, 27)) * _MUL2
    return z ^ _shift(z, 31)


def follow(h: Any, tokens: Any) -> Any:
    """H after one more generated token per row."""
    return mix(h ^ tokens)


def draw(h: Any) -> Any:
    """Each row's draw at the step whose state is `h`: an int64 in [0, 2**DRAW_BITS)."""
    return _shift(mix(h ^ DRAW_KEY), 64 - DRAW_BITS)


# ----- the same on Python ints (host replay, settings) -----


def _host_mix(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return _signed(z ^ (z >> 31))


def host_start(seed: int) -> int:
    """H_0 of a row with `seed`."""
    return _host_mix(seed)


def host_follow(h: int, token: int) -> int:
    return _host_mix((h ^ token) & _MASK64)


def host_draw(h: int) -> int:
    return ((_host_mix(h ^ DRAW_KEY) & _MASK64) >> (64 - DRAW_BITS)) & ((1 << DRAW_BITS) - 1)
