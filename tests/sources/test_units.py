"""The planner's grouping of whole files: every file once, in order, in units of about equal bytes."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenmill.sources import plan_units


def _files(folder: Path, sizes: list[int]) -> list[str]:
    urls = []
    for i, size in enumerate(sizes):
        path = folder / f"{i:03d}.jsonl.gz"  # compressed: always whole files, never cut by lines
        path.write_bytes(b"x" * size)
        urls.append(str(path))
    return urls


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 5_000), min_size=1, max_size=40), target=st.integers(1, 20_000))
def test_whole_files_are_grouped_in_order_into_balanced_units(sizes, target):
    with tempfile.TemporaryDirectory() as d:
        urls = _files(Path(d), sizes)
        units = plan_units(urls, target_bytes=target)
        assert plan_units(urls, target_bytes=target) == units  # deterministic
    assert [p.url for u in units for p in u.parts] == urls  # every file once, in order
    assert [u.index for u in units] == list(range(len(units)))
    total = sum(sizes)
    wanted = max(1, math.ceil(total / target))
    if wanted > 2:
        wanted = -(-wanted // 4) * 4
    assert len(units) <= min(wanted, len(sizes))
    share = total / min(wanted, len(sizes))
    biggest = max(sizes)
    for u in units:  # within a file of its share: a file goes where its middle byte falls
        assert sum(p.nbytes for p in u.parts) <= share + biggest


def test_the_benchmark_shape_makes_four_units_of_two_shards(tmp_path):
    """8 shards of about 2.6 MB at the default 8 MiB: 4 units of 2 (greedy grouping made 3, 3 and 2, and the
    last unit ran alone on one of the 2 cores)."""
    urls = _files(
        tmp_path, [2_617_715, 2_671_586, 2_473_147, 2_548_513, 2_678_252, 2_798_879, 2_755_541, 2_708_808]
    )
    units = plan_units(urls, target_bytes=8 << 20)
    assert [len(u.parts) for u in units] == [2, 2, 2, 2]


def test_a_small_input_stays_one_unit(tmp_path):
    urls = _files(tmp_path, [100, 200, 300])
    assert len(plan_units(urls, target_bytes=8 << 20)) == 1
