"""Probe an uploaded file with PyAV: what it is, and whether we can publish it.

`probe_media` reads the container and demuxes every video packet (cheap: no decoding)
to measure the real duration, frame count and frame-rate regularity instead of trusting
the header, and decodes the first frame to prove the stream is decodable and to read
its display matrix (phones record portrait video as landscape pixels plus a rotation).

Anything that is not an acceptable clip raises `InvalidArgument` with a reason constant
and a message a creator can act on; garbage input never escapes as another exception.
"""

from __future__ import annotations

import enum
import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.container

from libs.errors import InvalidArgument

logger = logging.getLogger(__name__)

# The demuxer names FFmpeg reports for the containers phones and editors produce.
ACCEPTED_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
ACCEPTED_VIDEO_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores"})
# Frame steps that differ by more than this share of the shortest step mean variable frame rate.
VFR_TOLERANCE = Fraction(1, 20)
UPLOAD_ADVICE = "Export it again as an MP4 or MOV (H.264 or HEVC) or a WebM file and upload that."


@dataclass(frozen=True)
class ProbeLimits:
    min_duration_s: float = 3.0
    max_duration_s: float = 600.0
    max_side: int = 4096  # DCI 4K; larger frames would be downscaled anyway and cost a lot to decode
    min_side: int = 16


class Orientation(enum.StrEnum):
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"
    SQUARE = "square"


@dataclass(frozen=True)
class MediaProbe:
    container: str
    video_codec: str
    audio_codec: str  # "" when the clip has no audio
    duration_s: float
    coded_width: int
    coded_height: int
    rotation: int  # counter-clockwise degrees to turn the coded picture for display: 0, 90, 180 or 270
    frame_count: int
    average_frame_rate: float
    variable_frame_rate: bool

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codec)

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation in (90, 270):
            return self.coded_height, self.coded_width
        return self.coded_width, self.coded_height

    @property
    def orientation(self) -> Orientation:
        width, height = self.display_size
        if width == height:
            return Orientation.SQUARE
        return Orientation.PORTRAIT if height > width else Orientation.LANDSCAPE

    @property
    def odd_dimensions(self) -> bool:
        return self.coded_width % 2 == 1 or self.coded_height % 2 == 1


def probe_media(source: str | Path | BinaryIO, limits: ProbeLimits = ProbeLimits()) -> MediaProbe:
    """Describe `source` or raise `InvalidArgument` saying why it cannot be published."""
    try:
        with av.open(source if not isinstance(source, Path) else str(source), mode="r") as container:
            return _probe(container, limits)
    except InvalidArgument:
        raise
    except (av.FFmpegError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError,
            UnicodeDecodeError, EOFError) as error:
        # PyAV surfaces damaged or hostile input as any of these; all mean "not a usable video".
        logger.info("probe rejected unreadable media: %r", error)
        raise _rejected("MEDIA_UNREADABLE", "We couldn't read this file as a video; it may be damaged "
                        "or not a video at all. " + UPLOAD_ADVICE) from error


def normalize_rotation(degrees: float) -> int:
    """Counter-clockwise degrees snapped to a quarter turn in [0, 360)."""
    return int(round(degrees / 90.0)) % 4 * 90


def _probe(container: av.container.InputContainer, limits: ProbeLimits) -> MediaProbe:
    if container.format.name not in ACCEPTED_CONTAINERS:
        raise _rejected("MEDIA_UNSUPPORTED_FORMAT",
                        f"This file is {describe_format(container.format.name)}, not a video format we accept. "
                        + UPLOAD_ADVICE, found=container.format.name)
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        raise _rejected("MEDIA_NO_VIDEO", "This file has no video track (only audio or pictures). "
                        "Upload a clip with video.")
    video = videos[0]
    codec = _codec_name(video)
    if codec not in ACCEPTED_VIDEO_CODECS:
        raise _rejected("MEDIA_UNSUPPORTED_CODEC", f"This video is encoded as '{codec}', which we can't "
                        "process. " + UPLOAD_ADVICE, found=codec)
    audio = next(iter(container.streams.audio), None)

    timing = _VideoTiming(video.time_base or Fraction(1, 90_000), limits)
    first_frame: av.VideoFrame | None = None
    for packet in container.demux(video):
        timing.add(packet)
        if first_frame is None and packet.size:
            first_frame = next(iter(packet.decode()), None)
    if first_frame is None:
        first_frame = next(iter(video.codec_context.decode(None)), None)  # frames held in the decoder
    if first_frame is None or timing.frame_count == 0:
        raise _rejected("MEDIA_UNREADABLE", "We couldn't decode any picture from this video. " + UPLOAD_ADVICE)

    duration = timing.duration_s()
    check_duration(duration, limits)
    width, height = first_frame.width, first_frame.height
    if max(width, height) > limits.max_side or min(width, height) < limits.min_side:
        raise _rejected("MEDIA_RESOLUTION_UNSUPPORTED",
                        f"This video is {width}x{height}; we accept sizes from {limits.min_side} to "
                        f"{limits.max_side} pixels per side. Export it at 1080p or 4K.",
                        width=str(width), height=str(height))
    return MediaProbe(
        container=container.format.name,
        video_codec=codec,
        audio_codec=_codec_name(audio) if audio is not None else "",
        duration_s=duration,
        coded_width=width,
        coded_height=height,
        rotation=normalize_rotation(first_frame.rotation),
        frame_count=timing.frame_count,
        average_frame_rate=timing.frame_count / duration,
        variable_frame_rate=timing.variable(),
    )


