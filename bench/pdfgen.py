"""A small PDF writer for tests and benchmarks: pages with text, vector graphics and images.

    b = PdfBuilder()
    page = b.add_page()
    page.text("Hello", x=72, y=720)
    page.draw(b.jpeg(jpeg_photo(640, 480)), x=72, y=300, w=320, h=240)
    data = b.to_bytes()

Writes PDF 1.7 with a classic xref table. Only Pillow is needed; ``encrypt_pdf`` also
needs pypdf. Coordinates are PDF points, origin at the bottom left.
"""

from __future__ import annotations

import io
import random
import zlib
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["PdfBuilder", "Page", "XObject", "jpeg_photo", "encrypt_pdf", "scanned_pdf"]

Color = tuple[float, float, float]


def _num(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _pdf_string(text: str) -> str:
    # Helvetica is used with WinAnsiEncoding, so latin-1 is the character set we can show.
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return f"({escaped})"


@dataclass(frozen=True)
class XObject:
    """An image or form XObject: one PDF object, however many pages draw it."""

    num: int
    name: str  # the resource name, unique per document so every page can use the same one
    width: int
    height: int


@dataclass(eq=False)
class Page:
    """One page; its content stream and resources are written by ``PdfBuilder.to_bytes``."""

    builder: PdfBuilder
    width: float
    height: float
    num: int
    contents_num: int
    ops: list[str] = field(default_factory=list)
    xobjects: dict[str, int] = field(default_factory=dict)
    rotate: int = 0  # the page's /Rotate: how viewers turn it (clockwise degrees)
    cropbox: tuple[float, float, float, float] | None = None  # /CropBox, when not the media box

    def text(self, text: str, x: float, y: float, size: float = 12) -> None:
        """Show ``text`` in Helvetica with its baseline starting at (x, y)."""
        self.builder._font()
        self.ops.append(f"BT /F1 {_num(size)} Tf {_num(x)} {_num(y)} Td {_pdf_string(text)} Tj ET")

    def draw(self, xobj: XObject, x: float, y: float, w: float, h: float) -> None:
        """Paint ``xobj`` (image, stencil or form) into the rectangle (x, y, w, h)."""
        self.xobjects[xobj.name] = xobj.num
        self.ops.append(f"q {_num(w)} 0 0 {_num(h)} {_num(x)} {_num(y)} cm /{xobj.name} Do Q")

    def draw_form(self, img: XObject, x: float, y: float, w: float, h: float) -> None:
        """Paint ``img`` through a Form XObject, as many generators wrap their images."""
        self.draw(self.builder._form(img), x, y, w, h)

    def line(self, x0: float, y0: float, x1: float, y1: float, width: float = 1) -> None:
        """Stroke a straight line."""
        self.ops.append(f"q {_num(width)} w {_num(x0)} {_num(y0)} m {_num(x1)} {_num(y1)} l S Q")

    def rect(self, x: float, y: float, w: float, h: float,
             fill: Color | None = None, stroke: bool = True) -> None:
        """Draw a rectangle, filled with the RGB colour ``fill`` (0..1) and/or stroked."""
        paint = {(True, True): "B", (True, False): "f", (False, True): "S", (False, False): "n"}
        colour = "" if fill is None else " ".join(_num(c) for c in fill) + " rg "
        self.ops.append(f"q {colour}{_num(x)} {_num(y)} {_num(w)} {_num(h)} re "
                        f"{paint[fill is not None, stroke]} Q")

    def fill_color(self, rgb: Color) -> None:
        """Set the fill colour for what follows (stencil masks are painted in it)."""
        self.ops.append(" ".join(_num(c) for c in rgb) + " rg")


class PdfBuilder:
    """Collects objects and pages, then serialises them with ``to_bytes``."""

    def __init__(self) -> None:
        # Object 1 is the catalog and 2 the page tree; they are written last.
        self._objects: list[bytes | None] = [None, None]
        self._pages: list[Page] = []
        self._font_num: int | None = None
        self._forms: dict[int, XObject] = {}

    def _add(self, body: bytes | None = None) -> int:
        self._objects.append(body)
        return len(self._objects)

    @staticmethod
    def _stream(entries: str, data: bytes) -> bytes:
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries.encode(), len(data), data)

    def _font(self) -> None:
        if self._font_num is None:  # one shared font object, only in documents that show text
            self._font_num = self._add(
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")

    def _image(self, entries: str, data: bytes, width: int, height: int) -> XObject:
        num = self._add(self._stream(
            f"/Type /XObject /Subtype /Image /Width {width} /Height {height} {entries}", data))
        return XObject(num, f"Im{num}", width, height)

    def add_page(self, width: float = 612, height: float = 792, rotate: int = 0,
                 cropbox: tuple[float, float, float, float] | None = None) -> Page:
        """Append a page of ``width`` x ``height`` points (US Letter by default)."""
        page = Page(self, width, height, num=self._add(), contents_num=self._add(), rotate=rotate,
                    cropbox=cropbox)
        self._pages.append(page)
        return page

    @staticmethod
    def _cropbox(page: Page) -> str:
        return "" if page.cropbox is None else "/CropBox [%s] " % " ".join(_num(v) for v in page.cropbox)

    def jpeg(self, data: bytes, icc_profile: bytes | None = None) -> XObject:
        """An image XObject holding the JPEG bytes unchanged (/DCTDecode); with ``icc_profile``
        its colour space is [/ICCBased …], as Word, InDesign and Acrobat write."""
        with Image.open(io.BytesIO(data)) as im:
            mode, (width, height), info = im.mode, im.size, im.info
        spaces = {"L": "DeviceGray", "RGB": "DeviceRGB", "CMYK": "DeviceCMYK"}
        if mode not in spaces:
            raise ValueError(f"unsupported JPEG mode {mode!r}")
        space = f"/{spaces[mode]}"
        if icc_profile is not None:
            components = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
            profile = self._add(self._stream(f"/N {components}", icc_profile))
            space = f"[/ICCBased {profile} 0 R]"
        entries = f"/ColorSpace {space} /BitsPerComponent 8 /Filter /DCTDecode"
        if mode == "CMYK" and "adobe" in info:
            # Adobe (and Pillow) store CMYK JPEGs inverted; readers expect a Decode to undo it.
            entries += " /Decode [1 0 1 0 1 0 1 0]"
        return self._image(entries, data, width, height)

    def raw(self, im: Image.Image, smask: Image.Image | None = None) -> XObject:
        """A Flate-compressed image from a Pillow image in mode L, RGB or 1 (1-bit gray).

        ``smask`` is an 'L' image of the same size used as a soft mask (alpha); it becomes
        its own XObject referenced by /SMask, never drawn on the page itself.
        """
        formats = {"L": ("DeviceGray", 8), "RGB": ("DeviceRGB", 8), "1": ("DeviceGray", 1)}
        if im.mode not in formats:
            raise ValueError(f"unsupported image mode {im.mode!r}")
        space, bits = formats[im.mode]
        entries = f"/ColorSpace /{space} /BitsPerComponent {bits} /Filter /FlateDecode"
        if smask is not None:
            if smask.mode != "L" or smask.size != im.size:
                raise ValueError("smask must be an 'L' image of the same size")
            mask = self._image("/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode",
                               zlib.compress(smask.tobytes()), *smask.size)
            entries += f" /SMask {mask.num} 0 R"
        # Pillow packs mode '1' rows MSB-first, padded to whole bytes, 1 = white: as PDF does.
        return self._image(entries, zlib.compress(im.tobytes()), *im.size)

    def declared(self, width: int, height: int) -> XObject:
        """An RGB image that declares ``width`` × ``height`` pixels but holds almost no data: the
        header of a decompression bomb, which a reader must refuse before decoding."""
        return self._image("/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode",
                           zlib.compress(bytes(1024)), width, height)

    def stencil(self, im: Image.Image) -> XObject:
        """A 1-bit /ImageMask: black pixels are painted in the current fill colour."""
        if im.mode != "1":
            raise ValueError("a stencil mask needs a mode '1' image")
        return self._image("/ImageMask true /BitsPerComponent 1 /Filter /FlateDecode",
                           zlib.compress(im.tobytes()), *im.size)

    def _form(self, img: XObject) -> XObject:
        # One form per image, reused, so repeated draws stay one object like the image itself.
        if img.num not in self._forms:
            num = self._add(self._stream(
                f"/Type /XObject /Subtype /Form /BBox [0 0 1 1] "
                f"/Resources << /XObject << /{img.name} {img.num} 0 R >> >>",
                f"/{img.name} Do".encode()))
            self._forms[img.num] = XObject(num, f"Fm{num}", 1, 1)
        return self._forms[img.num]

    def to_bytes(self, page_count: int | None = None) -> bytes:
        """Serialise the document: header, objects, xref table, trailer, one %%EOF.

        ``page_count``: the /Count the page tree claims, when a test wants it to lie (readers
        believe it); by default the number of pages there are."""
        for page in self._pages:
            resources = ""
            if self._font_num is not None:
                resources += f"/Font << /F1 {self._font_num} 0 R >> "
            if page.xobjects:
                refs = " ".join(f"/{name} {num} 0 R" for name, num in page.xobjects.items())
                resources += f"/XObject << {refs} >>"
            self._objects[page.num - 1] = (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_num(page.width)} {_num(page.height)}] "
                f"/Rotate {page.rotate} {self._cropbox(page)}/Resources << {resources} >> /Contents {page.contents_num} 0 R >>").encode()
            content = zlib.compress("\n".join(page.ops).encode("latin-1"))
            self._objects[page.contents_num - 1] = self._stream("/Filter /FlateDecode", content)
        kids = " ".join(f"{page.num} 0 R" for page in self._pages)
        self._objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
        self._objects[1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(self._pages) if page_count is None else page_count} >>".encode()

        # The binary comment line tells transfer tools the file is not plain text.
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for num, body in enumerate(self._objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self._objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(self._objects) + 1, xref)
        return bytes(out)


