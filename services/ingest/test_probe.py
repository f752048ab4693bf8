from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from services.ingest.conftest import SAMPLE_CLIPS
from services.ingest.probe import (
    MediaProbe,
    Orientation,
    ProbeLimits,
    describe_format,
    header_duration,
    normalize_rotation,
    probe_media,
)
from services.ingest.sample_clips import ClipSpec, expected_frame_count, header_first, write_clip


def test_portrait_clip_is_described_from_its_packets(clips: dict[str, Path]) -> None:
    probe = probe_media(clips["portrait"])
    assert probe.container == "mov,mp4,m4a,3gp,3g2,mj2"
    assert (probe.video_codec, probe.audio_codec) == ("h264", "aac")
    assert probe.duration_s == pytest.approx(3.5, abs=0.001)
    assert probe.frame_count == expected_frame_count(SAMPLE_CLIPS["portrait"])
    assert probe.average_frame_rate == pytest.approx(30.0)
    assert not probe.variable_frame_rate
    assert probe.orientation is Orientation.PORTRAIT and probe.display_size == (480, 854)


def test_landscape_clip_is_landscape(clips: dict[str, Path]) -> None:
    probe = probe_media(clips["landscape"])
    assert probe.orientation is Orientation.LANDSCAPE and probe.display_size == (256, 144)


def test_rotation_metadata_turns_the_display_size(clips: dict[str, Path]) -> None:
    rotated = probe_media(clips["rotated"])
    assert (rotated.coded_width, rotated.coded_height, rotated.rotation) == (160, 96, 90)
    assert rotated.display_size == (96, 160) and rotated.orientation is Orientation.PORTRAIT
    upside_down = probe_media(clips["upside_down"])
    assert upside_down.rotation == 180 and upside_down.display_size == (96, 64)


def test_clip_without_audio_is_accepted_and_says_so(clips: dict[str, Path]) -> None:
    probe = probe_media(clips["no_audio"])
    assert not probe.has_audio and probe.audio_codec == ""


def test_variable_frame_rate_is_detected(clips: dict[str, Path]) -> None:
    probe = probe_media(clips["variable_frame_rate"])
    assert probe.variable_frame_rate
    assert probe.frame_count == expected_frame_count(SAMPLE_CLIPS["variable_frame_rate"])
    assert probe.average_frame_rate == pytest.approx(30.0, rel=0.02)


def test_odd_dimensions_are_reported_not_rejected(clips: dict[str, Path]) -> None:
    probe = probe_media(clips["odd_size"])
    assert probe.odd_dimensions and (probe.coded_width, probe.coded_height) == (97, 161)


def test_probe_reads_from_a_file_object(clips: dict[str, Path]) -> None:
    assert probe_media(io.BytesIO(clips["portrait"].read_bytes())) == probe_media(clips["portrait"])


@pytest.mark.parametrize("clip,reason,advice", [
    ("too_short", "MEDIA_TOO_SHORT", "at least 3 s"),
    ("corrupt", "MEDIA_UNREADABLE", "Export it again"),
    ("text_renamed", "MEDIA_UNREADABLE", "Export it again"),
])
def test_unusable_uploads_are_rejected_with_a_reason_the_creator_can_act_on(
    clips: dict[str, Path], clip: str, reason: str, advice: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        probe_media(clips[clip])
    assert raised.value.reason == reason
    assert advice in raised.value.violations[0].description
    assert raised.value.violations[0].field == "media"


def test_too_long_clips_are_rejected(clips: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        probe_media(clips["portrait"], ProbeLimits(max_duration_s=2.0))
    assert raised.value.reason == "MEDIA_TOO_LONG"
    # Stopped early (3.5 s is past the limit while demuxing), and still naming the limit.
    assert "longer than the maximum of 2 seconds" in raised.value.violations[0].description


@pytest.fixture(scope="module")
def eleven_minutes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 11-minute clip, kept cheap: a tiny picture at one frame per second."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", ClipSpec(16, 16, 660, fps=1, audio=False))


def test_a_clip_over_ten_minutes_is_refused_naming_the_limit(eleven_minutes: Path) -> None:
    with pytest.raises(InvalidArgument) as raised:
        probe_media(eleven_minutes)
    assert raised.value.reason == "MEDIA_TOO_LONG" and raised.value.metadata["max_duration_s"] == "600"
    assert "longer than the maximum of 10 minutes" in raised.value.violations[0].description


def test_the_header_tells_the_length_from_the_first_bytes_when_it_comes_first(
    eleven_minutes: Path, tmp_path: Path
) -> None:
    streamable = header_first(eleven_minutes, tmp_path / "fast.mp4").read_bytes()
    duration = header_duration(streamable[:64 * 1024])
    assert duration == pytest.approx(660, abs=1.5)
    # Most cameras write the header after the media: its start says nothing about the length.
    assert header_duration(eleven_minutes.read_bytes()[:64 * 1024]) is None
    assert header_duration(b"Shopping list\n- milk\n" * 100) is None


def test_formats_we_do_not_accept_are_named_in_words_not_ffmpeg_names(tmp_path: Path) -> None:
    import av
    import numpy as np

    picture = tmp_path / "holiday.mp4"  # a PNG, whatever its name says
    with av.open(str(picture), "w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InvalidArgument) as raised:
        probe_media(picture)
    message = raised.value.violations[0].description
    assert raised.value.reason == "MEDIA_UNSUPPORTED_FORMAT" and raised.value.metadata["found"] == "png_pipe"
    assert message.startswith("This file is a PNG picture, not a video format we accept.")
    assert "png_pipe" not in message and "looks like" not in message
    assert describe_format("mpegts") == "an MPEG video (TS or PS)"
    assert describe_format("something_new") == "a kind of file we can't use as a video"


def test_oversized_frames_are_rejected(clips: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        probe_media(clips["portrait"], ProbeLimits(max_side=320))
    assert raised.value.reason == "MEDIA_RESOLUTION_UNSUPPORTED"


def test_audio_only_file_has_no_video(tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48_000, layout="mono")
        for start in range(0, 48_000 * 4, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48_000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InvalidArgument) as raised:
        probe_media(path)
    assert raised.value.reason == "MEDIA_NO_VIDEO"


def test_other_containers_are_refused_by_name(tmp_path: Path, clips: dict[str, Path]) -> None:
    import av

    path = tmp_path / "clip.ts"
    with av.open(str(clips["no_audio"])) as source, av.open(str(path), "w", format="mpegts") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = stream
                target.mux(packet)
    with pytest.raises(InvalidArgument) as raised:
        probe_media(path)
    assert raised.value.reason == "MEDIA_UNSUPPORTED_FORMAT" and raised.value.metadata["found"] == "mpegts"


@pytest.mark.parametrize("degrees,expected", [(0, 0), (90, 90), (-90, 270), (-180, 180), (180, 180), (89.6, 90)])
def test_rotation_snaps_to_quarter_turns(degrees: float, expected: int) -> None:
    assert normalize_rotation(degrees) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_never_crash_the_probe(clips: dict[str, Path], data: st.DataObject) -> None:
    original = clips["portrait"].read_bytes()
    damaged = bytearray(original[: data.draw(st.integers(0, len(original)), label="keep")])
    for _ in range(data.draw(st.integers(0, 20), label="flips")):
        if damaged:
            damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    try:
        assert isinstance(probe_media(io.BytesIO(bytes(damaged))), MediaProbe)
    except InvalidArgument as rejection:
        assert rejection.reason.startswith("MEDIA_")
