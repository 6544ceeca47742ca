"""The ``text/event-stream`` parser: WHATWG framing, limits, and chunk boundaries anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labric._core.sse import ServerSentEvent, SSEDecoder, SSEFormatError


def parse(*chunks: bytes, **options: int) -> tuple[list[ServerSentEvent], bool]:
    decoder = SSEDecoder(**options)  # type: ignore[arg-type]
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events, decoder.close()


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending_frames_events(end: bytes) -> None:
    body = b"data: one" + end + end + b"data: two" + end + end
    events, dropped = parse(body)
    assert [e.data for e in events] == ["one", "two"]
    assert not dropped


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb"]


def test_data_lines_join_with_newlines_and_one_leading_space_is_dropped() -> None:
    events, _ = parse(b"data:x\ndata:  y\ndata\ndata: \n\n")
    assert events == [ServerSentEvent(data="x\n y\n\n")]


def test_fields_event_id_retry_and_unknown() -> None:
    body = b"event: tick\nid: 7\nretry: 1500\nfoo: bar\ndata: {}\n\nretry: soon\ndata: 2\n\n"
    first, second = parse(body)[0]
    assert first == ServerSentEvent(data="{}", event="tick", id="7", retry=1500)
    # The id and retry carry over; a retry that is not all digits is ignored; the name resets.
    assert second == ServerSentEvent(data="2", event="message", id="7", retry=1500)


def test_an_id_holding_nul_is_ignored() -> None:
    (event,) = parse(b"id: 1\n\nid: a\x00b\ndata: x\n\n")[0]
    assert event.id == "1"


def test_comments_are_keepalives_and_events_without_data_are_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\n:\n\nevent: empty\n\n") == []
    assert decoder.comments == 2
    assert decoder.feed(b"data: after\n\n") == [ServerSentEvent(data="after")]


def test_an_unfinished_event_at_the_end_is_dropped_and_reported() -> None:
    events, dropped = parse(b"data: whole\n\ndata: half")
    assert [e.data for e in events] == ["whole"]
    assert dropped
    assert parse(b"data: half\n")[1]  # a line, but no blank line to dispatch it


def test_a_leading_bom_is_dropped_and_multibyte_characters_survive_any_split() -> None:
    body = "\ufeffdata: é—ü\n\n".encode()
    for cut in range(len(body)):
        events, _ = parse(body[:cut], body[cut:])
        assert [e.data for e in events] == ["é—ü"], cut


def test_the_charset_is_honoured() -> None:
    events, _ = parse("data: café\n\n".encode("latin-1"), encoding="latin-1")  # type: ignore[arg-type]
    assert events[0].data == "café"
    with pytest.raises(SSEFormatError, match="charset"):
        SSEDecoder("no-such-charset")


def test_a_line_over_the_cap_is_refused_as_soon_as_it_passes_it() -> None:
    decoder = SSEDecoder(max_line=100)
    decoder.feed(b"data: " + b"x" * 90)
    with pytest.raises(SSEFormatError, match="longer than 100"):
        decoder.feed(b"x" * 20)  # no newline yet: refused before the line is ever complete


def test_the_default_line_cap_is_one_mebibyte() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: " + b"x" * (1024 * 1024 - 6) + b"\n")  # exactly the cap: accepted
    with pytest.raises(SSEFormatError, match="1048576"):
        decoder.feed(b"x" * (1024 * 1024 + 1))


def test_an_event_over_its_cap_is_refused() -> None:
    decoder = SSEDecoder(max_line=100, max_event=250)
    with pytest.raises(SSEFormatError, match="event's data"):
        decoder.feed(b"data: " + b"y" * 90 + b"\n" * 1 + (b"data: " + b"y" * 90 + b"\n") * 2)


# -- chunk boundaries ----------------------------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
)
_LINE = st.one_of(
    st.builds(lambda v: f"data: {v}", _TEXT),
    st.builds(lambda v: f"data:{v}", _TEXT),
    st.builds(lambda v: f"event: {v}", _TEXT),
    st.builds(lambda v: f"id: {v}", _TEXT),
    st.builds(lambda v: f": {v}", _TEXT),
    st.just("retry: 250"),
    st.just(""),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_LINE, max_size=30),
    endings=st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=30, max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_chunking_gives_the_events_of_the_whole_body(
    lines: list[str], endings: list[str], cuts: list[int]
) -> None:
    text = "".join(line + endings[i] for i, line in enumerate(lines))
    body = text.encode()
    whole, whole_dropped = parse(body)
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    # The body parsed in one piece is the reference: a CR at the end of one chunk and an LF at
    # the start of the next must still be one line end, a character split in two still one.
    split, split_dropped = parse(*pieces)
    assert split == whole
    assert split_dropped == whole_dropped
