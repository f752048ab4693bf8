"""Transcode one source into an HLS ladder, thumbnails and a poster, with PyAV.

Shape of the work (BRIEF §5 measured why):

    demux + decode once ──(rotate if the display matrix says so)──┬─> rendition 1080x1920 ─> hls muxer
    (calling thread)                                               ├─> rendition  720x1280 ─> hls muxer
    audio: decode + AAC encode once, packets copied to every rung ├─> ...
                                                                   └─> stills: poster + thumbnails

Each rendition runs on its own thread with its own `VideoReformatter`, built once and
reused for every frame (rebuilding the scaler per frame cost 25%), and its own encoder;
PyAV releases the GIL inside swscale and the codecs, so the rungs run in parallel.
Keyframes are forced on the calling thread at every segment boundary (by time, so
variable frame rate works), which lines the segments of all rungs up exactly and makes
each segment start with an IDR frame.

With `Accelerator.CUDA` the decoder uses NVDEC and the renditions NVENC when the
machine has them; PyAV's bundled FFmpeg has no `scale_cuda`/`scale_npp`, so scaling
stays on the CPU. Without a usable GPU it falls back to libx264 and says so in
`HlsOutput.video_encoder`.
"""

from __future__ import annotations

import enum
import functools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.codec.hwaccel
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from libs.errors import InvalidArgument
from services.ingest import hls
from services.ingest.ladder import Rendition, Rung, fit_within, oriented_box
from services.ingest.probe import UPLOAD_ADVICE, MediaProbe

logger = logging.getLogger(__name__)

MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"
POSTER = "poster.jpg"
THUMBNAIL_DIRECTORY = "thumbnails"
_QUEUE_DEPTH = 8  # decoded frames in flight per consumer: enough to absorb jitter, little memory
_PUT_POLL_S = 0.2


