"""decode_image on every accepted format and every kind of bad input (pure Pillow, no database)."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from imagesearch import imaging
from imagesearch.imaging import ImageRejected, decode_image
from tests import hostile, images

LIMIT = 50_000_000


def thumb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    "fmt, params, expected",
    [
        ("JPEG", {}, "JPEG"),
        ("JPEG", {"progressive": True}, "JPEG"),
        ("PNG", {}, "PNG"),
        ("WEBP", {"quality": 80}, "WEBP"),
        ("TIFF", {}, "TIFF"),
        ("BMP", {}, "BMP"),
        ("GIF", {}, "GIF"),
    ],
)
def test_accepted_formats_give_a_webp_thumbnail_of_at_most_256_px(fmt, params, expected):
    data = images.encode(images.photo(640, 400), fmt, **params)
    decoded = decode_image(data, max_pixels=LIMIT)
    assert decoded.format == expected
    page = decoded.pages[0]
    assert (page.width, page.height) == (640, 400)
    t = thumb(page.thumbnail)
    assert t.format == "WEBP" and max(t.size) == 256 and t.size == (256, 160)


def test_cmyk_jpeg_is_converted_to_rgb():
    data = images.encode(images.photo().convert("CMYK"), "JPEG")
    assert thumb(decode_image(data, max_pixels=LIMIT).pages[0].thumbnail).mode == "RGB"


def test_palette_png_with_transparency_is_flattened_on_white():
    im = Image.new("P", (50, 50), 0)
    im.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    im.info["transparency"] = 0
    decoded = decode_image(images.encode(im, "PNG", transparency=0), max_pixels=LIMIT)
    r, g, b = thumb(decoded.pages[0].thumbnail).convert("RGB").getpixel((10, 10))
    assert min(r, g, b) > 240  # white, not the red of the transparent palette entry


def test_sixteen_bit_tiff_keeps_its_grey_levels():
    im = Image.frombytes("I;16", (64, 64), struct.pack("<H", 32768) * 64 * 64)  # mid-grey
    decoded = decode_image(images.encode(im, "TIFF"), max_pixels=LIMIT)
    value = thumb(decoded.pages[0].thumbnail).convert("L").getpixel((5, 5))
    assert 120 <= value <= 136


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (255, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(out.getvalue(), max_pixels=LIMIT)
    assert len(decoded.pages) == 1
    r, g, b = thumb(decoded.pages[0].thumbnail).convert("RGB").getpixel((20, 20))
    assert b > 200 and r < 60


def test_multipage_tiff_gives_one_page_per_frame_stored_as_png():
    decoded = decode_image(images.multipage_tiff(pages=3), max_pixels=LIMIT)
    assert [p.page_number for p in decoded.pages] == [1, 2, 3]
    assert all(Image.open(io.BytesIO(p.page_png)).format == "PNG" for p in decoded.pages)


def test_exif_orientation_is_applied_to_size_and_thumbnail():
    im = images.photo(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    decoded = decode_image(images.encode(im, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    page = decoded.pages[0]
    assert (page.width, page.height) == (200, 400)
    assert thumb(page.thumbnail).size == (128, 256)


def test_format_is_sniffed_from_bytes_not_names():
    # PNG bytes are a PNG whatever they are called; nothing here sees a name at all.
    assert decode_image(images.png(), max_pixels=LIMIT).format == "PNG"


@pytest.mark.parametrize("size", [(20_000, 20_000), (100_000, 100_000)])
def test_decompression_bombs_are_refused_before_decoding(size):
    with pytest.raises(ImageRejected, match="too many pixels"):
        decode_image(hostile.png_bomb(*size), max_pixels=LIMIT)


@pytest.mark.parametrize("refuse", [
    lambda limit: decode_image(hostile.png_bomb(30_000, 30_000), max_pixels=limit),
    lambda limit: imaging.check_jpeg(hostile.jpeg_bomb(60_000, 60_000), max_pixels=limit),
], ids=["png", "jpeg from a pdf"])
def test_a_bomb_past_pillows_own_guard_is_refused_with_the_projects_limit_and_setting(refuse):
    """Pillow refuses these itself, at twice its MAX_IMAGE_PIXELS; the message is still ours."""
    with pytest.raises(ImageRejected) as error:
        refuse(150_000_000)
    assert "IMAGE_MAX_PIXELS" in str(error.value) and "150,000,000" in str(error.value)
    assert "300000000" not in str(error.value)
    assert str(error.value) in (imaging.TOO_MANY_PIXELS.format(width=w, height=w, limit=150_000_000)
                                for w in (30_000, 60_000))


def test_a_picture_given_as_pixels_is_stored_whole_beside_its_thumbnail():
    rendered = images.photo(1000, 800)  # RGB, as a rendered page is
    page = imaging.encode_pixels(rendered, max_pixels=LIMIT, thumbnail_size=256)
    assert thumb(page.page_png).size == (1000, 800) == (page.width, page.height) == rendered.size
    assert thumb(page.thumbnail).size == (256, 205)


def test_pixel_limit_is_configurable():
    data = images.png(width=200, height=150)
    assert decode_image(data, max_pixels=30_000).pages[0].width == 200
    with pytest.raises(ImageRejected, match="29,999"):
        decode_image(data, max_pixels=29_999)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", imaging.EMPTY_FILE),
        (b"hello, I am a text file\n", imaging.NOT_AN_IMAGE),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', imaging.NOT_AN_IMAGE),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", imaging.NOT_AN_IMAGE),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", imaging.NOT_AN_IMAGE),
    ],
)
def test_non_images_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as error:
        decode_image(data, max_pixels=LIMIT)
    assert str(error.value) == reason


@pytest.mark.parametrize("maker", [images.jpeg, images.png])
def test_truncated_files_are_refused(maker):
    data = maker(seed=3)
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2], max_pixels=LIMIT)


def test_too_many_tiff_pages_are_refused():
    with pytest.raises(ImageRejected, match="too many pages"):
        decode_image(images.multipage_tiff(pages=4), max_pixels=LIMIT, max_pages=3)
