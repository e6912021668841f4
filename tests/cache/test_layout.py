"""The cache's stored per-document hash: its value is part of every cache built, so it must never drift."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tokenmill.cache import split_hash


def _by_definition(ids: list[int], seed: int) -> int:
    """blake2b (8 bytes, keyed by the seed as 8 little-endian bytes) of the ids as little-endian uint32."""
    key = struct.pack("<q", seed)
    return int.from_bytes(
        hashlib.blake2b(struct.pack(f"<{len(ids)}I", *ids), digest_size=8, key=key).digest(), "little"
    )


@given(
    ids=st.lists(st.integers(0, 2**32 - 1), max_size=300),
    seed=st.integers(-(2**63), 2**63 - 1),
    dtype=st.sampled_from(["<u4", ">u4", "<i8", "<u2"]),
    strided=st.booleans(),
)
def test_split_hash_is_the_keyed_blake2b_of_little_endian_uint32(ids, seed, dtype, strided):
    if dtype == "<u2":
        ids = [i & 0xFFFF for i in ids]
    if dtype == "<i8":
        ids = [i & 0x7FFFFFFF for i in ids]
    arr = np.array(ids, dtype=dtype)
    if strided:  # a non-contiguous view (every other element of a doubled array) hashes the same
        arr = np.repeat(arr, 2)[::2]
    assert split_hash(arr, seed) == _by_definition(ids, seed)


def test_a_known_value():
    """Pinned: the value every tokenmill version so far has stored for these ids and seed."""
    assert split_hash(np.array([1, 2, 3], dtype=np.uint32), 0) == 0x857E9FF3D06A6F84
