"""The pure rules behind jobs: globs, trigger conditions, cron, parameters, logs, JobContext."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labric.errors import ConfigurationError
from labric.job import JobContext, JobFile
from labric.server.jobs.cron import CronError, CronSchedule
from labric.server.jobs.params import resolve_parameters, validate_definitions
from labric.server.jobs.runner import LogBuffer
from labric.server.jobs.triggers import FileFacts, file_matches, glob_matches, validate_conditions

# -- glob ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.csv", "a.csv", True),
        ("*.csv", "runs/2024/a.csv", True),  # * spans separators
        ("*.csv", "runs\\2024\\a.csv", True),  # either slash style in the path
        ("*.csv", "a.CSV", False),  # case-sensitive
        ("*.csv", "a.csv.bak", False),  # the whole path or suffix must match
        ("plate?.csv", "plate1.csv", True),
        ("plate?.csv", "data/plate1.csv", True),  # a suffix after a separator
        ("plate?.csv", "plate12.csv", False),  # ? is one character
        ("plate?.csv", "myplate1.csv", False),  # suffixes start after a separator only
        ("runs/*.csv", "runs/a.csv", True),
        ("runs/*.csv", "lab/runs/a.csv", True),
        ("runs/*.csv", "xruns/a.csv", False),
        ("runs\\*.csv", "lab/runs/a.csv", True),  # either slash style in the pattern
        ("a.csv", "dir/a.csv", True),
        ("[ab].csv", "a.csv", False),  # only * and ? are special
        ("[ab].csv", "[ab].csv", True),
        ("*", "anything/at/all", True),
    ],
)
def test_glob(pattern: str, path: str, expected: bool) -> None:
    assert glob_matches(pattern, path) is expected


# -- file_uploaded conditions --------------------------------------------------------------


def facts(path: str = "runs/a.csv", *, kb: int = 10, source: str = "instrument") -> FileFacts:
    return FileFacts(
        original_path=path,
        file_name=path.replace("\\", "/").rsplit("/", 1)[-1],
        source_type=source,
        instrument_id="inst-1",
        size_kilobytes=kb,
    )


def test_extensions_and_files_without_one() -> None:
    wanted = {"file_extensions": [".csv", "TXT"]}
    assert file_matches(wanted, None, facts("a.csv"))
    assert file_matches(wanted, None, facts("a.CSV"))  # extensions compare case-insensitively
    assert file_matches(wanted, None, facts("notes.txt"))
    assert not file_matches(wanted, None, facts("image.png"))
    assert file_matches(wanted, None, facts("README"))  # no extension: always passes
    assert file_matches(wanted, None, facts(".bashrc"))


def test_sizes_are_inclusive_and_other_conditions() -> None:
    bounds = {"min_size_kb": 10, "max_size_kb": 20}
    assert [file_matches(bounds, None, facts(kb=kb)) for kb in (9, 10, 20, 21)] == [
        False,
        True,
        True,
        False,
    ]
    assert file_matches({"source_type": "instrument"}, None, facts())
    assert not file_matches({"source_type": "job"}, None, facts())
    assert file_matches({}, "inst-1", facts())
    assert not file_matches({}, "inst-2", facts())
    both = {"file_name_pattern": "*.csv", "file_extensions": [".csv"]}
    assert file_matches(both, "inst-1", facts("a.csv"))
    assert not file_matches(both, "inst-1", facts("a.txt"))


def test_conditions_are_validated_per_category() -> None:
    ok, problems = validate_conditions("file_uploaded", {"file_name_pattern": "*.csv"})
    assert ok == {"file_name_pattern": "*.csv"}
    assert problems == []
    assert validate_conditions("file_uploaded", None) == (None, [])
    _, problems = validate_conditions(
        "file_uploaded", {"pattern": "*.csv", "min_size_kb": 5, "max_size_kb": 1}
    )
    assert [loc for loc, _ in problems] == [["pattern"], ["min_size_kb"]]
    _, problems = validate_conditions("job_completed", {"statuses": ["done"]})
    assert [loc for loc, _ in problems] == [["source_job_id"], ["statuses"]]
    _, problems = validate_conditions("schedule", {"cron": "61 * * * *", "timezone": "UTC"})
    assert problems == [(["cron"], "The minute field has 61, outside 0-59")]
    _, problems = validate_conditions("schedule", {"cron": "* * * * *", "timezone": "Mars/Base"})
    assert problems[0][0] == ["timezone"]
    _, problems = validate_conditions("schedule", {"cron": "0 0 30 2 *", "timezone": "UTC"})
    assert "never fires" in problems[0][1]


# -- cron ----------------------------------------------------------------------------------


def ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def local(when: float, tz: str) -> str:
    return datetime.fromtimestamp(when, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %a")


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("*/15 * * * *", "2025-03-03 10:07", "2025-03-03 10:15 Mon"),
        ("0 6 * * mon-fri", "2025-03-07 07:00", "2025-03-10 06:00 Mon"),  # Fri after 6 -> Mon
        ("30 2 1 jan,jul *", "2025-03-03 00:00", "2025-07-01 02:30 Tue"),
        ("0 0 13 * 5", "2025-06-01 00:00", "2025-06-06 00:00 Fri"),  # day-of-month OR Friday
        ("0 0 */10 * *", "2025-01-01 00:00", "2025-01-11 00:00 Sat"),  # starting from day 1
        ("5/20 9-10 * * 0,7", "2025-03-03 00:00", "2025-03-09 09:05 Sun"),
        ("0 0 29 2 *", "2025-01-01 00:00", "2028-02-29 00:00 Tue"),
    ],
)
def test_cron_next_after(cron: str, after: str, expected: str) -> None:
    schedule = CronSchedule.parse(cron, "UTC")
    assert local(schedule.next_after(ts(after)), "UTC") == expected


def test_cron_in_a_timezone_across_daylight_saving() -> None:
    berlin = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    # 2025-03-30 02:30 does not exist in Berlin (clocks jump 02:00 -> 03:00): skipped that day.
    first = berlin.next_after(ts("2025-03-29 12:00", "Europe/Berlin"))
    assert local(first, "Europe/Berlin") == "2025-03-31 02:30 Mon"
    # 2025-10-26 02:30 happens twice (clocks go back 03:00 -> 02:00): it fires once.
    once = berlin.next_after(ts("2025-10-26 00:00", "Europe/Berlin"))
    again = berlin.next_after(once)
    assert local(once, "Europe/Berlin") == "2025-10-26 02:30 Sun"
    assert local(again, "Europe/Berlin") == "2025-10-27 02:30 Mon"
    hourly = CronSchedule.parse("0 9 * * *", "America/New_York")
    fired = hourly.next_after(ts("2025-07-01 00:00"))
    assert datetime.fromtimestamp(fired, UTC).hour == 13  # 09:00 EDT


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("* * * *", "five fields"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards range"),
        ("* * * foo *", "not a number or a name"),
        ("* 24 * * *", "outside 0-23"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_cron_errors(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronSchedule.parse(cron, "UTC")


field = st.one_of(st.just("*"), st.integers(0, 59).map(str), st.just("*/7"))


@settings(max_examples=60, deadline=None)
@given(
    minute=field,
    hour=st.one_of(st.just("*"), st.integers(0, 23).map(str)),
    weekday=st.one_of(st.just("*"), st.integers(0, 7).map(str)),
    after=st.floats(1.6e9, 2.0e9),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/Los_Angeles"]),
)
def test_cron_next_is_later_and_matches(
    minute: str, hour: str, weekday: str, after: float, tz: str
) -> None:
    schedule = CronSchedule.parse(f"{minute} {hour} * * {weekday}", tz)
    when = schedule.next_after(after)
    assert when > after
    wall = datetime.fromtimestamp(when, ZoneInfo(tz))
    assert wall.minute in schedule.minutes
    assert wall.hour in schedule.hours
    assert wall.isoweekday() % 7 in schedule.weekdays
    assert wall.second == 0


# -- parameters ----------------------------------------------------------------------------


def test_parameter_definitions_are_normalised_and_checked() -> None:
    defs, problems = validate_definitions(
        [
            {"widget_type": "slider", "parameter_name": "gain", "min": 0, "max": 10, "default": 5},
            {"widget_type": "text", "parameter_name": "label", "required": True},
        ]
    )
    assert problems == []
    assert defs[0]["label"] is None  # every field present
    assert len(defs[0]) == 11
    _, problems = validate_definitions(
        [
            {"widget_type": "knob", "parameter_name": "x"},
            {"widget_type": "text", "parameter_name": "y", "colour": "red"},
            {"widget_type": "slider", "parameter_name": "z", "max": 1, "default": 2},
            {"widget_type": "text", "parameter_name": "z"},
            "nope",
        ]
    )
    assert [loc for loc, _ in problems] == [
        [0, "widget_type"],
        [1, "colour"],
        [2, "default"],
        [3, "parameter_name"],
        [4],
    ]


def test_run_parameters_get_defaults_and_checks() -> None:
    defs, _ = validate_definitions(
        [
            {"widget_type": "slider", "parameter_name": "gain", "min": 0, "max": 10, "default": 5},
            {"widget_type": "text", "parameter_name": "label", "required": True},
            {"widget_type": "date", "parameter_name": "since"},
            {"widget_type": "region", "parameter_name": "roi"},
        ]
    )
    values, problems = resolve_parameters(defs, {"label": "A"}, manual=True)
    assert values == {"label": "A", "gain": 5}
    assert problems == []
    _, problems = resolve_parameters(defs, {}, manual=True)
    assert problems == [(["label"], "This parameter is required and has no default")]
    values, problems = resolve_parameters(defs, None, manual=False)  # trigger runs
    assert values == {"gain": 5}
    assert problems == []
    _, problems = resolve_parameters(
        defs,
        {"label": 1, "gain": 11, "since": "yesterday", "roi": {"x0": 0}, "other": 1},
        manual=True,
    )
    assert [loc for loc, _ in problems] == [["other"], ["gain"], ["label"], ["since"], ["roi"]]
    assert resolve_parameters(None, {"free": [1, 2]}, manual=True) == ({"free": [1, 2]}, [])


# -- logs ----------------------------------------------------------------------------------


def test_log_buffer_keeps_head_and_tail() -> None:
    small = LogBuffer(100)
    small.feed(b"hello\n")
    small.note("done")
    assert small.text() == ("hello\n[labric] done\n", False)
    capped = LogBuffer(20)
    capped.feed(b"A" * 10 + b"B" * 50 + b"C" * 10)
    text, truncated = capped.text()
    assert truncated
    assert text.startswith("A" * 10)
    assert text.endswith("C" * 10)
    assert "50 bytes of output left out" in text
    capped.note("time limit")  # the runner's last word always survives
    assert capped.text()[0].endswith("[labric] time limit\n")


# -- JobContext ----------------------------------------------------------------------------


def test_job_context_from_env(tmp_path: Path) -> None:
    env = {
        "LABRIC_JOB_EXECUTION_ID": "ex-1",
        "LABRIC_ORGANIZATION_ID": "org-1",
        "LABRIC_FILE_DIR": str(tmp_path),
        "LABRIC_FILE_COUNT": "2",
        "LABRIC_FILE_ID_0": "f0",
        "LABRIC_FILE_PATH_0": str(tmp_path / "a.csv"),
        "LABRIC_FILE_ID_1": "f1",
        "LABRIC_FILE_PATH_1": str(tmp_path / "b.csv"),
        "LABRIC_PARAMETERS": '{"gain": 5}',
        "LABRIC_JOB_ID": "job-1",
    }
    ctx = JobContext.from_env(env)
    assert ctx.execution_id == "ex-1"
    assert ctx.organization_id == "org-1"
    assert ctx.file_dir == tmp_path
    assert ctx.files == (
        JobFile(id="f0", path=tmp_path / "a.csv"),
        JobFile(id="f1", path=tmp_path / "b.csv"),
    )
    assert ctx.parameters == {"gain": 5}
    assert ctx.job_id == "job-1"
    bare = JobContext.from_env({**env, "LABRIC_FILE_COUNT": "0", "LABRIC_PARAMETERS": ""})
    assert bare.files == ()
    assert bare.parameters == {}


def test_job_context_outside_a_job_lists_what_is_missing() -> None:
    with pytest.raises(ConfigurationError) as caught:
        JobContext.from_env({})
    message = str(caught.value)
    assert "only works inside a Labric job" in message
    for name in (
        "LABRIC_JOB_EXECUTION_ID",
        "LABRIC_ORGANIZATION_ID",
        "LABRIC_FILE_DIR",
        "LABRIC_FILE_COUNT",
    ):
        assert f"{name} is not set" in message
    with pytest.raises(ConfigurationError) as caught:
        JobContext.from_env(
            {
                "LABRIC_JOB_EXECUTION_ID": "e",
                "LABRIC_ORGANIZATION_ID": "o",
                "LABRIC_FILE_DIR": "/x",
                "LABRIC_FILE_COUNT": "1",
                "LABRIC_PARAMETERS": "[1]",
            }
        )
    assert "LABRIC_FILE_ID_0 is not set" in str(caught.value)
    assert "LABRIC_FILE_PATH_0 is not set" in str(caught.value)
    assert "LABRIC_PARAMETERS is not a JSON object" in str(caught.value)
