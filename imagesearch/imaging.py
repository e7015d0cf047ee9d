"""Decoding, validating and thumbnailing image bytes with Pillow (no Django).

Formats are sniffed from the bytes (Pillow's own magic-number checks), never taken
from a file name or a content type, and only raster formats on the allow-list open:
no SVG, EPS or PDF here. Size and pixel limits are checked before any pixel is
decoded, so a decompression bomb costs a header read, not the machine's memory.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Truncated files must fail, never load half an image silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Register every plugin now: Image.open(formats=...) only knows loaded ones (MPO).
Image.init()

# Camera JPEGs with extra frames open as "MPO" through the JPEG opener.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
FORMAT_INFO = {
    # format: (canonical name, media type, file extension)
    "JPEG": ("JPEG", "image/jpeg", ".jpg"),
    "MPO": ("JPEG", "image/jpeg", ".jpg"),  # camera JPEGs with extra frames
    "PNG": ("PNG", "image/png", ".png"),
    "WEBP": ("WEBP", "image/webp", ".webp"),
    "TIFF": ("TIFF", "image/tiff", ".tif"),
    "BMP": ("BMP", "image/bmp", ".bmp"),
    "GIF": ("GIF", "image/gif", ".gif"),
}
THUMBNAIL_MEDIA_TYPE = "image/webp"

EMPTY_FILE = "empty file (0 bytes)"
NOT_AN_IMAGE = "not a supported image: the bytes are not JPEG, PNG, WebP, TIFF, BMP or GIF"
TOO_MANY_PIXELS = "too many pixels: {width}×{height} exceeds the limit of {limit:,} (IMAGE_MAX_PIXELS)"
TOO_MANY_PAGES = "too many pages: {pages} exceeds the limit of {limit} (IMAGE_MAX_PAGES)"
CORRUPT = "truncated or corrupt image data ({detail})"

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """The bytes are not an image we accept; the message says why, for the user."""


@dataclass
class DecodedPage:
    """One picture of a file: the file itself, or one page of a multi-page TIFF."""

    width: int  # after EXIF orientation
    height: int
    thumbnail: bytes
    page_number: int | None = None  # 1-based, for pages of a multi-page file
    # Pages of a multi-page file are stored re-encoded losslessly as PNG, since a
    # page has no file of its own; a single picture keeps its original bytes.
    page_png: bytes | None = None


@dataclass
class DecodedImage:
    format: str  # canonical: JPEG, PNG, WEBP, TIFF, BMP, GIF
    media_type: str
    extension: str
    pages: list[DecodedPage] = field(default_factory=list)

    @property
    def is_multipage(self) -> bool:
        return len(self.pages) > 1


def decode_image(
    data: bytes, *, max_pixels: int, max_pages: int = 1000, thumbnail_size: int = 256, thumbnails: bool = True
) -> DecodedImage:
    """Validate ``data`` and make its thumbnail(s). Raises ImageRejected with a reason.

    With ``thumbnails=False`` every page is still decoded (that is the check), but no
    thumbnail is encoded (``DecodedPage.thumbnail`` is empty): for a search query
    whose thumbnail may never be shown.
    """
    if not data:
        raise ImageRejected(EMPTY_FILE)
    im = _open(data, ALLOWED_FORMATS, max_pixels=max_pixels)
    name, media_type, extension = FORMAT_INFO[im.format]
    decoded = DecodedImage(format=name, media_type=media_type, extension=extension)
    # Only TIFF pages are separate pictures; GIF and WebP frames are an animation,
    # of which the first frame stands for the whole.
    pages = getattr(im, "n_frames", 1) if name == "TIFF" else 1
    if pages > max_pages:
        raise ImageRejected(TOO_MANY_PAGES.format(pages=pages, limit=max_pages))
    try:
        for index in range(pages):
            if index:
                im.seek(index)
            page = _decode_frame(im, max_pixels=max_pixels, thumbnail_size=thumbnail_size, thumbnail=thumbnails)
            if pages > 1:
                page.page_number = index + 1
            decoded.pages.append(page)
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageRejected(CORRUPT.format(detail=exc)) from None
    if pages > 1:
        for index, page in enumerate(decoded.pages):
            im.seek(index)
            page.page_png = _encode_png(im)
    return decoded


def _open(data: bytes, formats: tuple[str, ...], *, max_pixels: int) -> Image.Image:
    """Open ``data`` (its header: no pixel is decoded yet). Raises ImageRejected.

    Our limit decides (each frame's size is checked before it is decoded); Pillow's own guard, which
    refuses at twice its MAX_IMAGE_PIXELS, is kept as a net but never quoted: its limit is not ours."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow's own guard must not be stricter than the configured limit.
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise ImageRejected(NOT_AN_IMAGE) from None
    except Image.DecompressionBombError:
        width, height = _declared_size(data, formats)
        raise ImageRejected(TOO_MANY_PIXELS.format(width=width, height=height, limit=max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(CORRUPT.format(detail=exc)) from None


def _declared_size(data: bytes, formats: tuple[str, ...]) -> tuple[int | str, int | str]:
    """The width and height a header declares, read by the format's own Pillow plugin, which (unlike
    ``Image.open``) does not refuse to say them; "?" where no plugin can read the header."""
    for name in formats:
        factory, accept = Image.OPEN[name]
        accepted = accept(data[:16]) if accept else True
        if not accepted or isinstance(accepted, str):  # a str: the reason it is not accepted
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except Exception:  # the header of another format, or unreadable: try the next
            continue
    return "?", "?"


def _decode_frame(im: Image.Image, *, max_pixels: int, thumbnail_size: int, thumbnail: bool = True) -> DecodedPage:
    width, height = im.size
    if width * height > max_pixels:
        raise ImageRejected(TOO_MANY_PIXELS.format(width=width, height=height, limit=max_pixels))
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    _draft_for_thumbnail(im, thumbnail_size)
    im.load()
    if not thumbnail:
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        return DecodedPage(width=width, height=height, thumbnail=b"")
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if transpose is not None and orientation >= 5:
        width, height = height, width
    return DecodedPage(width=width, height=height, thumbnail=_thumbnail(im, thumbnail_size, transpose))


def _thumbnail(im: Image.Image, size: int, transpose: Image.Transpose | None = None) -> bytes:
    frame = to_rgb(im)
    # resize() and not thumbnail(), which works in place: ``frame`` may be ``im`` itself (an RGB
    # picture), which the caller still needs whole (a rendered page is stored as PNG after this)
    scale = size / max(frame.size)
    if scale < 1:
        frame = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale))),
                             Image.Resampling.BICUBIC, reducing_gap=2.0)
    if transpose is not None:
        frame = frame.transpose(transpose)
    out = io.BytesIO()
    frame.save(out, format="WEBP", quality=80, method=4)
    return out.getvalue()