def jpeg_photo(width: int, height: int, seed: int = 0, quality: int = 85) -> bytes:
    """A deterministic photo-like JPEG: smooth colour gradients, soft shapes and grain."""
    rng = random.Random(seed)
    size = (width, height)
    # Shapes are drawn small and scaled up so their edges come out soft, like a photo's.
    small = (max(1, width // 8), max(1, height // 8))
    bands = []
    for gradient in rng.sample([Image.linear_gradient("L"), Image.radial_gradient("L"),
                                Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90)], 3):
        scale = rng.uniform(0.4, 1.0)
        offset = rng.randrange(int(255 * (1 - scale)) + 1)  # keeps the gradient from wrapping
        band = gradient.resize(small, Image.Resampling.NEAREST)
        bands.append(band.point(lambda v, s=scale, o=offset: int(v * s + o)))
    base = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(base)
    for _ in range(rng.randint(3, 7)):
        x0, y0 = rng.randrange(small[0]), rng.randrange(small[1])
        box = (x0, y0, x0 + rng.randint(2, small[0] // 2 + 2), y0 + rng.randint(2, small[1] // 2 + 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    # Smoothing at half size then doubling the pixels costs a quarter of smoothing at full size.
    half = (max(1, width // 2), max(1, height // 2))
    photo = base.filter(ImageFilter.BoxBlur(1)).resize(half, Image.Resampling.BILINEAR)
    # Grain from rng rather than Image.effect_noise, which is slower and seeded globally.
    grain = Image.frombytes("L", half, rng.randbytes(half[0] * half[1]))
    photo = Image.blend(photo, Image.merge("RGB", [grain] * 3), 0.06)
    photo = photo.resize(size, Image.Resampling.NEAREST)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=quality)
    return out.getvalue()


def encrypt_pdf(pdf_bytes: bytes, user_password: str = "secret", owner_password: str = "owner") -> bytes:
    """The same document encrypted with RC4-128; ``user_password=""`` opens without asking."""
    from pypdf import PdfReader, PdfWriter  # only this function needs pypdf

    reader = PdfReader(io.BytesIO(pdf_bytes))
    writer = PdfWriter(clone_from=reader)
    writer.pdf_header = reader.pdf_header  # pypdf would write %PDF-1.3 otherwise
    # RC4 is implemented in pypdf itself; AES would need the cryptography package.
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned_pdf(pages: int, seed: int = 0, dpi: int = 150) -> bytes:
    """A scan-like document: each page one full-page grayscale JPEG of text-like bars, no text."""
    rng = random.Random(seed)
    width, height = round(612 * dpi / 72), round(792 * dpi / 72)
    line, margin = max(2, dpi // 6), dpi
    builder = PdfBuilder()
    for _ in range(pages):
        scan = Image.new("L", (width, height), 235 + rng.randrange(15))
        draw = ImageDraw.Draw(scan)
        y = margin
        while y < height - margin:
            last_line = rng.random() < 0.2  # a paragraph's last line stops well short
            x, end = margin, width - margin - rng.randrange(width // 3 if last_line else dpi // 4 + 1)
            while x < end:
                word = rng.randint(line, line * 6)
                draw.rectangle((x, y, min(x + word, end), y + line * 2 // 3), fill=rng.randrange(10, 60))
                x += word + line // 2
            y += line * 2 if rng.random() > 0.1 else line * 4  # occasional paragraph gap
        out = io.BytesIO()
        scan.save(out, "JPEG", quality=75)
        builder.add_page(612, 792).draw(builder.jpeg(out.getvalue()), 0, 0, 612, 792)
    return builder.to_bytes()