class Accelerator(enum.StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class TranscodeSettings:
    segment_seconds: float = 2.0
    x264_preset: str = "veryfast"
    audio_bitrate: int = 128_000
    audio_sample_rate: int = 48_000
    thumbnail_interval_s: float = 2.0  # one per segment: enough for a scrubbing preview
    thumbnail_box: Rung = Rung(180, 320, 0)
    poster_at_s: float = 1.0
    jpeg_quantizer: int = 4  # MJPEG qscale: 2 is best, 31 worst
    accelerator: Accelerator = Accelerator.CPU


@dataclass(frozen=True)
class RenditionOutput:
    rendition: Rendition
    playlist: str  # relative to the output directory, e.g. "720x1280/index.m3u8"
    segments: tuple[str, ...]
    frame_count: int
    codecs: str
    peak_bandwidth: int
    average_bandwidth: int


@dataclass(frozen=True)
class HlsOutput:
    master_playlist: str
    renditions: tuple[RenditionOutput, ...]
    poster: str
    thumbnails: tuple[str, ...]
    video_encoder: str

    def files(self) -> list[str]:
        """Every file written, relative to the output directory, master playlist last."""
        media = [path for r in self.renditions for path in (*r.segments, r.playlist)]
        return [*media, self.poster, *self.thumbnails, self.master_playlist]


ProgressCallback = Callable[[float], None]


def transcode_to_hls(
    source: str | Path | BinaryIO,
    output_dir: Path,
    probe: MediaProbe,
    renditions: Sequence[Rendition],
    settings: TranscodeSettings = TranscodeSettings(),
    on_progress: ProgressCallback | None = None,
) -> HlsOutput:
    """Write the ladder under `output_dir` and describe it; `on_progress` gets 0.0..1.0."""
    if not renditions:
        raise ValueError("a ladder needs at least one rendition")
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder_name = video_encoder_for(settings.accelerator)
    hwaccel = _decoder_acceleration(settings.accelerator)
    opened = str(source) if isinstance(source, Path) else source
    with av.open(opened, mode="r", hwaccel=hwaccel) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if probe.has_audio and container.streams.audio else None
        audio_encoder = _AudioEncoder(settings) if audio is not None else None
        frame_rate = Fraction(probe.average_frame_rate).limit_denominator(1001)
        writers = [
            _RenditionWriter(rendition, output_dir, encoder_name, _time_base(video), frame_rate,
                             settings, audio_encoder)
            for rendition in renditions
        ]
        stills = _StillsWriter(output_dir, probe, settings)
        fanout = _Fanout([*writers, stills])
        try:
            _decode_and_fan_out(container, video, audio, audio_encoder, probe, settings, fanout, on_progress)
        finally:
            fanout.close()
    outputs = tuple(writer.describe() for writer in writers)
    variants = [
        hls.Variant(uri=o.playlist, peak_bandwidth=o.peak_bandwidth, average_bandwidth=o.average_bandwidth,
                    width=o.rendition.width, height=o.rendition.height, codecs=o.codecs,
                    frame_rate=float(frame_rate))
        for o in outputs
    ]
    (output_dir / MASTER_PLAYLIST).write_text(hls.master_playlist(variants))
    if on_progress:
        on_progress(1.0)
    return HlsOutput(MASTER_PLAYLIST, outputs, stills.poster, tuple(stills.thumbnails), encoder_name)


@functools.cache
def _time_base(stream: av.VideoStream) -> Fraction:
    if stream.time_base is None:
        raise InvalidArgument.for_field("media", "We couldn't read the timing of this video. " + UPLOAD_ADVICE,
                                        reason="MEDIA_UNREADABLE")
    return stream.time_base


def video_encoder_for(accelerator: Accelerator) -> str:
    """`h264_nvenc` when CUDA is asked for and an NVENC session really opens, else `libx264`."""
    if accelerator is Accelerator.CUDA:
        try:
            probe_context = av.CodecContext.create("h264_nvenc", "w")
            probe_context.width, probe_context.height, probe_context.pix_fmt = 256, 256, "yuv420p"
            probe_context.time_base = Fraction(1, 30)
            probe_context.open()
            return "h264_nvenc"
        except (av.FFmpegError, ValueError) as error:
            logger.warning("CUDA requested but NVENC is unusable (%s); encoding on the CPU", error)
    return "libx264"


def _decoder_acceleration(accelerator: Accelerator) -> av.codec.hwaccel.HWAccel | None:
    if accelerator is not Accelerator.CUDA or video_encoder_for(accelerator) != "h264_nvenc":
        return None
    # Frames come back in system memory (swscale needs them there); fall back to software
    # decoding for codecs NVDEC lacks.
    return av.codec.hwaccel.HWAccel(device_type="cuda", allow_software_fallback=True)


def _decode_and_fan_out(
    container: av.container.InputContainer,
    video: av.VideoStream,
    audio: av.AudioStream | None,
    audio_encoder: _AudioEncoder | None,
    probe: MediaProbe,
    settings: TranscodeSettings,
    fanout: _Fanout,
    on_progress: ProgressCallback | None,
) -> None:
    rotator = _Rotator(video, probe.rotation)
    next_keyframe_s = 0.0
    reported = 0.0
    streams = [video] if audio is None else [video, audio]
    try:
        for packet in container.demux(streams):
            for decoded in packet.decode():
                if isinstance(decoded, av.AudioFrame):
                    if audio_encoder is not None:
                        fanout.send_audio(audio_encoder.encode(decoded))
                    continue
                if not isinstance(decoded, av.VideoFrame):
                    continue
                for frame in rotator.apply(decoded):
                    seconds = frame.time or 0.0
                    if seconds + 1e-6 >= next_keyframe_s:
                        frame.pict_type = PictureType.I  # copied onto every scaled frame
                        next_keyframe_s = (seconds // settings.segment_seconds + 1) * settings.segment_seconds
                    else:
                        frame.pict_type = PictureType.NONE
                    fanout.send_video(frame)
                    # The last few percent are the encoders draining; leave them to the final report.
                    progress = min(0.95, seconds / probe.duration_s)
                    if on_progress and progress - reported >= 0.01:
                        reported = progress
                        on_progress(progress)
        for frame in rotator.flush():
            fanout.send_video(frame)
        if audio_encoder is not None:
            fanout.send_audio(audio_encoder.encode(None))
    except av.FFmpegError as error:
        raise InvalidArgument.for_field(
            "media", "The video is damaged part-way through and can't be converted. Export it again "
            "and upload the new file.", reason="MEDIA_UNDECODABLE") from error


class _Rotator:
    """Turns decoded frames upright per the display matrix (MPEG-TS cannot carry one)."""

    _FILTERS = {90: [("transpose", "cclock")], 270: [("transpose", "clock")],
                180: [("hflip", ""), ("vflip", "")]}

    def __init__(self, stream: av.VideoStream, rotation: int) -> None:
        self._graph: av.filter.Graph | None = None
        if rotation == 0:
            return
        graph = av.filter.Graph()
        previous = graph.add_buffer(template=stream)
        for name, argument in self._FILTERS[rotation]:
            step = graph.add(name, argument)
            previous.link_to(step)
            previous = step
        previous.link_to(graph.add("buffersink"))
        graph.configure()
        self._graph = graph

    def apply(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self._graph is None:
            return [frame]
        self._graph.push(frame)
        return self._drain()

    def flush(self) -> list[av.VideoFrame]:
        if self._graph is None:
            return []
        self._graph.push(None)
        return self._drain()

    def _drain(self) -> list[av.VideoFrame]:
        frames: list[av.VideoFrame] = []
        if self._graph is None:
            return frames
        while True:
            try:
                frames.append(self._graph.vpull())
            except (av.BlockingIOError, av.EOFError):
                return frames


class _AudioEncoder:
    """AAC-LC once for the whole ladder; every rendition muxes copies of the same packets."""

    def __init__(self, settings: TranscodeSettings) -> None:
        self.sample_rate = settings.audio_sample_rate
        self.bitrate = settings.audio_bitrate
        self._context = av.CodecContext.create("aac", "w")
        self._context.sample_rate = self.sample_rate
        self._context.layout = "stereo"
        self._context.format = "fltp"
        self._context.bit_rate = self.bitrate

    def encode(self, frame: av.AudioFrame | None) -> list[av.Packet[av.AudioStream]]:
        # PyAV resamples and re-chunks to the encoder's rate, layout and frame size itself.
        return self._context.encode(frame)


class _Consumer:
    """One thread's work: video frames and audio packets in, files out."""

    def on_video(self, frame: av.VideoFrame) -> None: ...

    def on_audio(self, packet: av.Packet[av.AudioStream]) -> None: ...

    def finish(self) -> None: ...


class _RenditionWriter(_Consumer):
    def __init__(self, rendition: Rendition, output_dir: Path, encoder_name: str, time_base: Fraction,
                 frame_rate: Fraction, settings: TranscodeSettings, audio: _AudioEncoder | None) -> None:
        self.rendition = rendition
        self._directory = output_dir / rendition.name
        self._directory.mkdir(parents=True, exist_ok=True)
        self._container = av.open(
            str(self._directory / MEDIA_PLAYLIST), mode="w", format="hls",
            options={
                "hls_time": f"{settings.segment_seconds:g}",
                "hls_playlist_type": "vod",
                "hls_segment_type": "mpegts",
                "hls_flags": "independent_segments",
                "hls_segment_filename": str(self._directory / "seg_%05d.ts"),
            },
        )
        video = self._container.add_stream(encoder_name, rate=frame_rate,
                                           options=_encoder_options(encoder_name, rendition, settings))
        if not isinstance(video, av.VideoStream):
            raise ValueError(f"{encoder_name} is not a video encoder")
        self._video = video
        self._video.width, self._video.height = rendition.width, rendition.height
        self._video.pix_fmt = "yuv420p"
        self._video.bit_rate = rendition.video_bitrate
        self._video.codec_context.time_base = time_base  # source timestamps pass through: VFR stays VFR
        self._video.codec_context.gop_size = 10_000  # keyframes only where we force them
        self._audio = None
        if audio is not None:
            self._audio = self._container.add_stream("aac", rate=audio.sample_rate, layout="stereo")
            self._audio.bit_rate = audio.bitrate
        self._scaler = VideoReformatter()
        self._codecs = ""
        self.frame_count = 0

    def on_video(self, frame: av.VideoFrame) -> None:
        scaled = self._scaler.reformat(frame, self.rendition.width, self.rendition.height, "yuv420p",
                                       interpolation=Interpolation.BICUBIC)
        self.frame_count += 1
        self._mux_video(self._video.encode(scaled))

    def on_audio(self, packet: av.Packet[av.AudioStream]) -> None:
        if self._audio is None:
            return
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
        copy.duration = packet.duration
        copy.stream = self._audio
        self._container.mux(copy)

    def finish(self) -> None:
        self._mux_video(self._video.encode(None))
        self._container.close()

    def _mux_video(self, packets: list[av.Packet[av.VideoStream]]) -> None:
        if packets and not self._codecs:
            # The SPS is in the extradata when the muxer asks for global headers, else in-band.
            extradata = self._video.codec_context.extradata or b""
            self._codecs = hls.avc_codec_string(bytes(extradata) + bytes(packets[0]))
        self._container.mux(packets)

    def describe(self) -> RenditionOutput:
        playlist = self._directory / MEDIA_PLAYLIST
        segments = hls.parse_media_playlist(playlist.read_text())
        sizes = [(self._directory / segment.uri).stat().st_size for segment in segments]
        peak, average = hls.segment_bandwidth(sizes, segments)
        codecs = self._codecs if self._audio is None else f"{self._codecs},{hls.AAC_LC_CODEC}"
        name = self.rendition.name
        return RenditionOutput(
            rendition=self.rendition,
            playlist=f"{name}/{MEDIA_PLAYLIST}",
            segments=tuple(f"{name}/{segment.uri}" for segment in segments),
            frame_count=self.frame_count,
            codecs=codecs,
            peak_bandwidth=peak,
            average_bandwidth=average,
        )


def _encoder_options(encoder_name: str, rendition: Rendition, settings: TranscodeSettings) -> dict[str, str]:
    rate_control = {"maxrate": str(rendition.max_bitrate), "bufsize": str(rendition.buffer_size)}
    if encoder_name == "h264_nvenc":
        return {**rate_control, "preset": "p4", "rc": "vbr", "forced-idr": "1", "no-scenecut": "1"}
    # scenecut=0: no extra keyframes inside a segment; forced-idr: each forced keyframe is an IDR.
    return {**rate_control, "preset": settings.x264_preset, "forced-idr": "1", "x264-params": "scenecut=0"}


class _StillsWriter(_Consumer):
    """The poster (at the top rendition's size) and a thumbnail every few seconds, as JPEG."""

    def __init__(self, output_dir: Path, probe: MediaProbe, settings: TranscodeSettings) -> None:
        self._output_dir = output_dir
        self._settings = settings
        width, height = probe.display_size
        self._poster_size = fit_within(width, height, *oriented_box(width, height, Rung(1080, 1920, 0)))
        self._thumbnail_size = fit_within(width, height, *oriented_box(width, height, settings.thumbnail_box))
        self._poster_at_s = min(settings.poster_at_s, probe.duration_s / 2)
        self._next_thumbnail_s = 0.0
        self._scaler = VideoReformatter()
        (output_dir / THUMBNAIL_DIRECTORY).mkdir(exist_ok=True)
        self.poster = ""
        self.thumbnails: list[str] = []

    def on_video(self, frame: av.VideoFrame) -> None:
        seconds = frame.time or 0.0
        if not self.poster and seconds + 1e-6 >= self._poster_at_s:
            self.poster = self._write_jpeg(frame, self._poster_size, POSTER)
        if seconds + 1e-6 >= self._next_thumbnail_s:
            name = f"{THUMBNAIL_DIRECTORY}/thumb_{len(self.thumbnails):04d}.jpg"
            self.thumbnails.append(self._write_jpeg(frame, self._thumbnail_size, name))
            self._next_thumbnail_s += self._settings.thumbnail_interval_s

    def _write_jpeg(self, frame: av.VideoFrame, size: tuple[int, int], relative: str) -> str:
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = size
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = Fraction(1, 1)
        encoder.qmin = encoder.qmax = self._settings.jpeg_quantizer
        still = self._scaler.reformat(frame, size[0], size[1], "yuvj420p", interpolation=Interpolation.BICUBIC)
        still.pts = 0
        jpeg = b"".join(bytes(packet) for packet in [*encoder.encode(still), *encoder.encode(None)])
        (self._output_dir / relative).write_bytes(jpeg)
        return relative


@dataclass
class _Lane:
    consumer: _Consumer
    inbox: queue.Queue[tuple[str, object] | None] = field(default_factory=lambda: queue.Queue(_QUEUE_DEPTH))
    thread: threading.Thread | None = None


class _Fanout:
    """One bounded queue and thread per consumer; the first failure stops everyone."""

    def __init__(self, consumers: Sequence[_Consumer]) -> None:
        self._failed = threading.Event()
        self._errors: list[BaseException] = []
        self._lanes = [_Lane(consumer) for consumer in consumers]
        for index, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(target=self._run, args=(lane,), name=f"transcode-{index}", daemon=True)
            lane.thread.start()

    def send_video(self, frame: av.VideoFrame) -> None:
        self._send(("video", frame))

    def send_audio(self, packets: list[av.Packet[av.AudioStream]]) -> None:
        for packet in packets:
            self._send(("audio", packet))

    def close(self) -> None:
        """Let every consumer finish (or stop, after a failure) and raise the first error."""
        for lane in self._lanes:
            self._put(lane, None)
        for lane in self._lanes:
            assert lane.thread is not None
            lane.thread.join()
        if self._errors:
            raise self._errors[0]

    def _send(self, item: tuple[str, object]) -> None:
        for lane in self._lanes:
            self._put(lane, item)
        if self._failed.is_set():
            raise _Stopped()

    def _put(self, lane: _Lane, item: tuple[str, object] | None) -> None:
        while lane.thread is not None and lane.thread.is_alive():
            try:
                lane.inbox.put(item, timeout=_PUT_POLL_S)
                return
            except queue.Full:
                continue

    def _run(self, lane: _Lane) -> None:
        try:
            while (item := lane.inbox.get()) is not None:
                if self._failed.is_set():
                    continue  # drain so the producer never blocks; the result is discarded anyway
                kind, payload = item
                if kind == "video":
                    lane.consumer.on_video(payload)  # type: ignore[arg-type]
                else:
                    lane.consumer.on_audio(payload)  # type: ignore[arg-type]
            if not self._failed.is_set():
                lane.consumer.finish()
        except BaseException as error:  # handed to the producer thread, which re-raises it
            self._errors.append(error)
            self._failed.set()
            while lane.inbox.get() is not None:
                pass


class _Stopped(Exception):
    """A consumer failed; the producer stops feeding and `_Fanout.close` reports why."""
