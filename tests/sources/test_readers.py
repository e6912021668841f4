"""Sources: URL expansion, every format, bad input, exact resume, byte ranges, work units, datasets, S3."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
import os
import sys

import cbor2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_documents, write_jsonl
from tokenmill.errors import ConfigError, RecordError, SourceError, StateError
from tokenmill.sources import (
    WorkUnit,
    detect_format,
    expand_braces,
    expand_urls,
    open_url,
    plan_units,
    read_hf,
    read_records,
)

pytest_plugins = ["s3_server"]  # the moto S3 fixtures: moto_server, s3

HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _records(n: int, seed: int = 0) -> list[dict]:
    return [{"text": t, "id": i} for i, t in enumerate(make_documents(n, seed=seed, max_words=40))]


def _jsonl_bytes(records: list[dict]) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records]


def _members(lines: list[bytes], per: int, compress) -> bytes:
    """A multi-member compressed file: ``per`` lines per gzip member / zstd frame."""
    return b"".join(compress(b"".join(lines[i : i + per])) for i in range(0, len(lines), per))


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _all(url, **kw):
    return list(read_records(url, **kw))


# -- names and URLs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.jsonl", "jsonl"),
        ("a.json.gz", "jsonl"),
        ("s3://b/x/a.NDJSON.zst", "jsonl"),
        ("a.jsonl.zstd", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.csv.bz2", "csv"),
        ("a.tsv", "csv"),
        ("a.cbor.xz", "cbor"),
        ("a.txt", "text"),
        ("lib/os.py", "text"),
        ("README.md", "text"),
        ("noext", "text"),
        ("https://h/data.jsonl?sig=abc", "jsonl"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


def test_detect_format_override():
    assert detect_format("a.txt", "json") == "jsonl"
    assert detect_format("a.jsonl", "parquet") == "parquet"
    with pytest.raises(ConfigError, match="unknown input format 'xml'.*jsonl"):
        detect_format("a.jsonl", "xml")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("a{b,c}d", ["abd", "acd"]),
        ("t-{0..3}", ["t-0", "t-1", "t-2", "t-3"]),
        ("t-{08..11}.gz", ["t-08.gz", "t-09.gz", "t-10.gz", "t-11.gz"]),
        ("{1..010..4}", ["001", "005", "009"]),
        ("{3..1}", ["3", "2", "1"]),
        ("{a..c}", ["a", "b", "c"]),
        ("{a,b}{1,2}", ["a1", "a2", "b1", "b2"]),
        ("x{a,b{1,2}}y", ["xay", "xb1y", "xb2y"]),
        ("{x}{}-{a,b}", ["{x}{}-a", "{x}{}-b"]),
        (
            "s3://b/{tr,va}/p-{0..1}.jsonl",
            ["s3://b/tr/p-0.jsonl", "s3://b/tr/p-1.jsonl"] + ["s3://b/va/p-0.jsonl", "s3://b/va/p-1.jsonl"],
        ),
        ("unbalanced{a,b", ["unbalanced{a,b"]),
    ],
)
def test_expand_braces(pattern, expected):
    assert expand_braces(pattern) == expected


def test_expand_braces_zero_padding_to_31():
    names = expand_braces("train-{00..31}.jsonl.gz")
    assert len(names) == 32 and names[0] == "train-00.jsonl.gz" and names[-1] == "train-31.jsonl.gz"


@pytest.fixture
def tree(tmp_path):
    for rel in ["a/1.jsonl", "a/2.jsonl", "a/sub/3.jsonl", "a/_SUCCESS", "a/.hidden", "b/1.jsonl", "b/x.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text('{"text": "x"}\n')
    return tmp_path


def test_expand_urls_globs_braces_directories(tree):
    t = str(tree)
    assert expand_urls(f"{t}/a/*.jsonl") == [f"{t}/a/1.jsonl", f"{t}/a/2.jsonl"]
    assert expand_urls(f"{t}/a/?.jsonl") == [f"{t}/a/1.jsonl", f"{t}/a/2.jsonl"]
    assert expand_urls(f"{t}/**/*.jsonl") == sorted(
        [f"{t}/a/1.jsonl", f"{t}/a/2.jsonl", f"{t}/a/sub/3.jsonl", f"{t}/b/1.jsonl"]
    )
    # a directory is its files, recursively, sorted, without '.'/'_' names
    assert expand_urls(f"{t}/a") == [f"{t}/a/1.jsonl", f"{t}/a/2.jsonl", f"{t}/a/sub/3.jsonl"]
    # brace order is kept, files sorted within each expansion, duplicates kept at their first place
    assert expand_urls([f"{t}/{{b,a}}/1.jsonl", f"{t}/a/*.jsonl"]) == [
        f"{t}/b/1.jsonl",
        f"{t}/a/1.jsonl",
        f"{t}/a/2.jsonl",
    ]
    assert expand_urls(f"file://{t}/b/*") == [f"file://{t}/b/1.jsonl", f"file://{t}/b/x.txt"]
    # relative local paths come back absolute and plain
    cwd = os.getcwd()
    os.chdir(t)
    try:
        assert expand_urls("b/1.jsonl") == [f"{t}/b/1.jsonl"]
    finally:
        os.chdir(cwd)


def test_expand_urls_missing(tree):
    t = str(tree)
    with pytest.raises(SourceError, match=r"c/\*\.jsonl: no file matches this pattern"):
        expand_urls(f"{t}/c/*.jsonl")
    with pytest.raises(
        SourceError, match=r"b/2.jsonl: no file matches this pattern \(from the pattern '.*b/\{1\.\.3\}"
    ):
        expand_urls(f"{t}/b/{{1..3}}.jsonl")
    with pytest.raises(SourceError, match="nothing.jsonl"):
        expand_urls(f"{t}/nothing.jsonl")


def test_open_url_decompresses(tmp_path):
    data = b"hello\nworld\n"
    for suffix, comp in [(".gz", gzip.compress), (".zst", _zstd), (".zstd", _zstd), (".bz2", bz2.compress)]:
        p = tmp_path / f"f.txt{suffix}"
        stored = comp(data)  # compressed once: gzip's header holds the time, which moves between two calls
        p.write_bytes(stored)
        with open_url(str(p)) as f:
            assert f.read() == data
        with open_url(str(p), compression=None) as f:
            assert f.read() == stored
    with pytest.raises(SourceError, match="file not found"):
        open_url(str(tmp_path / "missing.gz"))


# -- formats ----------------------------------------------------------------------------------------------------
COMPRESSORS = {
    "": lambda b: b,
    ".gz": gzip.compress,
    ".zst": _zstd,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_jsonl_every_compression(tmp_path, suffix):
    records = _records(60)
    path = tmp_path / f"d.jsonl{suffix}"
    path.write_bytes(COMPRESSORS[suffix](b"".join(_jsonl_bytes(records))))
    out = _all(str(path))
    assert [r.record for r in out] == records
    assert [r.line for r in out] == list(range(1, 61))
    assert all(r.path == str(path) and r.row is None for r in out)


def test_jsonl_blank_lines_crlf_bom_and_no_trailing_newline(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n\n   \n{"text": "b"}\r\n\t\n{"text": "c"}')
    out = _all(str(p))
    assert [(r.record["text"], r.line) for r in out] == [("a", 1), ("b", 4), ("c", 6)]
    assert out[-1].position["offset"] == p.stat().st_size


def test_parquet(tmp_path):
    records = _records(100)
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=17)
    out = _all(str(path))
    assert [r.record for r in out] == records
    assert [r.row for r in out] == list(range(100))
    assert [r.record for r in read_records(str(path), columns=["text"])] == [
        {"text": r["text"]} for r in records
    ]
    part = _all(str(path), row_groups=(2, 4))
    assert [r.row for r in part] == list(range(34, 68))


def test_csv_and_tsv(tmp_path):
    records = [{"text": t, "id": str(i)} for i, t in enumerate(make_documents(30, seed=3, max_words=30))]
    records[3]["text"] = 'quoted "text", with\nan embedded newline'
    records[4]["text"] = "x" * 200_000  # longer than csv's default field limit
    for name, delim in [("d.csv", ","), ("d.tsv", "\t"), ("d.csv.gz", ",")]:
        with open(tmp_path / "plain", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["text", "id"], delimiter=delim)
            w.writeheader()
            w.writerows(records)
        data = (tmp_path / "plain").read_bytes()
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        out = _all(str(tmp_path / name))
        assert [r.record for r in out] == records
        assert [r.row for r in out] == list(range(30))
        assert out[0].line == 2
        for k in range(len(out)):
            tail = _all(str(tmp_path / name), start=out[k].position)
            assert [(t.record, t.line, t.row) for t in tail] == [
                (o.record, o.line, o.row) for o in out[k + 1 :]
            ]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_cbor_sequence(tmp_path, suffix):
    records = _records(40)
    path = tmp_path / f"d.cbor{suffix}"
    path.write_bytes(COMPRESSORS[suffix](b"".join(cbor2.dumps(r) for r in records)))
    out = _all(str(path))
    assert [r.record for r in out] == records
    assert [r.row for r in out] == list(range(40))
    for k in range(len(out)):
        assert [t.record for t in read_records(str(path), start=out[k].position)] == records[k + 1 :]


def test_text_document_and_lines(tmp_path):
    body = "line one\r\nline two\n\n  \nline five"
    (tmp_path / "a.md").write_text(body, encoding="utf-8")
    doc = _all(str(tmp_path / "a.md"))
    assert [r.record for r in doc] == [{"text": body}]
    assert _all(str(tmp_path / "a.md"), start=doc[0].position) == []
    lines = _all(str(tmp_path / "a.md"), text_split="lines", text_key="content")
    assert [(r.record, r.line) for r in lines] == [
        ({"content": "line one"}, 1),
        ({"content": "line two"}, 2),
        ({"content": "line five"}, 5),
    ]
    (tmp_path / "empty.txt").write_bytes(b"")
    (empty,) = _all(str(tmp_path / "empty.txt"))
    assert empty.record == {"text": ""}
    assert _all(str(tmp_path / "empty.txt"), start=empty.position) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_closing_the_iterator_closes_the_file(tmp_path, suffix):
    p = tmp_path / f"a.jsonl{suffix}"
    p.write_bytes(COMPRESSORS[suffix](b"".join(_jsonl_bytes(_records(50)))))
    before = len(os.listdir("/proc/self/fd"))
    it = read_records(str(p))
    next(it)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    it.close()
    assert len(os.listdir("/proc/self/fd")) == before


# -- bad input --------------------------------------------------------------------------------------------------
BAD_JSONL = (
    b'{"text": "ok 1"}\n'
    b'{"text": "broken\n'
    b'{"text": "bad \xff byte"}\n'
    b'["an", "array"]\n'
    b"null\n"
    b'{"text": "ok 6"}\n'
)


def test_bad_jsonl_raises_with_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(BAD_JSONL)
    it = read_records(str(p))
    assert next(it).record == {"text": "ok 1"}
    with pytest.raises(RecordError) as e:
        next(it)
    assert e.value.reason == "malformed_json" and e.value.line == 2
    assert str(e.value).startswith(f"{p}, line 2: malformed JSON")
    # resume after the error, error by error
    expected = [("invalid_utf8", 3), ("not_object", 4), ("not_object", 5)]
    pos = e.value.position
    for reason, line in expected:
        with pytest.raises(RecordError) as e:
            list(read_records(str(p), start=pos))
        assert (e.value.reason, e.value.line, e.value.path) == (reason, line, str(p))
        assert f"line {line}" in str(e.value)
        pos = e.value.position
    assert [r.record for r in read_records(str(p), start=pos)] == [{"text": "ok 6"}]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_bad_jsonl_on_error_goes_on(tmp_path, suffix):
    p = tmp_path / f"bad.jsonl{suffix}"
    p.write_bytes(COMPRESSORS[suffix](BAD_JSONL))
    errors: list[RecordError] = []
    out = _all(str(p), on_error=errors.append)
    assert [r.record["text"] for r in out] == ["ok 1", "ok 6"]
    assert [(e.reason, e.line) for e in errors] == [
        ("malformed_json", 2),
        ("invalid_utf8", 3),
        ("not_object", 4),
        ("not_object", 5),
    ]
    assert "got an array" in str(errors[2]) and "got null" in str(errors[3])


def test_json_array_file_gets_a_hint(tmp_path):
    p = tmp_path / "arr.json"
    p.write_text('[\n{"text": "a"},\n{"text": "b"}\n]\n')
    with pytest.raises(RecordError, match="line 1: malformed JSON.*one object per line"):
        _all(str(p))


def test_bad_text_csv_cbor(tmp_path):
    (tmp_path / "t.txt").write_bytes(b"fine\nfine\nbad \xc3\x28 here\n")
    with pytest.raises(RecordError) as e:
        _all(str(tmp_path / "t.txt"))
    assert (e.value.reason, e.value.line) == ("invalid_utf8", 3)
    errors = []
    out = _all(str(tmp_path / "t.txt"), text_split="lines", on_error=errors.append)
    assert len(out) == 2 and [(x.reason, x.line) for x in errors] == [("invalid_utf8", 3)]

    (tmp_path / "c.csv").write_bytes(b"text,id\na,1\nb,2,extra\nc \xff,3\nd,4\n")
    errors = []
    out = _all(str(tmp_path / "c.csv"), on_error=errors.append)
    assert [r.record for r in out] == [{"text": "a", "id": "1"}, {"text": "d", "id": "4"}]
    assert [(x.reason, x.line, x.row) for x in errors] == [("malformed_csv", 3, 1), ("invalid_utf8", 4, 2)]
    assert str(errors[0]).startswith(f"{tmp_path / 'c.csv'}, line 3, row 1: the row has 3 fields")

    (tmp_path / "c.cbor").write_bytes(
        cbor2.dumps({"text": "a"}) + cbor2.dumps([1, 2]) + cbor2.dumps({"text": "b"})
    )
    errors = []
    assert [r.record for r in read_records(str(tmp_path / "c.cbor"), on_error=errors.append)] == [
        {"text": "a"},
        {"text": "b"},
    ]
    assert [(x.reason, x.row) for x in errors] == [("not_object", 1)]
    (tmp_path / "t.cbor").write_bytes(cbor2.dumps({"text": "a"}) + cbor2.dumps({"text": "b" * 100})[:-10])
    with pytest.raises(SourceError, match=r"t.cbor, row 1: truncated CBOR item 1") as e:
        _all(str(tmp_path / "t.cbor"))
    assert e.value.reason == "malformed_cbor"


def test_unreadable_files(tmp_path):
    with pytest.raises(SourceError, match=r"missing.jsonl: file not found") as e:
        _all(str(tmp_path / "missing.jsonl"))
    assert e.value.reason == "unreadable"
    (tmp_path / "corrupt.jsonl.gz").write_bytes(
        gzip.compress(b'{"text": "a"}\n' * 1000)[:-300] + b"\x00garbage"
    )
    with pytest.raises(SourceError, match=r"corrupt.jsonl.gz: (corrupt|truncated) gzip data") as e:
        _all(str(tmp_path / "corrupt.jsonl.gz"))
    (tmp_path / "trunc.jsonl.zst").write_bytes(_zstd(b'{"text": "a"}\n' * 1000)[:-20])
    with pytest.raises(SourceError, match=r"trunc.jsonl.zst: .*zstd data"):
        _all(str(tmp_path / "trunc.jsonl.zst"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(SourceError, match=r"bad.parquet: cannot read the file") as e:
        _all(str(tmp_path / "bad.parquet"), retries=0)
    assert e.value.reason == "unreadable"
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(SourceError, match="dir.jsonl"):
        _all(str(tmp_path / "dir.jsonl"))


def test_option_errors(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    with pytest.raises(ConfigError, match="compressed"):
        read_records(str(tmp_path / "a.jsonl.gz"), byte_range=(0, 10))
    with pytest.raises(ConfigError, match="byte ranges"):
        read_records(str(p), "parquet", byte_range=(0, 10))
    with pytest.raises(ConfigError, match="text_split"):
        read_records(str(p), text_split="paragraphs")
    with pytest.raises(StateError, match="does not fit a jsonl file"):
        _all(str(p), start={"row_group": 1, "group_row": 0})


# -- exact resume -----------------------------------------------------------------------------------------------
def _events(url, **kw):
    """Records and reported errors, in order, as comparable tuples with their positions."""
    out = []
    for r in read_records(
        url, on_error=lambda e: out.append(("error", e.reason, e.line, e.row, e.position)), **kw
    ):
        out.append(("record", r.record, r.line, r.row, r.position))
    return out


def _check_resume_everywhere(url, **kw):
    """Resuming from the position of every record and every error gives exactly the rest of the stream."""
    full = _events(url, **kw)
    for k, event in enumerate(full):
        position = json.loads(json.dumps(event[-1]))  # JSON-able, and survives a round trip
        assert _events(url, start=position, **kw) == full[k + 1 :]
    return full


NOISE = [b"\n", b"  \r\n", b"{broken\n", b"[1, 2]\n", b'{"text": "\xff"}\n']


@HYP
@given(
    n=st.integers(0, 25),
    seed=st.integers(0, 10_000),
    per=st.integers(1, 8),
    read_size=st.sampled_from([7, 64, 1 << 20]),
    kind=st.sampled_from(list(COMPRESSORS)),
    noise=st.lists(st.tuples(st.integers(0, 25), st.sampled_from(NOISE)), max_size=4),
)
def test_resume_jsonl_from_every_position(tmp_path_factory, n, seed, per, read_size, kind, noise):
    records = _records(n, seed)
    lines = _jsonl_bytes(records)
    for at, junk in noise:  # blank and bad lines in between
        lines.insert(min(at, len(lines)), junk)
    path = tmp_path_factory.mktemp("resume") / f"r.jsonl{kind}"
    path.write_bytes(_members(lines, per, COMPRESSORS[kind]))  # identity for "": a plain file
    full = _check_resume_everywhere(str(path), read_size=read_size)
    assert [e[1] for e in full if e[0] == "record"] == records
    assert sum(e[0] == "error" for e in full) == sum(junk.strip() != b"" for _, junk in noise)
    positions = [e[-1] for e in full]
    if kind:
        assert all(p["offset"] >= p["block_offset"] for p in positions)
        # resuming late decompresses from a later member, not from the file start
        if full and full[-1][2] > per:
            assert positions[-1]["block"] > 0


@HYP
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_resume_parquet_from_every_position(tmp_path_factory, sizes, seed):
    records = _records(sum(sizes), seed)
    path = tmp_path_factory.mktemp("pq") / "r.parquet"
    schema = pa.schema([("text", pa.string()), ("id", pa.int64())])
    with pq.ParquetWriter(path, schema) as w:
        i = 0
        for s in sizes:
            w.write_table(pa.Table.from_pylist(records[i : i + s], schema=schema))
            i += s
    full = _check_resume_everywhere(str(path))
    assert [e[1] for e in full] == records
    assert [e[3] for e in full] == list(range(len(records)))


# -- byte ranges ------------------------------------------------------------------------------------------------
line_st = st.one_of(
    st.builds(lambda t: json.dumps({"text": t}, ensure_ascii=False), st.text(max_size=30)),
    st.sampled_from(["", "  ", "\r"]),
)


@HYP
@given(
    lines=st.lists(line_st, max_size=30),
    trailing_newline=st.booleans(),
    cuts=st.lists(st.floats(0, 1), max_size=6),
    read_size=st.sampled_from([3, 16, 1 << 20]),
)
def test_byte_ranges_read_every_line_exactly_once(tmp_path_factory, lines, trailing_newline, cuts, read_size):
    data = "\n".join(lines).encode() + (b"\n" if trailing_newline and lines else b"")
    path = tmp_path_factory.mktemp("ranges") / "r.jsonl"
    path.write_bytes(data)
    size = len(data)
    bounds = sorted({0, size, *(int(c * size) for c in cuts)})
    whole = [(r.record, r.position["offset"]) for r in read_records(str(path), read_size=read_size)]
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        got = _all(str(path), byte_range=(a, b), read_size=read_size)
        for r in got:
            start = r.position["offset"]
            assert r.line is None or a == 0
            pieces.append((r.record, start))
        # a range resumes inside itself
        if got:
            rest = _all(str(path), byte_range=(a, b), start=got[0].position, read_size=read_size)
            assert [r.record for r in rest] == [r.record for r in got[1:]]
    assert pieces == whole
    # the same for text read by lines
    as_text = [r.record for r in read_records(str(path), "text", text_split="lines")]
    by_range = [
        r.record
        for a, b in zip(bounds, bounds[1:])
        for r in read_records(str(path), "text", text_split="lines", byte_range=(a, b))
    ]
    assert by_range == as_text


def test_error_inside_range_gets_absolute_line(tmp_path):
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(200)]
    lines[150] = "{broken"
    lines[170] = "[1]"
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    errors = []
    got = _all(str(path), byte_range=(size // 2, size), on_error=errors.append, read_size=64)
    assert [(e.reason, e.line) for e in errors] == [("malformed_json", 151), ("not_object", 171)]
    assert all(r.line is None for r in got)


# -- work units -------------------------------------------------------------------------------------------------
def test_plan_units_cover_everything_once(tmp_path):
    big = _records(400, seed=1)
    write_jsonl(tmp_path / "00-big.jsonl", big)
    write_jsonl(tmp_path / "01-small.jsonl", _records(5, seed=2))
    write_jsonl(tmp_path / "02-small.jsonl", _records(5, seed=3))
    (tmp_path / "03-big.jsonl.gz").write_bytes(gzip.compress(b"".join(_jsonl_bytes(big))))
    pq.write_table(pa.Table.from_pylist(big), tmp_path / "04-big.parquet", row_group_size=50)
    (tmp_path / "05-lines.txt").write_text("\n".join(r["text"].replace("\n", " ") for r in big))
    urls = expand_urls(str(tmp_path))
    target = 20_000
    units = plan_units(urls, target_bytes=target, text_split="lines")
    assert plan_units(urls, target_bytes=target, text_split="lines") == units  # deterministic
    assert [u.index for u in units] == list(range(len(units)))
    for u in units:
        assert WorkUnit.from_json(json.loads(json.dumps(u.to_json()))) == u
    kinds = {
        (p.url.rsplit("/", 1)[-1], p.byte_range is not None, p.row_groups is not None)
        for u in units
        for p in u.parts
    }
    assert ("00-big.jsonl", True, False) in kinds and ("04-big.parquet", False, True) in kinds
    assert ("03-big.jsonl.gz", False, False) in kinds and ("05-lines.txt", True, False) in kinds
    assert any(len(u.parts) == 2 for u in units)  # the two small files share a unit
    assert len({u.key for u in units}) == len(units)

    def ident(r):
        return (r.path, json.dumps(r.record, sort_keys=True))

    by_units = [ident(r) for u in units for r in u.iter_records()]
    by_files = [
        ident(r)
        for url in urls
        for r in read_records(url, text_split="lines" if url.endswith(".txt") else "document")
    ]
    assert by_units == by_files  # every record once, in order
    # resume a unit from each of its positions
    unit = next(u for u in units if len(u.parts) == 2)
    full = list(unit.iter_records())
    for k in range(0, len(full), 3):
        tail = list(unit.iter_records(start=json.loads(json.dumps(full[k].position))))
        assert [r.record for r in tail] == [r.record for r in full[k + 1 :]]


def test_unit_errors_carry_unit_positions(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "a"}\nnot json\n{"text": "b"}\n')
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "c"}\n')
    (unit,) = plan_units(expand_urls(str(tmp_path)))
    it = unit.iter_records()
    next(it)
    with pytest.raises(RecordError) as e:
        next(it)
    assert e.value.position == {"part": 0, "position": {"offset": 23, "line": 2}}
    assert [r.record["text"] for r in unit.iter_records(start=e.value.position)] == ["b", "c"]
    errors = []
    assert [r.record["text"] for r in unit.iter_records(on_error=errors.append)] == ["a", "b", "c"]
    assert errors[0].position["part"] == 0


# -- Hugging Face datasets --------------------------------------------------------------------------------------
@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return tmp_path / "hf-cache"


def test_read_hf_saved_and_data_files(tmp_path, offline_hf):
    datasets = pytest.importorskip("datasets")
    records = _records(30)
    ds = datasets.Dataset.from_list(records)
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(5))}).save_to_disk(
        str(tmp_path / "saved")
    )
    out = list(read_hf(str(tmp_path / "saved")))
    assert [r.record for r in out] == records and [r.row for r in out] == list(range(30))
    assert [r.record for r in read_hf(str(tmp_path / "saved"), split="validation")] == records[:5]
    assert [r.record for r in read_hf(str(tmp_path / "saved"), start=out[9].position)] == records[10:]
    ds.save_to_disk(str(tmp_path / "single"))
    assert [r.record for r in read_hf(str(tmp_path / "single"), start={"row": 28})] == records[28:]
    with pytest.raises(SourceError, match="no split 'test'"):
        list(read_hf(str(tmp_path / "saved"), split="test"))

    write_jsonl(tmp_path / "files" / "a.jsonl", records[:12])
    write_jsonl(tmp_path / "files" / "b.jsonl", records[12:])
    files = [str(tmp_path / "files" / "a.jsonl"), str(tmp_path / "files" / "b.jsonl")]
    out = list(read_hf("json", data_files=files, cache_dir=str(offline_hf)))
    assert [r.record for r in out] == records
    assert [
        r.record for r in read_hf("json", data_files=files, cache_dir=str(offline_hf), start=out[19].position)
    ] == records[20:]
    stream = list(
        read_hf("json", data_files=files, streaming=True, cache_dir=str(offline_hf), start={"row": 7})
    )
    assert [r.record for r in stream] == records[7:] and stream[0].row == 7


def test_read_hf_without_datasets(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError, match=r"needs the `datasets` package"):
        read_hf(str(tmp_path))


# -- HTTP (a real local web server) -----------------------------------------------------------------------------
@pytest.fixture
def http_dir(tmp_path):
    """A folder served by the stdlib web server on 127.0.0.1 (directory listings, no range requests)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_urls(http_dir):
    root, base = http_dir
    records = _records(30)
    for name in ("a.jsonl", "b.jsonl"):
        write_jsonl(root / name, records)
    (root / "b.jsonl.gz").write_bytes(gzip.compress(b"".join(_jsonl_bytes(records))))
    assert expand_urls(f"{base}/*.jsonl") == [f"{base}/a.jsonl", f"{base}/b.jsonl"]
    assert expand_urls(f"{base}/{{b,a}}.jsonl") == [f"{base}/b.jsonl", f"{base}/a.jsonl"]
    for url in (f"{base}/a.jsonl", f"{base}/b.jsonl.gz"):
        assert [r.record for r in read_records(url)] == records
    # this server cannot seek: a mid-file resume says so, naming the file
    with pytest.raises(SourceError, match=r"a.jsonl: cannot read the file: .*range requests"):
        _all(f"{base}/a.jsonl", start={"offset": 100, "line": 2}, retries=0)


