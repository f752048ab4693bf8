"""HLS text and codec facts (RFC 8216): pure functions, no media libraries.

The `hls` muxer writes each rendition's media playlist and segments; the master
playlist is ours, because only we know the whole ladder and can measure what each
variant really needs: BANDWIDTH is the peak segment bitrate (the spec's definition),
AVERAGE-BANDWIDTH the mean, and CODECS comes from the encoded SPS, not from a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AAC_LC_CODEC = "mp4a.40.2"
_NAL_TYPE_SPS = 7


@dataclass(frozen=True)
class Segment:
    uri: str
    duration_s: float


@dataclass(frozen=True)
class Variant:
    uri: str
    peak_bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    codecs: str
    frame_rate: float


def parse_media_playlist(text: str) -> list[Segment]:
    """The segments of a media playlist, in order (only `#EXTINF` + URI pairs matter here)."""
    if not text.startswith("#EXTM3U"):
        raise ValueError("not an HLS playlist: missing #EXTM3U")
    segments: list[Segment] = []
    pending_duration: float | None = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("#EXTINF:"):
            pending_duration = float(line.removeprefix("#EXTINF:").split(",", 1)[0])
        elif line and not line.startswith("#"):
            if pending_duration is None:
                raise ValueError(f"segment {line!r} has no #EXTINF")
            segments.append(Segment(line, pending_duration))
            pending_duration = None
    return segments


def segment_bandwidth(segment_sizes: Sequence[int], segments: Sequence[Segment]) -> tuple[int, int]:
    """(peak, average) bits per second over the segments, as BANDWIDTH and AVERAGE-BANDWIDTH."""
    if not segments or len(segment_sizes) != len(segments):
        raise ValueError("need one size per segment, and at least one segment")
    # A final sliver of a segment would report an absurd peak; count it as at least 0.5 s.
    peak = max(size * 8 / max(segment.duration_s, 0.5) for size, segment in zip(segment_sizes, segments, strict=True))
    total_seconds = sum(segment.duration_s for segment in segments)
    average = sum(segment_sizes) * 8 / total_seconds
    return int(peak + 0.5), int(average + 0.5)


def master_playlist(variants: Sequence[Variant]) -> str:
    """A master playlist listing the variants in the order given."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={variant.peak_bandwidth},"
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth},"
            f"RESOLUTION={variant.width}x{variant.height},"
            f'CODECS="{variant.codecs}",'
            f"FRAME-RATE={variant.frame_rate:.3f}"
        )
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


def avc_codec_string(annex_b: bytes) -> str:
    """The RFC 6381 `avc1.PPCCLL` string from the first SPS in an Annex B H.264 bitstream."""
    for nal in _annex_b_units(annex_b):
        if nal and nal[0] & 0x1F == _NAL_TYPE_SPS and len(nal) >= 4:
            profile, constraints, level = nal[1], nal[2], nal[3]
            return f"avc1.{profile:02x}{constraints:02x}{level:02x}"
    raise ValueError("no H.264 sequence parameter set in the bitstream")


def _annex_b_units(stream: bytes) -> list[bytes]:
    """NAL units between 00 00 01 start codes. Emulation prevention guarantees no unit contains
    one; a 4-byte start code leaves a trailing zero on the unit before it, which is harmless here."""
    return stream.split(b"\x00\x00\x01")[1:]