def check_jpeg(data: bytes, *, max_pixels: int) -> tuple[int, int]:
    """Check a JPEG without decoding it: (width, height). Raises ImageRejected.

    Reads the header (markers up to the scan) and checks that the stream ends with its
    end-of-image marker, which catches the damage a decode would (truncation) at no cost;
    the pixels are decoded when the thumbnail or the embedding is made. For JPEG streams
    taken from PDFs, where decoding would cost more than taking them out.
    """
    if data[-2:] != b"\xff\xd9" and b"\xff\xd9" not in data[-64:]:  # padding after EOI is allowed
        raise ImageRejected(CORRUPT.format(detail="the JPEG stream has no end-of-image marker"))
    width, height = _open(data, ("JPEG",), max_pixels=max_pixels).size
    if width * height > max_pixels:
        raise ImageRejected(TOO_MANY_PIXELS.format(width=width, height=height, limit=max_pixels))
    return width, height


def _draft_for_thumbnail(im: Image.Image, thumbnail_size: int) -> None:
    """JPEG: decode at a reduced DCT scale, 4–8× faster, since the thumbnail is all we need. The
    request is the thumbnail's own size: asking for a square would keep the long side twice as
    large as needed (a 640×480 photo would decode whole)."""
    if im.format in ("JPEG", "MPO"):
        scale = thumbnail_size / max(im.size)
        im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))


def make_thumbnail(data: bytes, *, thumbnail_size: int = 256) -> bytes:
    """The WebP thumbnail of stored image bytes (EXIF orientation applied)."""
    im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    _draft_for_thumbnail(im, thumbnail_size)
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    return _thumbnail(im, thumbnail_size, _TRANSPOSE_FOR_ORIENTATION.get(orientation))


def placeholder_thumbnail(thumbnail_size: int = 256) -> bytes:
    """A plain grey square, in place of a picture that cannot be decoded."""
    out = io.BytesIO()
    Image.new("RGB", (thumbnail_size, thumbnail_size), (200, 203, 210)).save(out, format="WEBP", quality=80)
    return out.getvalue()


def encode_pixels(im: Image.Image, *, max_pixels: int, thumbnail_size: int = 256) -> DecodedPage:
    """A picture that has no file of its own (a rendered page, an image decoded from a PDF):
    stored losslessly as PNG (``page_png``), with its thumbnail. Raises ImageRejected."""
    width, height = im.size
    if width * height > max_pixels:
        raise ImageRejected(TOO_MANY_PIXELS.format(width=width, height=height, limit=max_pixels))
    return DecodedPage(width=width, height=height, thumbnail=_thumbnail(im, thumbnail_size), page_png=_encode_png(im))


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB; transparency is flattened on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit scans: keep the top 8 bits rather than clipping everything to white.
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("L").convert("RGB")
    if im.mode in ("I", "F"):
        low, high = im.getextrema()
        scale = 255 / (high - low) if high > low else 0
        return im.point(lambda v: (v - low) * scale).convert("L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _encode_png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    frame = im if im.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I") else im.convert("RGB")
    frame.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def open_for_display(data: bytes) -> Image.Image:
    """Open stored bytes as an RGB picture with EXIF orientation applied."""
    im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    return to_rgb(ImageOps.exif_transpose(im))
