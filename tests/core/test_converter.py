"""The converter: datetimes, open enums, strictness, readable errors, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labric import models
from labric._core.converter import converter, make_converter, structure, unstructure
from labric.errors import APIResponseValidationError
from labric.models import ExecutionStatus, FileInfo, OffPlatformExecution, OpenEnum, UploadURL


class Colour(OpenEnum):
    RED = "red"
    GREEN = "green"


@attrs.frozen(kw_only=True)
class Swatch:
    colour: Colour | str
    maybe: Colour | str | None = None
    seen_at: datetime | None = None


def flatten(exc: BaseException) -> str:
    """Every message in an exception group, nested groups included."""
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(flatten(e) for e in exc.exceptions)
    return str(exc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00+00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123456Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        (
            "2024-05-01T14:30:00+02:30",
            datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))),
        ),
        (
            "2024-05-01T07:00:00-05:00",
            datetime(2024, 5, 1, 7, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("2024-05-01T12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # naive is UTC
        (1714564800, datetime(2024, 5, 1, 12, tzinfo=UTC)),  # epoch seconds
    ],
)
def test_datetimes_structure(text: str | int, expected: datetime) -> None:
    parsed = structure({"file_id": "f", "file_created_at": text}, FileInfo).file_created_at
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2024, 5, 1, 12, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12), "2024-05-01T12:00:00Z"),  # naive is sent as UTC
        (
            datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))),
            "2024-05-01T14:30:00+02:30",
        ),
        (datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC), "2024-05-01T12:00:00.000005Z"),
    ],
)
def test_datetimes_unstructure(value: datetime, text: str) -> None:
    assert unstructure(FileInfo(file_id="f", file_created_at=value))["file_created_at"] == text
    back = structure({"file_id": "f", "file_created_at": text}, FileInfo)
    assert back.file_created_at == (value if value.tzinfo else value.replace(tzinfo=UTC))


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", True, [2024]])
def test_bad_datetimes_are_readable_errors(bad: object) -> None:
    with pytest.raises(APIResponseValidationError) as info:
        structure({"file_id": "f", "file_created_at": bad}, FileInfo, what="GET /v1/files/f")
    message = str(info.value)
    assert "GET /v1/files/f" in message
    assert "$.file_created_at" in message
    assert "datetime" in message


def test_open_enum_keeps_unknown_values() -> None:
    base = {"job_execution_id": "e", "job_id": "j", "job_name": "n"}
    known = structure({**base, "status": "running"}, OffPlatformExecution)
    assert known.status is ExecutionStatus.RUNNING
    unknown = structure({**base, "status": "paused-by-operator"}, OffPlatformExecution)
    assert unknown.status == "paused-by-operator"
    assert not isinstance(unknown.status, ExecutionStatus)
    assert structure({**base, "status": None}, OffPlatformExecution).status is None
    assert unstructure(known)["status"] == "running"
    assert unstructure(unknown)["status"] == "paused-by-operator"


def test_open_enum_required_and_optional() -> None:
    swatch = structure({"colour": "green", "maybe": "ultraviolet"}, Swatch)
    assert swatch == Swatch(colour=Colour.GREEN, maybe="ultraviolet")
    assert str(swatch.colour) == "green"
    assert unstructure(swatch) == {"colour": "green", "maybe": "ultraviolet", "seen_at": None}
    with pytest.raises(APIResponseValidationError, match=r"\$\.colour"):
        structure({"colour": None}, Swatch)
    with pytest.raises(APIResponseValidationError, match=r"\$\.colour"):
        structure({"colour": 7}, Swatch)


def test_the_suite_runs_strict() -> None:
    # tests/conftest.py sets LABRIC_STRICT_MODELS=1 before labric is imported.
    with pytest.raises(APIResponseValidationError, match=r"extra fields found \(surprise\)"):
        structure({"file_id": "f", "surprise": 1}, FileInfo)
    with pytest.raises(ExceptionGroup) as info:
        converter.structure({"file_id": "f", "surprise": 1}, FileInfo)
    assert "surprise" in flatten(info.value)


def test_strict_converter_rejects_unknown_fields_at_any_depth() -> None:
    strict = make_converter(strict=True)
    upload = {
        "file_id": "f",
        "upload_url": "https://s/x?sig=1",
        "expires_at": "2024-05-01T12:00:00Z",
        "parts": [{"number": 1, "offset": 0, "size": 5, "url": "https://s/1", "extra": True}],
    }
    with pytest.raises(ExceptionGroup) as info:
        strict.structure(upload, UploadURL)
    assert "UploadPart: extra" in flatten(info.value)


def test_lenient_converter_tolerates_unknown_fields() -> None:
    lenient = make_converter(strict=False)
    info = lenient.structure({"file_id": "f", "new_field": {"from": "a newer server"}}, FileInfo)
    assert info == FileInfo(file_id="f")
    upload = lenient.structure(
        {
            "file_id": "f",
            "upload_url": "https://s/x",
            "expires_at": "later",
            "parts": [{"number": 1, "offset": 0, "size": 5, "url": "https://s/1", "extra": 1}],
            "also_new": 1,
        },
        UploadURL,
    )
    assert upload.parts is not None
    assert upload.parts[0].number == 1


def test_validation_errors_are_readable() -> None:
    data = [{"file_id": "a", "size_bytes": "lots"}, {"size_bytes": 3}]
    with pytest.raises(APIResponseValidationError) as info:
        structure(data, list[FileInfo], what="GET /api/v1/files")
    message = str(info.value)
    assert message.startswith("Response from GET /api/v1/files does not fit list[FileInfo]:")
    assert "$[0].size_bytes" in message
    assert "expected int | None" in message
    assert "required field missing @ $[1].file_id" in message
    assert "Traceback" not in message
    assert "ClassValidationError" not in message
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("data", "cls", "expected"),
    [
        ("text", FileInfo, "expected a JSON object, got a string"),
        (None, FileInfo, "expected a JSON object, got null (an empty body)"),
        ([], FileInfo, "expected a JSON object, got an array"),
        ({"file_id": "f"}, list[FileInfo], "expected a JSON array, got an object"),
        (12, list[FileInfo], "expected a JSON array, got a number"),
    ],
)
def test_wrong_top_level_shape(data: object, cls: type, expected: str) -> None:
    with pytest.raises(
        APIResponseValidationError, match=expected.replace("(", r"\(").replace(")", r"\)")
    ):
        structure(data, cls)


def test_models_stay_free_of_serialization_code() -> None:
    for name in models.__all__:
        cls = getattr(models, name)
        if attrs.has(cls):
            assert not any(hasattr(cls, m) for m in ("to_dict", "from_dict", "to_json", "json"))


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=offsets | st.just(UTC),
)
maybe_text = st.none() | st.text(max_size=40)
maybe_int = st.none() | st.integers(min_value=0, max_value=2**53)


@given(
    st.builds(
        FileInfo,
        file_id=st.text(min_size=1, max_size=40),
        original_path=maybe_text,
        source_type=maybe_text,
        source_instrument_id=maybe_text,
        size_kilobytes=maybe_int,
        crc32c_hash=maybe_text,
        file_created_at=st.none() | aware,
        file_name=maybe_text,
        size_bytes=maybe_int,
        content_type=maybe_text,
        job_execution_id=maybe_text,
    )
)
def test_file_info_round_trip(info: FileInfo) -> None:
    wire = json.loads(json.dumps(unstructure(info)))
    back = structure(wire, FileInfo)
    assert back == info
    if info.file_created_at is not None:
        assert back.file_created_at is not None
        assert back.file_created_at.utcoffset() == info.file_created_at.utcoffset()
