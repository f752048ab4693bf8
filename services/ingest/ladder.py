"""Plan the HLS bitrate ladder for a source: which sizes to encode, at which bitrates.

Each rung is a box (1080x1920, 720x1280, ...) turned to match the source's orientation.
The source is fitted inside the box keeping its aspect ratio, never upscaled, with even
dimensions (4:2:0 chroma needs them). Rungs that collapse to the same size (a source
smaller than several boxes) become one rendition, with the bitrate of the tightest box.
The bitrate scales with the share of the box the picture fills, so a square or a
letterbox-shaped clip is not given bits for pixels it does not have.

Pure: the caller passes the *display* size, i.e. with any rotation already applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

# Capped VBR as Apple's HLS authoring guide suggests: peaks near the target, a
# two-second decoder buffer, so segment sizes stay close to the advertised bandwidth.
PEAK_TO_AVERAGE = Fraction(11, 10)
BUFFER_SECONDS = 2


@dataclass(frozen=True)
class Rung:
    """One step of the ladder as a box: short side x long side at a nominal bitrate."""

    short_side: int
    long_side: int
    video_bitrate: int  # bits per second


DEFAULT_RUNGS: tuple[Rung, ...] = (
    Rung(1080, 1920, 4_500_000),
    Rung(720, 1280, 2_500_000),
    Rung(480, 854, 1_200_000),
    Rung(360, 640, 700_000),
)


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    video_bitrate: int
    max_bitrate: int
    buffer_size: int

    @property
    def name(self) -> str:
        """Folder and label, e.g. `720x1280`."""
        return f"{self.width}x{self.height}"


def plan_ladder(display_width: int, display_height: int,
                rungs: Sequence[Rung] = DEFAULT_RUNGS) -> tuple[Rendition, ...]:
    """Renditions for a source of this display size, largest first, sizes unique."""
    if display_width < 2 or display_height < 2:
        raise ValueError(f"cannot plan a ladder for a {display_width}x{display_height} picture")
    by_size: dict[tuple[int, int], Rendition] = {}
    for rung in sorted(rungs, key=lambda r: r.short_side, reverse=True):
        box_width, box_height = oriented_box(display_width, display_height, rung)
        width, height = fit_within(display_width, display_height, box_width, box_height)
        bitrate = int(rung.video_bitrate * min(Fraction(1), Fraction(width * height, box_width * box_height)))
        # Later (smaller) boxes overwrite: the tightest box that holds the size sets its bitrate.
        by_size[(width, height)] = Rendition(
            width=width,
            height=height,
            video_bitrate=bitrate,
            max_bitrate=int(bitrate * PEAK_TO_AVERAGE),
            buffer_size=bitrate * BUFFER_SECONDS,
        )
    return tuple(sorted(by_size.values(), key=lambda r: r.width * r.height, reverse=True))


def oriented_box(display_width: int, display_height: int, rung: Rung) -> tuple[int, int]:
    """The rung's box as (width, height), portrait for portrait or square sources."""
    if display_width > display_height:
        return rung.long_side, rung.short_side
    return rung.short_side, rung.long_side


def fit_within(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest even size with the source's aspect that fits the box and the source."""
    scale = min(Fraction(box_width, width), Fraction(box_height, height), Fraction(1))
    return (
        _even(width * scale, limit=min(width, box_width)),
        _even(height * scale, limit=min(height, box_height)),
    )


def _even(exact: Fraction, *, limit: int) -> int:
    """Nearest even integer to `exact`, at least 2 and never above `limit` (rounded down to even)."""
    nearest = round(exact / 2) * 2
    return max(2, min(nearest, limit - limit % 2))
