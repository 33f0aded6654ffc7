"""Docker log frames → lines, whatever the chunking: split headers, split payloads, split characters."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from xtm_composer.orchestrators.docker_logs import (
    STDERR,
    STDOUT,
    LogDecoder,
    decode_log_lines,
    multiplexed_from_content_type,
)


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


STREAM = frame(STDOUT, b"first line\n") + frame(STDERR, b"an error\n") + frame(STDOUT, b"second line\n")
EXPECTED = ["first line", "an error", "second line"]


def test_frames_split_at_every_byte_give_the_same_lines():
    for cut in range(1, len(STREAM)):
        assert decode_log_lines(chunked(STREAM, [cut])) == EXPECTED, cut


def test_one_byte_chunks_give_the_same_lines():
    assert decode_log_lines([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_a_character_split_across_two_frames_is_decoded_whole():
    text = "威胁情报 ✓\n".encode()
    stream = frame(STDOUT, text[:2]) + frame(STDOUT, text[2:])
    assert decode_log_lines([stream]) == ["威胁情报 ✓"]


def test_a_line_split_across_frames_is_joined_and_streams_do_not_mix():
    stream = frame(STDOUT, b"par") + frame(STDERR, b"err\n") + frame(STDOUT, b"tial\n")
    assert decode_log_lines([stream]) == ["err", "partial"]


def test_tty_output_is_passed_through_as_text():
    raw = "plain tty line\r\nsecond ✓\n".encode()
    assert decode_log_lines(chunked(raw, [3, 9])) == ["plain tty line", "second ✓"]


def test_content_type_decides_when_the_engine_states_it():
    looks_like_a_header = b"\x01\x00\x00\x00 raw bytes\n"
    raw = multiplexed_from_content_type("application/vnd.docker.raw-stream")
    assert decode_log_lines([looks_like_a_header], multiplexed=raw) == ["\x01\x00\x00\x00 raw bytes"]
    assert multiplexed_from_content_type("application/vnd.docker.multiplexed-stream; charset=x") is True
    assert multiplexed_from_content_type("text/plain") is None


def test_a_frame_cut_short_by_the_sender_keeps_what_arrived():
    stream = frame(STDOUT, b"whole\n") + frame(STDOUT, b"cut short here\n")[:-6]
    assert decode_log_lines([stream]) == ["whole", "cut short"]


def test_a_last_line_without_newline_is_kept_and_an_empty_answer_gives_nothing():
    assert decode_log_lines([frame(STDOUT, b"a\nno newline")]) == ["a", "no newline"]
    assert decode_log_lines([]) == [] and decode_log_lines([b""]) == []


def test_lines_come_out_as_soon_as_their_frame_is_complete():
    decoder = LogDecoder()
    assert decoder.feed(STREAM[:5]) == []
    assert decoder.feed(STREAM[5:19]) == ["first line"]


lines_strategy = st.lists(
    st.tuples(
        st.sampled_from([STDOUT, STDERR]),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")),
    ),
    max_size=12,
)


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12))
def test_any_frames_in_any_chunking_give_back_every_line(lines, cuts):
    stream = b"".join(frame(stream_id, (text + "\n").encode()) for stream_id, text in lines)
    assert decode_log_lines(chunked(stream, cuts), multiplexed=True) == [text for _, text in lines]