# -- S3 (a real moto server) ------------------------------------------------------------------------------------
@pytest.mark.s3
def test_s3_globs_braces_formats(s3):
    records = _records(120, seed=5)
    lines = _jsonl_bytes(records)
    for i in range(3):
        s3.put(f"corpus/train-{i:02d}.jsonl.gz", _members(lines[i * 40 : (i + 1) * 40], 10, gzip.compress))
    s3.put("corpus/other.txt", b"not picked")
    table = pa.Table.from_pylist(records)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=25)
    s3.put("pq/part-0.parquet", sink.getvalue().to_pybytes())
    so = s3.storage_options

    urls = expand_urls(s3.url("corpus/train-{00..02}.jsonl.gz"), so)
    assert urls == [s3.url(f"corpus/train-{i:02d}.jsonl.gz") for i in range(3)]
    assert expand_urls(s3.url("corpus/*.jsonl.gz"), so) == urls
    assert expand_urls(s3.url("{corpus/train-01,pq/part-0}*"), so) == [urls[1], s3.url("pq/part-0.parquet")]
    assert expand_urls(s3.url("pq"), so) == [s3.url("pq/part-0.parquet")]
    with pytest.raises(SourceError, match="train-03"):
        expand_urls(s3.url("corpus/train-{00..03}.jsonl.gz"), so)

    got = [r for u in urls for r in read_records(u, storage_options=so)]
    assert [r.record for r in got] == records
    tail = _all(urls[1], storage_options=so, start=got[55].position)
    assert [r.record for r in tail] == records[56:80]
    assert got[55].position["block"] > 0

    pq_rows = _all(s3.url("pq/part-0.parquet"), storage_options=so)
    assert [r.record for r in pq_rows] == records
    assert [
        r.record
        for r in read_records(s3.url("pq/part-0.parquet"), storage_options=so, start=pq_rows[60].position)
    ] == records[61:]
    units = plan_units(expand_urls(s3.url("pq/*.parquet"), so), target_bytes=2_000, storage_options=so)
    assert len(units) > 1
    assert [r.record for u in units for r in u.iter_records(storage_options=so)] == records