class _VideoTiming:
    """Frame count, presentation span and step regularity, from packets alone."""

    def __init__(self, time_base: Fraction, limits: ProbeLimits) -> None:
        self._time_base = time_base
        self._limits = limits
        self._limit_ticks = limits.max_duration_s * 1.01 / time_base
        self._timestamps: list[int] = []
        self._last_duration = 0
        self.frame_count = 0

    def add(self, packet: av.Packet[av.VideoStream]) -> None:
        timestamp = packet.pts if packet.pts is not None else packet.dts
        if packet.size == 0 or timestamp is None:
            return  # the demuxer's end-of-stream flush packet, or a packet with no time
        self.frame_count += 1
        self._timestamps.append(timestamp)
        self._last_duration = packet.duration or 0
        if timestamp - self._timestamps[0] > self._limit_ticks:
            # Stop reading a file that is already too long: it may be huge, or lie about its length.
            raise _too_long(self._limits)

    def _steps(self) -> list[int]:
        ordered = sorted(self._timestamps)
        return [later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False) if later > earlier]

    def duration_s(self) -> float:
        if not self._timestamps:
            return 0.0
        steps = self._steps()
        # The last frame lasts its packet duration, or else a typical step.
        tail = self._last_duration or (sorted(steps)[len(steps) // 2] if steps else 0)
        span = max(self._timestamps) - min(self._timestamps) + tail
        return float(span * self._time_base)

    def variable(self) -> bool:
        steps = self._steps()
        if len(steps) < 2:
            return False
        shortest, longest = min(steps), max(steps)
        return Fraction(longest - shortest, shortest) > VFR_TOLERANCE


def check_duration(duration_s: float, limits: ProbeLimits) -> None:
    """Refuse a clip shorter or longer than the limits, naming them."""
    if duration_s < limits.min_duration_s:
        raise _rejected("MEDIA_TOO_SHORT", f"This clip is {duration_s:.1f} s long; clips must be at least "
                        f"{limits.min_duration_s:g} s.", duration_s=f"{duration_s:.3f}")
    if duration_s > limits.max_duration_s:
        raise _too_long(limits, duration_s)


def header_duration(prefix: bytes) -> float | None:
    """The duration a container's header declares, read from the file's first bytes alone;
    None when they do not hold a readable header with a duration.

    MP4/MOV written for streaming ("fast start") and WebM/Matroska put the header first, so
    the first part of an upload tells the length. An MP4 whose `moov` box comes after the
    media (what most cameras and phones write) cannot be judged from its start: it is
    checked once the whole file is in, as before."""
    try:
        with av.open(io.BytesIO(prefix), mode="r") as container:
            if container.format.name not in ACCEPTED_CONTAINERS or not container.duration:
                return None
            return float(container.duration / av.time_base)
    except (av.FFmpegError, ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError,
            UnicodeDecodeError, EOFError):
        return None


def describe_format(demuxer: str) -> str:
    """What FFmpeg's demuxer name means, in words a creator knows."""
    for names, words in _FORMAT_WORDS:
        if demuxer in names or demuxer.endswith("_pipe") and demuxer.removesuffix("_pipe") in names:
            return words
    return "a kind of file we can't use as a video"


# FFmpeg demuxer names (the image ones come as `<name>_pipe`), in words.
_FORMAT_WORDS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"png", "apng"}), "a PNG picture"),
    (frozenset({"jpeg", "jpegls", "mjpeg", "image2"}), "a still picture (JPEG)"),
    (frozenset({"webp"}), "a WebP picture"),
    (frozenset({"gif"}), "a GIF animation"),
    (frozenset({"bmp", "tiff", "heif", "avif", "svg", "psd", "pcx", "qoi"}), "a picture"),
    (frozenset({"mp3"}), "an MP3 audio file"),
    (frozenset({"wav", "w64"}), "a WAV audio file"),
    (frozenset({"flac"}), "a FLAC audio file"),
    (frozenset({"aac", "ac3", "eac3", "amr", "aiff", "caf"}), "an audio file"),
    (frozenset({"ogg"}), "an Ogg file (usually audio)"),
    (frozenset({"avi"}), "an AVI video"),
    (frozenset({"flv"}), "a Flash video (FLV)"),
    (frozenset({"asf"}), "a Windows Media file"),
    (frozenset({"mpegts", "mpeg", "mpegvideo"}), "an MPEG video (TS or PS)"),
    (frozenset({"h264", "hevc", "m4v"}), "a raw video stream without a container"),
    (frozenset({"tty", "txt"}), "a text file"),
)


def _too_long(limits: ProbeLimits, duration_s: float | None = None) -> InvalidArgument:
    facts = {"duration_s": f"{duration_s:.3f}"} if duration_s is not None else {}
    return _rejected("MEDIA_TOO_LONG", f"This clip is longer than the maximum of {_minutes(limits.max_duration_s)}; "
                     "trim it and upload again.", max_duration_s=f"{limits.max_duration_s:g}", **facts)


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}" if minutes >= 1 else f"{seconds:g} seconds"


def _codec_name(stream: av.stream.Stream) -> str:
    """The decoder's name; a damaged header can name a codec FFmpeg has no decoder for."""
    context = stream.codec_context
    return context.name if context is not None else "unknown"


def _rejected(reason: str, message: str, **facts: str) -> InvalidArgument:
    error = InvalidArgument.for_field("media", message, reason=reason)
    error.metadata.update(facts)
    return error
