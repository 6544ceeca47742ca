"""Incremental ``text/event-stream`` parsing (the WHATWG "server-sent events" framing).

:class:`SSEDecoder` is fed the body's bytes as they arrive, in chunks cut anywhere, and returns
the events each chunk completes. It holds at most one partial line and one partial event, so
memory stays bounded however long the stream runs:

* Bytes are decoded with the response's charset (UTF-8 unless the ``Content-Type`` names another)
  by an incremental decoder, so a character split across chunks is kept whole; a leading BOM is
  dropped.
* Lines end at CR, LF or CRLF. A CR that ends one chunk and an LF that starts the next are one
  line end, not two.
* ``field: value`` lines: one space after the colon is dropped. ``data`` lines accumulate (joined
  with ``\\n``); ``event`` names the event (``message`` when unset); ``id`` sets the last event id
  (ignored when it holds NUL); ``retry`` sets the reconnection time when it is all ASCII digits.
  Other field names are ignored, as the specification says.
* A line starting with ``:`` is a comment. Servers send them as keep-alives; they are counted
  (:attr:`SSEDecoder.comments`) and otherwise ignored.
* An empty line dispatches the event being built, unless it has no data (then it is dropped, as
  the specification says). An event still being built when the stream ends is incomplete and is
  dropped too (:meth:`SSEDecoder.close` says whether one was).

Limits: a line longer than ``max_line`` characters (1 MiB by default, as the official client's)
and an event whose data grows past ``max_event`` characters raise :class:`SSEFormatError` the
moment the limit is crossed, before more is buffered.

Nothing here does I/O or knows about HTTP; :mod:`labric._core.eventstream` drives it.
"""

from __future__ import annotations

import codecs
import re

import attrs

__all__ = [
    "DEFAULT_MAX_EVENT",
    "DEFAULT_MAX_LINE",
    "SSEDecoder",
    "SSEFormatError",
    "ServerSentEvent",
]

#: The longest line accepted, in characters (the official client's limit: 1 MiB).
DEFAULT_MAX_LINE = 1024 * 1024
#: The most data one event may carry, in characters.
DEFAULT_MAX_EVENT = 64 * 1024 * 1024

_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEFormatError(ValueError):
    """The stream broke a limit or could not be decoded; the message says which."""


@attrs.frozen
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        data: The event's data lines, joined with ``\\n``.
        event: The event's name (``message`` when the server named none).
        id: The last event id seen so far in the stream (``None`` if none was ever sent).
        retry: The reconnection time in milliseconds the server last asked for, if any.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns a ``text/event-stream`` body into events, chunk by chunk (see the module docstring).

    Args:
        encoding: The body's charset.
        max_line: The longest line accepted, in characters.
        max_event: The most data one event may carry, in characters.

    Raises:
        SSEFormatError: ``encoding`` is not a known charset.
    """

    def __init__(
        self,
        encoding: str = "utf-8",
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_event: int = DEFAULT_MAX_EVENT,
    ) -> None:
        try:
            self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        except LookupError:
            raise SSEFormatError(
                f"unknown charset {encoding!r} in the stream's Content-Type"
            ) from None
        self._max_line = max_line
        self._max_event = max_event
        self._line: list[str] = []  # the current line's pieces, not yet ended
        self._line_size = 0
        self._after_cr = False  # the last text ended in CR: a leading LF is its CRLF's second half
        self._started = False
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        #: Comment lines seen (keep-alives).
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the body; return the events they complete, in order.

        Raises:
            SSEFormatError: a line or an event went over its limit.
        """
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> bool:
        """End the stream. Returns whether an incomplete event (or line) was dropped.

        Raises:
            SSEFormatError: a line or an event went over its limit.
        """
        events = self._feed_text(self._decoder.decode(b"", final=True))
        pending = bool(events or self._line or self._data or self._event)
        self._line, self._line_size, self._data, self._data_size = [], 0, [], 0
        return pending

    # -- lines -------------------------------------------------------------------------------

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._after_cr and text:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[ServerSentEvent] = []
        start = 0
        for end in _LINE_END.finditer(text):
            self._extend_line(text, start, end.start())
            line = "".join(self._line)
            self._line, self._line_size = [], 0
            event = self._line_ended(line)
            if event is not None:
                events.append(event)
            start = end.end()
        if text.endswith("\r"):
            self._after_cr = True
        self._extend_line(text, start, len(text))
        return events

    def _extend_line(self, text: str, start: int, end: int) -> None:
        if end <= start:
            return
        self._line_size += end - start
        if self._line_size > self._max_line:
            raise SSEFormatError(
                f"an event-stream line is longer than {self._max_line} characters; the stream "
                "is refused rather than buffered without bound"
            )
        self._line.append(text[start:end])

    def _line_ended(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_event:
                raise SSEFormatError(
                    f"an event's data is longer than {self._max_event} characters; the stream "
                    "is refused rather than buffered without bound"
                )
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._data_size, self._event = [], 0, ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data), event=event or "message", id=self._last_id, retry=self._retry
        )
