"""Random-access permutations of ``[0, n)`` that need no permutation array.

A global shuffle of 10^9 samples as an index array costs 8 GB and minutes to build; a Feistel network computes
"which sample sits at position i" from i alone, in O(1) memory, and is a bijection by construction. The network
permutes a power-of-two domain ``[0, 2^b)`` that covers ``n``; results that land outside ``[0, n)`` are encrypted
again ("cycle walking", Black & Rogaway 2002), which keeps the bijection and costs fewer than two passes on
average because the domain is smaller than ``2 n``.

Round keys are derived from a 64-bit key with the splitmix64 finaliser, so every (seed, epoch) pair gives an
unrelated order. The round function is multiply-shift hashing (the top bits of ``(part + a_r) * m_r`` mod 2^64,
``m_r`` odd), whose top bits depend on every input bit: four numpy operations per round, which matters because a
batch of 8 indices costs numpy's per-call overhead, not arithmetic. Eight rounds shuffle well (the tests check
that orders look random); this is not meant to be cryptographic.
"""

from __future__ import annotations

import hashlib

import numpy as np

MASK64 = (1 << 64) - 1
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15
MAX_N = 1 << 62
DEFAULT_ROUNDS = 8


def mix64(x: int) -> int:
    """splitmix64's finaliser on a Python int: a bijection of 64-bit words with full avalanche."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _C1) & MASK64
    x = ((x ^ (x >> 27)) * _C2) & MASK64
    return x ^ (x >> 31)


def derive_key(*parts: int | str) -> int:
    """A 64-bit key from a tuple of integers and strings, stable across runs, platforms and Python versions.

    Used for every seeded stream in the sampler (epoch orders, mixture blocks, packing tie-breaks) so one seed
    spawns independent streams by naming them, e.g. ``derive_key(seed, "epoch", 3)``.
    """
    h = 0x243F6A8885A308D3
    for part in parts:
        if isinstance(part, str):
            value = int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool):
            value = int(part) & MASK64
        else:
            raise TypeError(f"derive_key takes ints and strings, not {type(part).__name__}")
        h = mix64(h ^ mix64(value + _GOLDEN))
    return h


def _as_index_array(idx, n: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu":
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise IndexError(f"index {bad} out of range for a permutation of {n} elements")
    return arr


class FeistelPermutation:
    """A keyed bijection of ``[0, n)`` evaluated per index: ``perm(idx)`` and ``perm.inverse(idx)``.

    The network works on ``bits = bit_length(n - 1)`` bits split into a high part of ``bits // 2`` and a low
    part of the rest; even rounds xor the high part with a function of the low part, odd rounds the reverse
    (an alternating, possibly unbalanced Feistel network). Each round is invertible on its own, so the whole is a
    bijection of ``[0, 2^bits)``, a domain smaller than ``2 n``: cycle walking needs under two passes on average.

    Vectorised over numpy index arrays (any integer dtype, any shape; returns int64 of the same shape) and O(1) in
    memory: the object holds ``rounds`` keys and a few integers.
    """

    def __init__(self, n: int, key: int, rounds: int = DEFAULT_ROUNDS) -> None:
        n = int(n)
        if n < 0 or n > MAX_N:
            raise ValueError(f"a permutation needs 0 <= n <= 2**62, got {n}")
        if rounds < 3:
            raise ValueError("a Feistel permutation needs at least 3 rounds to mix both parts")
        self.n = n
        self.key = int(key) & MASK64
        self.rounds = rounds
        bits = max(2, (n - 1).bit_length())
        lo_bits, hi_bits = bits - bits // 2, bits // 2
        self._lo_bits = np.uint64(lo_bits)
        self._lo_mask = np.uint64((1 << lo_bits) - 1)
        # round r: part ^= ((other + add_r) * mul_r) >> shift_r, the top bits of a 64-bit product (odd mul_r)
        self._adds = [np.uint64(derive_key(self.key, "add", r)) for r in range(rounds)]
        self._muls = [np.uint64(derive_key(self.key, "mul", r) | 1) for r in range(rounds)]
        self._shifts = [np.uint64(64 - (hi_bits if r % 2 == 0 else lo_bits)) for r in range(rounds)]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"FeistelPermutation(n={self.n}, key={self.key:#x}, rounds={self.rounds})"

    def _apply(self, x: np.ndarray, order: range) -> np.ndarray:
        hi = x >> self._lo_bits
        lo = x & self._lo_mask
        adds, muls, shifts = self._adds, self._muls, self._shifts
        for r in order:
            if r % 2 == 0:
                f = lo + adds[r]
                f *= muls[r]
                f >>= shifts[r]
                hi ^= f
            else:
                f = hi + adds[r]
                f *= muls[r]
                f >>= shifts[r]
                lo ^= f
        hi <<= self._lo_bits
        hi |= lo
        return hi

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, range(self.rounds))

    def _decrypt(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, range(self.rounds - 1, -1, -1))

    def _walk(self, idx, step) -> np.ndarray:
        arr = _as_index_array(idx, self.n)
        if self.n <= 1:
            return np.zeros(arr.shape, dtype=np.int64)
        out = step(arr.astype(np.uint64).ravel())
        limit = np.uint64(self.n)
        todo = np.flatnonzero(out >= limit)
        while todo.size:
            walked = step(out[todo])
            out[todo] = walked
            todo = todo[walked >= limit]
        return out.astype(np.int64).reshape(arr.shape)

    def __call__(self, idx) -> np.ndarray:
        """The elements at positions ``idx`` of the permuted order."""
        return self._walk(idx, self._encrypt)

    def inverse(self, values) -> np.ndarray:
        """The positions at which ``values`` appear: ``perm.inverse(perm(i)) == i``."""
        return self._walk(values, self._decrypt)


class IdentityPermutation:
    """The unshuffled order, with the same interface as :class:`FeistelPermutation`."""

    def __init__(self, n: int) -> None:
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __call__(self, idx) -> np.ndarray:
        return _as_index_array(idx, self.n).astype(np.int64)

    inverse = __call__


def epoch_permutation(
    n: int, seed: int, epoch: int, *, shuffle: bool = True, stream: str = "samples"
) -> FeistelPermutation | IdentityPermutation:
    """The order of epoch ``epoch``: a fresh Feistel key per (seed, stream, epoch), or cache order."""
    if not shuffle:
        return IdentityPermutation(n)
    return FeistelPermutation(n, derive_key(seed, stream, epoch))
