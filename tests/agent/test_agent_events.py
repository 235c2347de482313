"""Event files: CSV / JSONL parsing, and bad input reported with file and line, never values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fractal_lba.agent import EventFileError, detect_format, load_events, parse_events

SECRET_VALUE = "987654.321"


def test_csv_basic_and_column_order() -> None:
    ev = parse_events(b"timestamp,x,y,z\n1,0.5,0.25,0.125\n2,1,2,3\n", "csv")
    assert ev.timestamps.tolist() == [1.0, 2.0]
    assert ev.points.tolist() == [[0.5, 0.25, 0.125], [1.0, 2.0, 3.0]]
    shuffled = parse_events(b"z, y ,timestamp,x\r\n3,2,1,0.5\r\n", "csv")
    assert shuffled.timestamps.tolist() == [1.0]
    assert shuffled.points.tolist() == [[0.5, 2.0, 3.0]]


def test_csv_tolerates_bom_blank_lines_and_no_final_newline() -> None:
    ev = parse_events(b"\xef\xbb\xbftimestamp,x,y,z\n1,2,3,4\n\n5,6,7,8", "csv")
    assert len(ev) == 2
    assert ev.points.flags.c_contiguous and ev.timestamps.flags.c_contiguous


@pytest.mark.parametrize(
    ("data", "line", "detail"),
    [
        (b"timestamp,x,y,z\n1,2,3,4\n1,2,3\n", 3, "expected 4 fields, found 3"),
        (b"timestamp,x,y,z\n1,2,3,4\n1,2,3,4,5\n", 3, "expected 4 fields, found 5"),
        (b"timestamp,x,y,z\n1,2,3,4\n\n1,2,abc,4\n", 4, "column 3 is not a number"),
        (b"timestamp,x,y,z\n1,,3,4\n", 2, "column 2 is not a number"),
        (b"timestamp,x,y,z\n1,2,3,1_0\n", 2, "column 4 is not a number"),
        (b"timestamp,x,y,z\n1,2,3,4\n1,2,3,nan\n", 3, "column 4 is not finite"),
        (b"timestamp,x,y,z\n1,2,3,4\n1,2,inf,4\n", 3, "column 3 is not finite"),
        (b"timestamp,x,y,z\n1,2,3,1e999\n", 2, "column 4 is not finite"),
        (b"timestamp,x,y,z\n1,2,3,\xff\n", 2, "not valid UTF-8"),
        (b"timestamp,x,y,z\n1,2,3,4\r5,6,7,8\n", 2, "expected 4 fields, found 7"),
        (b"timestamp,x,y,z\n1,2,3,4\n   \n", 3, "expected 4 fields, found 1"),
        (b"1,2,3,4\n", 1, "missing header"),
        (b"time,x,y,z\n1,2,3,4\n", 1, "header must name exactly"),
        (b"timestamp,x,y,z,w\n1,2,3,4,5\n", 1, "header must name exactly"),
    ],
)
def test_csv_errors_name_the_line(data: bytes, line: int, detail: str) -> None:
    with pytest.raises(EventFileError) as info:
        parse_events(data, "csv", name="ev.csv")
    assert info.value.line == line
    assert detail in str(info.value)
    assert str(info.value).startswith(f"ev.csv:{line}: ")


def test_csv_error_never_echoes_values() -> None:
    data = f"timestamp,x,y,z\n1,2,3,4\n{SECRET_VALUE},x{SECRET_VALUE},3,4\n".encode()
    with pytest.raises(EventFileError) as info:
        parse_events(data, "csv", name="ev.csv")
    assert SECRET_VALUE not in str(info.value)
    header = f"timestamp,x,y,{SECRET_VALUE}\n1,2,3,4\n".encode()
    with pytest.raises(EventFileError) as info2:
        parse_events(header, "csv", name="ev.csv")
    assert SECRET_VALUE not in str(info2.value)


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"\xef\xbb\xbf"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(EventFileError, match="file is empty"):
        parse_events(data, "csv", name="ev.csv")


def test_header_only_has_no_events() -> None:
    with pytest.raises(EventFileError, match="no events"):
        parse_events(b"timestamp,x,y,z\n", "csv")


def test_jsonl_basic_ignores_other_keys() -> None:
    data = (
        b'{"timestamp": 1, "x": 0.5, "y": 2, "z": 3, "user": "a"}\n'
        b'\n{"z":1,"y":1,"x":1,"timestamp":2.5}\n'
    )
    ev = parse_events(data, "jsonl")
    assert ev.timestamps.tolist() == [1.0, 2.5]
    assert ev.points.tolist() == [[0.5, 2.0, 3.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize(
    ("data", "line", "detail"),
    [
        (
            b'{"timestamp":1,"x":1,"y":1,"z":1}\n{"timestamp":1,"x":1,"y":1}\n',
            2,
            "missing field 'z'",
        ),
        (b'{"timestamp":1,"x":"1","y":1,"z":1}\n', 1, "field 'x' must be a number"),
        (b'{"timestamp":1,"x":true,"y":1,"z":1}\n', 1, "field 'x' must be a number"),
        (b'\n\n{"timestamp":1,"x":1,"y":1,"z":1\n', 3, "not a JSON object on one line"),
        (b"[1,2,3,4]\n", 1, "must be a JSON object"),
        (b'{"timestamp":1,"x":1,"y":1,"z":1},{"timestamp":1,"x":1,"y":1,"z":1}\n', 1, "JSON"),
        (b'{"timestamp":1,"x":1,"y":1,"z":1e999}\n', 1, "field 'z' is not finite"),
    ],
)
def test_jsonl_errors_name_the_line(data: bytes, line: int, detail: str) -> None:
    with pytest.raises(EventFileError) as info:
        parse_events(data, "jsonl", name="ev.jsonl")
    assert info.value.line == line
    assert detail in str(info.value)


def test_jsonl_error_never_echoes_values_or_unknown_keys() -> None:
    data = f'{{"timestamp":1,"x":"{SECRET_VALUE}","y":1,"z":1,"k{SECRET_VALUE}":1}}\n'.encode()
    with pytest.raises(EventFileError) as info:
        parse_events(data, "jsonl", name="ev.jsonl")
    assert SECRET_VALUE not in str(info.value)


def test_detect_format_and_missing_file(tmp_path: Path) -> None:
    assert detect_format("a.CSV") == "csv"
    assert detect_format("a.ndjson") == "jsonl"
    assert detect_format("a.txt", "jsonl") == "jsonl"
    with pytest.raises(EventFileError, match="use --format"):
        detect_format("a.txt")
    with pytest.raises(EventFileError, match="no such file"):
        load_events(tmp_path / "missing.csv")
    with pytest.raises(EventFileError, match="is a directory"):
        load_events(tmp_path, "csv")


def test_csv_and_jsonl_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(100, 4)) * 1e3
    csv = tmp_path / "e.csv"
    csv.write_text("timestamp,x,y,z\n" + "\n".join(",".join(map(repr, r)) for r in rows.tolist()))
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(
        "\n".join(
            f'{{"timestamp":{t!r},"x":{x!r},"y":{y!r},"z":{z!r}}}' for t, x, y, z in rows.tolist()
        )
    )
    a, b = load_events(csv), load_events(jsonl)
    assert a.timestamps.tobytes() == b.timestamps.tobytes() == rows[:, 0].tobytes()
    assert a.points.tobytes() == b.points.tobytes()
