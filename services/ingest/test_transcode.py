from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from services.ingest import hls
from services.ingest.conftest import SAMPLE_CLIPS
from services.ingest.ladder import Rendition, plan_ladder
from services.ingest.probe import probe_media
from services.ingest.sample_clips import MARKER_FRACTION, expected_frame_count
from services.ingest.transcode import Accelerator, HlsOutput, TranscodeSettings, transcode_to_hls

LADDER_CLIPS = ["portrait", "landscape", "rotated", "upside_down", "no_audio", "variable_frame_rate", "odd_size"]


@pytest.fixture(scope="module")
def ladders(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, HlsOutput]]:
    """Each sample clip transcoded once for the whole module."""
    done = {}
    for name in LADDER_CLIPS:
        probe = probe_media(clips[name])
        output_dir = tmp_path_factory.mktemp(f"hls-{name}")
        done[name] = (output_dir, transcode_to_hls(clips[name], output_dir, probe, plan_ladder(*probe.display_size)))
    return done


def decode_rendition(playlist: Path) -> tuple[list[av.VideoFrame], float, bool]:
    """Every video frame through FFmpeg's own HLS demuxer, the span they cover, and audio presence."""
    with av.open(str(playlist)) as container:
        has_audio = bool(container.streams.audio)
        frames = [frame for frame in container.decode(container.streams.video[0])]
    times = [frame.time or 0.0 for frame in frames]
    step = (times[-1] - times[0]) / (len(times) - 1)
    return frames, times[-1] - times[0] + step, has_audio


@pytest.mark.parametrize("name", LADDER_CLIPS)
def test_every_rendition_decodes_back_with_all_frames_at_its_size_and_length(
    ladders: dict[str, tuple[Path, HlsOutput]], clips: dict[str, Path], name: str
) -> None:
    output_dir, output = ladders[name]
    probe = probe_media(clips[name])
    expected_sizes = [(r.width, r.height) for r in plan_ladder(*probe.display_size)]
    assert [(r.rendition.width, r.rendition.height) for r in output.renditions] == expected_sizes
    for rendition in output.renditions:
        frames, seconds, has_audio = decode_rendition(output_dir / rendition.playlist)
        assert len(frames) == expected_frame_count(SAMPLE_CLIPS[name]) == rendition.frame_count
        assert {(f.width, f.height) for f in frames} == {(rendition.rendition.width, rendition.rendition.height)}
        assert seconds == pytest.approx(probe.duration_s, abs=1.5 / probe.average_frame_rate)
        assert has_audio == probe.has_audio
        assert all(frame.rotation == 0 for frame in frames[:1])


def test_segments_are_two_seconds_and_start_on_keyframes_in_every_rung(
    ladders: dict[str, tuple[Path, HlsOutput]]
) -> None:
    for name in ["portrait", "variable_frame_rate"]:
        output_dir, output = ladders[name]
        for rendition in output.renditions:
            segments = hls.parse_media_playlist((output_dir / rendition.playlist).read_text())
            assert [round(s.duration_s) for s in segments[:-1]] == [2] * (len(segments) - 1)
            for segment in rendition.segments:
                with av.open(str(output_dir / segment)) as container:
                    first = next(container.decode(video=0))
                    assert first.key_frame, f"{segment} does not start with a keyframe"


def test_master_playlist_lists_every_rung_with_measured_bandwidth_and_codecs(
    ladders: dict[str, tuple[Path, HlsOutput]]
) -> None:
    output_dir, output = ladders["portrait"]
    master = (output_dir / output.master_playlist).read_text()
    assert master.startswith("#EXTM3U\n")
    for rendition in output.renditions:
        assert (f"RESOLUTION={rendition.rendition.width}x{rendition.rendition.height},"
                f'CODECS="{rendition.codecs}"') in master
        assert f"BANDWIDTH={rendition.peak_bandwidth}," in master
        assert rendition.codecs.startswith("avc1.64") and rendition.codecs.endswith(",mp4a.40.2")
        segments = hls.parse_media_playlist((output_dir / rendition.playlist).read_text())
        assert rendition.segments == tuple(f"{rendition.rendition.name}/{s.uri}" for s in segments)
        assert rendition.peak_bandwidth >= rendition.average_bandwidth > 0
    assert "mp4a" not in (ladders["no_audio"][0] / "master.m3u8").read_text()


@pytest.mark.parametrize("name", ["rotated", "upside_down"])
def test_rotation_is_applied_to_the_pixels_as_a_player_would_show_it(
    ladders: dict[str, tuple[Path, HlsOutput]], name: str
) -> None:
    output_dir, output = ladders[name]
    top = output.renditions[0]
    frames, _, _ = decode_rendition(output_dir / top.playlist)
    luma = frames[0].to_ndarray(format="gray").astype(float)
    spec = SAMPLE_CLIPS[name]
    coded = np.zeros((spec.height, spec.width))
    coded[: spec.height // MARKER_FRACTION, : spec.width // MARKER_FRACTION] = 1
    expected = np.rot90(coded, k=spec.rotation // 90)
    assert expected.shape == luma.shape
    marker, background = luma[expected == 1].mean(), luma[expected == 0].mean()
    assert marker > 200 and background < 150


def test_poster_and_thumbnails_are_jpegs_of_the_display_shape(ladders: dict[str, tuple[Path, HlsOutput]]) -> None:
    output_dir, output = ladders["rotated"]
    assert output.poster == "poster.jpg"
    assert len(output.thumbnails) == 2  # 3.2 s at one every 2 s
    for still, size in [(output.poster, (96, 160)), (output.thumbnails[0], (96, 160))]:
        data = (output_dir / still).read_bytes()
        assert data[:2] == b"\xff\xd8"
        with av.open(str(output_dir / still)) as container:
            picture = next(container.decode(video=0))
            assert (picture.width, picture.height) == size
    assert sorted(output.files()) == sorted(
        str(path.relative_to(output_dir)) for path in output_dir.rglob("*") if path.is_file()
    )


def test_progress_rises_to_one(clips: dict[str, Path], tmp_path: Path) -> None:
    reports: list[float] = []
    probe = probe_media(clips["no_audio"])
    transcode_to_hls(clips["no_audio"], tmp_path, probe, plan_ladder(*probe.display_size), on_progress=reports.append)
    assert reports == sorted(reports) and reports[-1] == 1.0 and len(reports) > 5


def test_cuda_request_without_a_gpu_falls_back_to_libx264(clips: dict[str, Path], tmp_path: Path) -> None:
    probe = probe_media(clips["no_audio"])
    output = transcode_to_hls(clips["no_audio"], tmp_path, probe, plan_ladder(*probe.display_size),
                              TranscodeSettings(accelerator=Accelerator.CUDA))
    assert output.video_encoder == "libx264"  # this machine has no NVIDIA GPU
    frames, _, _ = decode_rendition(tmp_path / output.renditions[0].playlist)
    assert len(frames) == probe.frame_count


def test_an_encoder_failure_stops_the_whole_ladder_and_is_raised(clips: dict[str, Path], tmp_path: Path) -> None:
    probe = probe_media(clips["portrait"])
    impossible = Rendition(width=101, height=100, video_bitrate=100_000, max_bitrate=110_000, buffer_size=200_000)
    with pytest.raises(av.FFmpegError):  # x264 refuses odd sizes in 4:2:0
        transcode_to_hls(clips["portrait"], tmp_path, probe, [*plan_ladder(*probe.display_size), impossible])