@pytest.mark.s3
def test_s3_dropped_connection_loses_nothing(s3, caplog):
    records = _records(3000, seed=9)
    data = b"".join(_jsonl_bytes(records))
    assert len(data) > 600_000
    plain = s3.put("big.jsonl", data)
    packed = s3.put("big.jsonl.gz", _members(_jsonl_bytes(records), 500, gzip.compress))
    so = s3.faulty_storage_options(default_block_size=64 * 1024)
    for url in (plain, packed):
        s3.proxy.arm(after_bytes=150_000, times=2)
        drops_before = s3.proxy.drops
        caplog.clear()
        with caplog.at_level("WARNING", logger="tokenmill.sources"):
            out = _all(url, storage_options=so, backoff=0.01, read_size=32 * 1024)
        assert s3.proxy.drops - drops_before == 2  # both faults really hit the reader's connections
        retries = [r.getMessage() for r in caplog.records if r.name == "tokenmill.sources"]
        assert len(retries) == 2 and all("retry" in m for m in retries), retries
        assert [r.record for r in out] == records  # nothing lost, nothing twice
        assert [r.line for r in out] == list(range(1, 3001))


@pytest.mark.s3
def test_s3_gives_up_after_retries(s3):
    url = s3.put("big.jsonl", b"".join(_jsonl_bytes(_records(2000, seed=4))))
    so = s3.faulty_storage_options(default_block_size=64 * 1024)
    s3.proxy.arm(after_bytes=10_000, times=1000)
    with pytest.raises(SourceError, match=r"big.jsonl: gave up after 2 retries") as e:
        _all(url, storage_options=so, retries=2, backoff=0.01, read_size=32 * 1024)
    assert e.value.reason == "unreadable"
    s3.proxy.disarm()
    with pytest.raises(SourceError, match="file not found"):
        _all(s3.url("nope.jsonl"), storage_options=s3.storage_options)
