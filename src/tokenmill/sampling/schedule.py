"""Mixture weights as a function of training progress, with exact expected counts.

A schedule is a list of points ``(at, weights)`` over stream positions (samples), ``at`` strictly increasing from
0. Between two points the weights are held (``constant`` segment) or move linearly (``linear``, the default) to
the next point's; after the last point they stay constant. A source whose weight is 0 at a point is absent there,
so sources enter and leave by ramping from or to 0 (or by a jump at the end of a constant segment).

Weights are normalised per point into shares that sum to 1, and shares, not raw weights, are interpolated, so
they sum to 1 at every position. Shares are kept as exact fractions of the given floats: the expected number of
draws of source ``k`` before position ``x`` is the integral of its share, ``quota(x)[k]``, a rational number
computed in O(number of points) from ``x`` alone (the trapezoid rule is exact on linear pieces). The mixture
(:class:`tokenmill.sampling.mixture.ScheduledMixture`) rounds these quotas to whole draws, and exact arithmetic
is what makes that rounding the same on every machine and never step backwards.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

SEGMENTS = ("linear", "constant")


@dataclass(frozen=True)
class Segment:
    """Positions ``[start, end)`` (``end=None``: to the end of the stream) whose shares move linearly from
    ``first`` (at ``start``) to ``last`` (just before ``end``); ``first == last`` for a constant piece."""

    start: int
    end: int | None
    first: tuple[Fraction, ...]
    last: tuple[Fraction, ...]

    def shares_at(self, x: int | Fraction) -> tuple[Fraction, ...]:
        if self.end is None or self.first == self.last:
            return self.first
        f = Fraction(x - self.start, self.end - self.start)
        return tuple(a + (b - a) * f for a, b in zip(self.first, self.last, strict=True))


def _shares(weights: Sequence[float], where: str) -> tuple[Fraction, ...]:
    w = [float(v) for v in weights]
    if not all(math.isfinite(v) and v >= 0 for v in w):
        raise ValueError(f"{where}: weights must be finite numbers >= 0, got {list(weights)}")
    total = sum(Fraction(v) for v in w)
    if total == 0:
        raise ValueError(f"{where}: at least one weight must be positive")
    return tuple(Fraction(v) / total for v in w)


class WeightSchedule:
    """Per-source shares over stream positions, piecewise linear (with jumps), and their exact integrals.

    ``points`` is ``[(at, weights), ...]`` with ``at`` in samples; ``segments`` names each point's segment kind
    (``"linear"`` or ``"constant"``; default linear). Pure arithmetic: it knows positions, not data.
    """

    def __init__(
        self, points: Sequence[tuple[int, Sequence[float]]], segments: Sequence[str] | None = None
    ) -> None:
        if not points:
            raise ValueError("a schedule needs at least one point")
        kinds = list(segments) if segments is not None else ["linear"] * len(points)
        if len(kinds) != len(points):
            raise ValueError("a schedule needs one segment kind per point")
        ats = [int(at) for at, _ in points]
        if ats[0] != 0:
            raise ValueError(f"the first point of a schedule must be at 0, got {ats[0]}")
        for i in range(1, len(ats)):
            if ats[i] <= ats[i - 1]:
                raise ValueError(f"point {i}: positions must increase, got {ats[i]} after {ats[i - 1]}")
        k = len(points[0][1])
        if k == 0 or any(len(w) != k for _, w in points):
            raise ValueError("every point of a schedule needs one weight per source")
        for i, kind in enumerate(kinds):
            if kind not in SEGMENTS:
                raise ValueError(f"point {i}: segment must be one of {', '.join(SEGMENTS)}, got {kind!r}")
        shares = [_shares(w, f"point {i}") for i, (_, w) in enumerate(points)]
        self.points = [(at, tuple(float(v) for v in w)) for at, (_, w) in zip(ats, points, strict=True)]
        self.kinds = kinds
        pieces = []
        for i, at in enumerate(ats):
            end = ats[i + 1] if i + 1 < len(ats) else None
            last = shares[i + 1] if end is not None and kinds[i] == "linear" else shares[i]
            pieces.append(Segment(at, end, shares[i], last))
        self._set_segments(pieces)

    @classmethod
    def from_segments(cls, segments: Sequence[Segment]) -> WeightSchedule:
        """A schedule from contiguous pieces (what :meth:`spliced` builds); it keeps no user points."""
        self = cls.__new__(cls)
        self.points, self.kinds = [], []
        self._set_segments(list(segments))
        return self

    def _set_segments(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.num_sources = len(segments[0].first)
        self._starts = [s.start for s in segments]
        bases = [tuple(Fraction(0) for _ in range(self.num_sources))]
        for s in segments[:-1]:
            bases.append(self._integrate(s, bases[-1], s.end))
        self._bases = bases
        self._integer = [self._integer_form(seg, base) for seg, base in zip(segments, bases, strict=True)]
        self._first = np.array([[float(v) for v in s.first] for s in segments])
        self._last = np.array([[float(v) for v in s.last] for s in segments])

    @staticmethod
    def _integrate(s: Segment, base: tuple[Fraction, ...], x: int | Fraction) -> tuple[Fraction, ...]:
        t = x - s.start
        now = s.shares_at(x)
        return tuple(b + t * (a + c) / 2 for b, a, c in zip(base, s.first, now, strict=True))

    # exact --------------------------------------------------------------------------------------------
    @property
    def is_constant(self) -> bool:
        """True when the shares never change: the schedule is a fixed-weight mixture."""
        first = self.segments[0].first
        return all(s.first == first and s.last == first for s in self.segments)

    def _segment(self, x: int | Fraction) -> int:
        return bisect.bisect_right(self._starts, x) - 1

    @staticmethod
    def _integer_form(s: Segment, base: tuple[Fraction, ...]) -> tuple:
        """The segment's quota over one common integer denominator, so rounding needs no fraction arithmetic."""
        den = math.lcm(2, *(v.denominator for v in (*base, *s.first, *s.last)))
        linear = s.end is not None and s.first != s.last
        return (
            s.start,
            (s.end - s.start) if linear else None,
            den,
            [int(v * den) for v in base],
            [int(v * den) for v in s.first],
            [int((b - a) * den) for a, b in zip(s.first, s.last, strict=True)],
        )

    def rounded_quota(self, x: int) -> tuple[list[int], list[float]]:
        """``floor(quota(x) + 1/2)`` per source, exactly, in integer arithmetic (the hot path of the mixture),
        and how much more quota each source needs for its next draw (in ``(0, 1]``, as a float)."""
        start, length, den, base, first, slope = self._integer[self._segment(x)]
        t = int(x) - start
        if length is None:  # (base + first t) / den + 1/2 = (2 base + 2 first t + den) / (2 den)
            nums, m = [2 * (b + a * t) + den for b, a in zip(base, first, strict=True)], 2 * den
        else:  # base + (2 L first t + slope t^2) / (2 L), over den; plus 1/2 = L den / (2 L den)
            two_l = 2 * length
            nums = [
                two_l * b + two_l * a * t + d * t * t + length * den for b, a, d in zip(base, first, slope)
            ]
            m = two_l * den
        floors = [n // m for n in nums]
        return floors, [((f + 1) * m - n) / m for n, f in zip(nums, floors, strict=True)]  # int / int: exact

    def quota(self, x: int | Fraction) -> tuple[Fraction, ...]:
        """Expected draws of each source in positions ``[0, x)``: the exact integral of its share."""
        if x < 0:
            raise ValueError(f"a stream position is >= 0, got {x}")
        i = self._segment(x)
        return self._integrate(self.segments[i], self._bases[i], x)

    def shares_at(self, x: int | Fraction) -> tuple[Fraction, ...]:
        """The exact shares at position ``x`` (right-continuous at a jump)."""
        return self.segments[self._segment(x)].shares_at(x)

    def spliced(self, at: int, other: WeightSchedule) -> WeightSchedule:
        """This schedule on ``[0, at)`` and ``other`` from ``at`` on (a schedule edited during a run)."""
        if other.num_sources != self.num_sources:
            raise ValueError("a spliced schedule needs the same sources")
        pieces = []
        for s in self.segments:
            if s.start >= at:
                break
            end = at if s.end is None or s.end > at else s.end
            pieces.append(Segment(s.start, end, s.first, s.shares_at(end) if s.end is not None else s.last))
        for s in other.segments:
            if s.end is not None and s.end <= at:
                continue
            if s.start < at:
                s = Segment(at, s.end, s.shares_at(at), s.last)
            pieces.append(s)
        return WeightSchedule.from_segments(pieces)

    def agrees_until(self, other: WeightSchedule, x: int) -> bool:
        """True when both schedules give the same shares at every position of ``[0, x)``."""
        if other.num_sources != self.num_sources:
            return False
        cuts = sorted({c for c in self._starts + other._starts if c < x} | {0})
        for lo, hi in zip(cuts, [*cuts[1:], x], strict=True):
            # both are linear on the positions lo .. hi-1: equal at the two ends means equal on all of them
            for probe in {lo, hi - 1}:
                if probe >= lo and self.shares_at(probe) != other.shares_at(probe):
                    return False
        return True

    # floats (plots, reports, in-tick layouts) ---------------------------------------------------------
    def shares(self, x: np.ndarray) -> np.ndarray:
        """``[n, K]`` float shares at positions ``x`` (right-continuous)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        seg = np.searchsorted(np.asarray(self._starts, dtype=np.float64), x, "right") - 1
        seg = np.clip(seg, 0, len(self.segments) - 1)
        start = np.asarray(self._starts, dtype=np.float64)[seg]
        ends = np.array([np.inf if s.end is None else s.end for s in self.segments])[seg]
        frac = np.where(np.isfinite(ends), (x - start) / np.where(np.isfinite(ends), ends - start, 1.0), 0.0)
        return self._first[seg] + (self._last[seg] - self._first[seg]) * frac[:, None]

    def increments(self, x0: int, offsets: np.ndarray) -> np.ndarray:
        """``[K, n]`` float ``quota(x0 + offsets) - quota(x0)`` for sorted non-negative ``offsets``.

        Works relative to ``x0`` so its precision does not fall with the length of training (quotas near
        position 10^12 would otherwise keep only four decimals).
        """
        offsets = np.asarray(offsets, dtype=np.float64)
        i = self._segment(x0)
        s = self.segments[i]
        if offsets.size and (s.end is None or x0 + offsets[-1] <= s.end):  # the usual case: one segment
            s0 = self.shares(np.array([x0]))[0]
            if s.end is None or s.first == s.last:
                return s0[:, None] * offsets[None, :]
            slope = (self._last[i] - self._first[i]) / (s.end - s.start)
            return offsets[None, :] * (s0[:, None] + slope[:, None] * offsets[None, :] / 2)
        x = x0 + offsets
        out = np.zeros((self.num_sources, offsets.size))
        lo = float(x0)
        acc = np.zeros(self.num_sources)
        i = self._segment(x0)
        while True:
            s = self.segments[i]
            hi = np.inf if s.end is None else float(s.end)
            sel = (x >= lo) & (x < hi) if np.isfinite(hi) else x >= lo
            s_lo = self.shares(np.array([lo]))[0]
            if sel.any():
                xs = x[sel]
                s_x = self.shares(xs)
                out[:, sel] = acc[:, None] + ((xs - lo)[None, :] * (s_lo[:, None] + s_x.T)) / 2
            if not np.isfinite(hi) or not x.size or hi > x[-1]:
                break
            s_hi = self._last[i]
            acc = acc + (hi - lo) * (s_lo + s_hi) / 2
            lo = hi
            i += 1
        return out

    def time_to(self, x0: int, source: np.ndarray, level: np.ndarray, horizon: int) -> np.ndarray:
        """For each (source, level): how far past ``x0`` (within ``[0, horizon]``) the source's quota has grown
        by ``level`` (floats; where the quota never gets there, ``horizon``).

        Within one segment this is closed form (a linear or quadratic quota solved in its stable form); across a
        segment end it interpolates the quota on the ``horizon + 1`` positions.
        """
        i = self._segment(x0)
        s = self.segments[i]
        if s.end is None or x0 + horizon <= s.end:
            s0 = (
                self._first[i]
                if s.end is None
                else self._first[i] + (self._last[i] - self._first[i]) * ((x0 - s.start) / (s.end - s.start))
            )
            rate = s0[source]
            if s.end is None or s.first == s.last:
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.where(rate > 0, level / np.where(rate > 0, rate, 1.0), horizon)
            else:  # level = rate t + slope t^2 / 2  ->  t = 2 level / (rate + sqrt(rate^2 + 2 slope level))
                slope = ((self._last[i] - self._first[i]) / (s.end - s.start))[source]
                root = np.sqrt(np.maximum(rate * rate + 2 * slope * level, 0.0))
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.where(
                        rate + root > 0, 2 * level / np.where(rate + root > 0, rate + root, 1.0), horizon
                    )
            return np.clip(t, 0.0, float(horizon))
        offsets = np.arange(horizon + 1, dtype=np.float64)
        inc = np.maximum.accumulate(self.increments(x0, offsets), axis=1)
        out = np.empty(level.shape)
        for k in np.unique(source).tolist():
            sel = source == k
            out[sel] = np.interp(level[sel], inc[k], offsets)
        return out

    def mean_shares(self, lo: int, hi: int) -> np.ndarray:
        """Each source's mean share over positions ``[lo, hi)``."""
        a, b = self.quota(lo), self.quota(hi)
        return np.array([float((q1 - q0) / (hi - lo)) for q0, q1 in zip(a, b, strict=True)])

    def to_json(self) -> list[dict]:
        """The pieces as JSON (exact: fractions as ``"num/den"`` strings)."""
        return [
            {
                "start": s.start,
                "end": s.end,
                "first": [str(v) for v in s.first],
                "last": [str(v) for v in s.last],
            }
            for s in self.segments
        ]

    @classmethod
    def from_json(cls, data: list[dict]) -> WeightSchedule:
        return cls.from_segments(
            [
                Segment(
                    int(d["start"]),
                    None if d["end"] is None else int(d["end"]),
                    tuple(Fraction(v) for v in d["first"]),
                    tuple(Fraction(v) for v in d["last"]),
                )
                for d in data
            ]
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightSchedule) and self.segments == other.segments

    def __hash__(self) -> int:
        return hash(tuple(self.segments))

    def __repr__(self) -> str:
        if self.points:
            return f"WeightSchedule({self.points!r}, {self.kinds!r})"
        return f"WeightSchedule.from_segments({len(self.segments)} pieces)"


# ------------------------------------------------------------------------------------ as a user writes it
POINT_KEYS = ("at", "tokens", "weights", "segment")


class ScheduleError(ValueError):
    """A schedule as written is wrong: ``point`` (its index, or None for the whole list) and ``key`` say where,
    so a recipe can name the YAML line."""

    def __init__(self, point: int | None, key: str | None, detail: str) -> None:
        self.point, self.key, self.detail = point, key, detail
        super().__init__(f"schedule point {point}: {detail}" if point is not None else f"schedule: {detail}")


def _number(value: object, point: int, key: str, what: str) -> float:
    """A number, also from YAML 1.1's strings such as ``2e9`` (no dot: safe_load keeps it a string)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ScheduleError(point, key, f"{what} must be a number >= 0, got {value!r}")
    return value


def _position(point: dict, i: int, unit: str, global_batch_size: int | None, seq_len: int | None) -> int:
    value = _number(point[unit], i, unit, unit)
    if unit == "at":
        if int(value) != value:
            raise ScheduleError(i, "at", f"at must be a whole global step, got {point['at']!r}")
        if global_batch_size is None:
            raise ScheduleError(None, None, "a schedule in steps ('at') needs the global batch size")
        return int(value) * int(global_batch_size)
    if seq_len is None:
        raise ScheduleError(None, None, "a schedule in tokens needs seq_len to place its points")
    return int(round(value / int(seq_len)))


def _point(point: object, i: int, names: Sequence[str]) -> tuple[str, list[float], str]:
    """(unit key, weights in ``names`` order, segment) of one point as written."""
    if not isinstance(point, dict):
        raise ScheduleError(i, None, f"a point is a mapping with 'at' and 'weights', got {point!r}")
    unknown = sorted(str(k) for k in set(point) - set(POINT_KEYS))
    if unknown:
        raise ScheduleError(i, None, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(POINT_KEYS)}")
    given = [key for key in ("at", "tokens") if key in point]
    if len(given) != 1:
        raise ScheduleError(i, None, "needs exactly one of 'at' (global step) or 'tokens'")
    weights = point.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise ScheduleError(i, "weights", "must be a mapping of source name to weight, e.g. {web: 0.7}")
    strange = sorted(str(n) for n in weights if n not in names)
    if strange:
        raise ScheduleError(
            i, "weights", f"unknown source(s) {', '.join(strange)}; sources: {', '.join(names)}"
        )
    row = [_number(weights.get(n, 0.0), i, f"weights.{n}", f"the weight of {n}") for n in names]
    if not any(row):
        raise ScheduleError(i, "weights", "at least one weight must be positive")
    segment = point.get("segment", "linear")
    if segment not in SEGMENTS:
        raise ScheduleError(i, "segment", f"segment must be one of {', '.join(SEGMENTS)}, got {segment!r}")
    return given[0], [float(w) for w in row], segment


def resolve_points(
    points: object,
    names: Sequence[str],
    *,
    global_batch_size: int | None = None,
    seq_len: int | None = None,
) -> list[dict]:
    """A schedule as written (``[{at: STEP, weights: {NAME: W, ...}, segment: linear|constant}, ...]``, or
    ``tokens:`` instead of ``at:``) -> points in samples, weights in ``names`` order (a name left out weighs 0).

    ``at`` counts global steps (batches of ``global_batch_size`` samples); ``tokens`` counts tokens read
    (``seq_len`` per sample). Errors are :class:`ScheduleError`, naming the point and the key.
    """
    if not isinstance(points, (list, tuple)) or not points:
        raise ScheduleError(None, None, "must be a list of points, e.g. [{at: 0, weights: {web: 1.0}}]")
    out: list[dict] = []
    first_unit = None
    for i, point in enumerate(points):
        unit, weights, segment = _point(point, i, names)
        if first_unit is not None and unit != first_unit:
            raise ScheduleError(
                i, unit, "the schedule mixes 'at' and 'tokens'; use one of them for every point"
            )
        first_unit = unit
        at = _position(point, i, unit, global_batch_size, seq_len)  # type: ignore[arg-type]
        if out and at <= out[-1]["at"]:
            raise ScheduleError(
                i,
                unit,
                f"points must move forward: sample {at} is not after the previous point's {out[-1]['at']}",
            )
        out.append({"at": at, "weights": weights, "segment": segment})
    if out[0]["at"] != 0:
        raise ScheduleError(0, first_unit, "the first point must be at 0 (the weights the run starts with)")
    return out


def schedule_of(points: Sequence[dict]) -> WeightSchedule:
    """The :class:`WeightSchedule` of points from :func:`resolve_points`."""
    return WeightSchedule([(p["at"], p["weights"]) for p in points], [p["segment"] for p in points])
