"""Docker log streams → text lines, without I/O.

The Engine API sends logs of a container without a TTY (and of a Swarm service) as frames: an
8-byte header — stream (0 stdin, 1 stdout, 2 stderr, 3 an error of the engine itself), three zero
bytes, payload length as a big-endian u32 — then the payload. A container with a TTY sends its
output raw. Frames arrive in arbitrary HTTP chunks: a header or payload may be split anywhere, and
a UTF-8 character or a line may be split across frames. `LogDecoder` is fed chunks in order and
keeps whatever is incomplete.

When the answer does not say which format it is (Content-Type is only explicit from API 1.42),
the first bytes decide: a frame header starts with 0–3 and three zero bytes, which no text does.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER_SIZE = 8
MULTIPLEXED_CONTENT_TYPE = "application/vnd.docker.multiplexed-stream"
RAW_CONTENT_TYPE = "application/vnd.docker.raw-stream"


@dataclass(frozen=True, slots=True)
class Frame:
    stream: int
    data: bytes


def looks_multiplexed(head: bytes) -> bool:
    """Whether 8 leading bytes are a frame header."""
    return len(head) >= HEADER_SIZE and head[0] in (STDIN, STDOUT, STDERR, SYSTEMERR) and head[1:4] == b"\x00\x00\x00"


def multiplexed_from_content_type(content_type: str | None) -> bool | None:
    """True/False when the Content-Type says so (API ≥ 1.42), None when it does not."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == MULTIPLEXED_CONTENT_TYPE:
        return True
    if kind == RAW_CONTENT_TYPE:
        return False
    return None


class FrameDecoder:
    """Incremental frame decoder; raw (TTY) streams come out as stdout frames."""

    def __init__(self, *, multiplexed: bool | None = None) -> None:
        self._multiplexed = multiplexed
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        if self._multiplexed is None:
            if len(self._buffer) < HEADER_SIZE:
                return []
            self._multiplexed = looks_multiplexed(bytes(self._buffer[:HEADER_SIZE]))
        if not self._multiplexed:
            return self._take_raw()
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER_SIZE:
            stream, size = struct.unpack(">BxxxL", self._buffer[:HEADER_SIZE])
            if len(self._buffer) < HEADER_SIZE + size:
                break
            frames.append(Frame(stream, bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + size])))
            del self._buffer[: HEADER_SIZE + size]
        return frames

    def close(self) -> list[Frame]:
        """The end of the stream: what is left (a short raw stream, or a frame cut by the sender)."""
        if not self._buffer:
            return []
        if self._multiplexed is None:
            self._multiplexed = looks_multiplexed(bytes(self._buffer[:HEADER_SIZE]))
        if not self._multiplexed:
            return self._take_raw()
        if len(self._buffer) <= HEADER_SIZE:
            self._buffer.clear()  # a lone header (or part of one) carries no text
            return []
        stream = self._buffer[0]
        data = bytes(self._buffer[HEADER_SIZE:])  # payload cut short: keep what arrived
        self._buffer.clear()
        return [Frame(stream, data)]

    def _take_raw(self) -> list[Frame]:
        data = bytes(self._buffer)
        self._buffer.clear()
        return [Frame(STDOUT, data)] if data else []


class LogDecoder:
    """Chunks in, complete lines out (stdout and stderr kept apart until each line ends)."""

    def __init__(self, *, multiplexed: bool | None = None) -> None:
        self._frames = FrameDecoder(multiplexed=multiplexed)
        self._partial: dict[int, bytearray] = {}

    def feed(self, chunk: bytes) -> list[str]:
        return self._lines(self._frames.feed(chunk))

    def close(self) -> list[str]:
        lines = self._lines(self._frames.close())
        for stream in sorted(self._partial):
            rest = self._partial[stream]
            if rest:
                lines.append(_decode(rest))
        self._partial.clear()
        return lines

    def _lines(self, frames: Iterable[Frame]) -> list[str]:
        lines: list[str] = []
        for frame in frames:
            pending = self._partial.setdefault(frame.stream, bytearray())
            pending += frame.data
            *complete, rest = pending.split(b"\n")
            lines.extend(_decode(line) for line in complete)
            self._partial[frame.stream] = bytearray(rest)
        return lines


def _decode(line: bytes | bytearray) -> str:
    return bytes(line).decode("utf-8", errors="replace").rstrip("\r")


def decode_log_lines(chunks: Iterable[bytes], *, multiplexed: bool | None = None) -> list[str]:
    """All lines of a complete answer, in order."""
    decoder = LogDecoder(multiplexed=multiplexed)
    lines: list[str] = []
    for chunk in chunks:
        lines.extend(decoder.feed(chunk))
    lines.extend(decoder.close())
    return lines


def last_lines(lines: Iterable[str], tail: int) -> list[str]:
    """The last `tail` non-blank lines, oldest first."""
    kept = [line for line in lines if line.strip()]
    return kept[-tail:] if tail > 0 else []


_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z ?")


def sorted_by_timestamp(lines: Iterable[str]) -> list[str]:
    """Lines asked with `timestamps=1`, in time order, timestamps removed.

    Swarm service logs interleave the logs of a service's tasks (the current one and the ones it
    replaced) in no guaranteed order, and the engine (always in UTC) trims trailing zeros of the
    fraction, so the prefix is parsed rather than compared as text. Lines without a timestamp (continuations) keep
    the time of the line before them; the sort is stable.
    """
    keyed: list[tuple[tuple[str, str], int, str]] = []
    key = ("", "")
    for index, line in enumerate(lines):
        match = _TIMESTAMP.match(line)
        if match:
            seconds, fraction = match.groups()
            key = (seconds, (fraction or "").ljust(9, "0"))
            line = line[match.end() :]
        keyed.append((key, index, line))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [line for _, _, line in keyed]
