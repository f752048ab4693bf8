from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.ladder import DEFAULT_RUNGS, plan_ladder


def sizes(width: int, height: int) -> list[tuple[int, int]]:
    return [(r.width, r.height) for r in plan_ladder(width, height)]


def test_full_hd_portrait_gets_the_four_rungs_of_the_brief() -> None:
    ladder = plan_ladder(1080, 1920)
    assert [(r.width, r.height, r.video_bitrate) for r in ladder] == [
        (1080, 1920, 4_500_000), (720, 1280, 2_500_000), (480, 854, 1_200_000), (360, 640, 700_000),
    ]
    assert [r.name for r in ladder] == ["1080x1920", "720x1280", "480x854", "360x640"]


def test_landscape_sources_get_landscape_rungs() -> None:
    assert sizes(1920, 1080) == [(1920, 1080), (1280, 720), (854, 480), (640, 360)]


def test_a_source_is_never_upscaled() -> None:
    assert sizes(720, 1280) == [(720, 1280), (480, 854), (360, 640)]
    ladder = plan_ladder(600, 1000)
    assert [(r.width, r.height) for r in ladder] == [(600, 1000), (480, 800), (360, 600)]
    # 600x1000 fits both the 1080 and the 720 box; the tighter 720 box prices it.
    assert ladder[0].video_bitrate == 2_500_000 * 600 * 1000 // (720 * 1280)


def test_a_tiny_source_becomes_a_single_rendition_of_its_own_size() -> None:
    assert sizes(96, 160) == [(96, 160)]


def test_odd_dimensions_become_even_without_growing() -> None:
    assert sizes(1081, 1921)[0] == (1080, 1920)
    assert sizes(181, 321) == [(180, 320)]


def test_4k_portrait_is_scaled_into_every_rung() -> None:
    assert sizes(2160, 3840) == [(1080, 1920), (720, 1280), (480, 854), (360, 640)]


def test_square_and_four_by_three_keep_their_aspect_and_pay_for_fewer_pixels() -> None:
    square = plan_ladder(2000, 2000)
    assert [(r.width, r.height) for r in square] == [(1080, 1080), (720, 720), (480, 480), (360, 360)]
    assert square[0].video_bitrate == 4_500_000 * 1080 * 1080 // (1080 * 1920)
    assert sizes(1440, 1080)[0] == (1440, 1080)


def test_peak_and_buffer_follow_the_average() -> None:
    top = plan_ladder(1080, 1920)[0]
    assert top.max_bitrate == 4_950_000 and top.buffer_size == 9_000_000


@given(st.integers(2, 8000), st.integers(2, 8000))
def test_every_plan_is_even_unique_bounded_and_keeps_the_aspect(width: int, height: int) -> None:
    ladder = plan_ladder(width, height)
    assert ladder, "a source always gets at least one rendition"
    assert len({(r.width, r.height) for r in ladder}) == len(ladder)
    assert [r.width * r.height for r in ladder] == sorted((r.width * r.height for r in ladder), reverse=True)
    largest_box = max(DEFAULT_RUNGS, key=lambda r: r.short_side)
    for rendition in ladder:
        assert rendition.width % 2 == 0 and rendition.height % 2 == 0
        assert rendition.width <= max(2, width) and rendition.height <= max(2, height)
        assert min(rendition.width, rendition.height) <= largest_box.short_side
        assert max(rendition.width, rendition.height) <= largest_box.long_side
        assert 0 < rendition.video_bitrate <= rendition.max_bitrate
        # Rounding to even moves each side by at most 2 px (plus clamping for tiny sides).
        if min(rendition.width, rendition.height) >= 16:
            assert abs(rendition.width * height - rendition.height * width) <= 2 * (width + height)


@pytest.mark.parametrize("width,height", [(0, 100), (100, 1), (-4, 8)])
def test_degenerate_sizes_are_a_programming_error(width: int, height: int) -> None:
    with pytest.raises(ValueError):
        plan_ladder(width, height)
