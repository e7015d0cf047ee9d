"""Taking the pictures out of PDF documents with PDFium (pypdfium2, Apache-2.0/BSD; no Django).

What becomes a picture of the library:
  * each embedded raster image of useful size, once per document: JPEG streams are
    kept byte for byte, other encodings are decoded to pixels;
  * a scanned page (one image covering the page) is rendered whole at ``render_dpi``,
    as is every page with ``render_all_pages``;
  * with ``vector_figures``, regions of dense vector drawing are rendered as figures.
What does not: images smaller than ``min_image_side`` pixels on either side,
stencil masks and soft masks (the latter are never page objects in PDFium), images
that repeat on ``repeated_image_pages`` or more pages (logos, letterheads), blank
renders, and a second copy of an image already taken from this document.

Positions are in points, origin at the top-left of the page as it is displayed
(after its /Rotate and relative to its crop box), so they match a rendered page.
PDFium is not thread-safe: callers in threaded servers hold ``PDFIUM_LOCK``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

PDF_MAGIC = b"%PDF-"
PDF_MEDIA_TYPE = "application/pdf"
PDFIUM_LOCK = threading.RLock()

ENCRYPTED = "encrypted PDF: it needs a password to open (remove the password and import it again)"
TRUNCATED = "truncated PDF: the file ends before its end-of-file marker (%%EOF)"
CORRUPT = "corrupt PDF: {detail}"
TOO_MANY_PAGES = "too many pages: {pages:,} exceeds the limit of {limit:,} (DOCUMENT_MAX_PAGES)"
NO_PAGES = "the PDF has no pages"
NO_READABLE_PAGES = "no page of the PDF could be read"
_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_FILE: "the file could not be read",
    pdfium_c.FPDF_ERR_FORMAT: "not a valid PDF file",
    pdfium_c.FPDF_ERR_SECURITY: "unsupported security handler",
    pdfium_c.FPDF_ERR_PAGE: "page not found or content error",
}

EMBEDDED, PAGE, FIGURE = "embedded", "page", "figure"
# A page is a scan when one image covers this share of it.
SCAN_COVERAGE = 0.85
# Vector figures: drawings closer than this (points) belong together; a figure has
# at least this many drawing objects and is at least this large (points) both ways.
FIGURE_GAP = 12.0
FIGURE_MIN_OBJECTS = 8
FIGURE_MIN_SIDE = 72.0


class DocumentRejected(ValueError):
    """The document cannot be imported; the message says why, for the user."""


@dataclass(frozen=True)
class PdfOptions:
    min_image_side: int = 64
    render_dpi: int = 150
    render_all_pages: bool = False
    vector_figures: bool = False
    repeated_image_pages: int = 3
    max_pages: int = 10_000
    max_pixels: int = 150_000_000


@dataclass
class PdfPicture:
    """One picture taken from a page: a JPEG as it was embedded, or pixels."""

    page_number: int  # 1-based
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 in points, top-left origin
    kind: str  # EMBEDDED, PAGE or FIGURE
    jpeg: bytes | None = None
    pixels: Image.Image | None = None
    sha256: str = ""  # of ``jpeg``, when there is one


@dataclass
class PdfContents:
    page_sizes: list[tuple[float, float]]  # displayed width, height in points
    pictures: list[PdfPicture] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason → count
    page_errors: list[str] = field(default_factory=list)


def is_pdf(data: bytes) -> bool:
    # The header may follow up to 1 KB of junk, which readers accept.
    return PDF_MAGIC in data[:1024]


def open_pdf(source: bytes | str) -> pdfium.PdfDocument:
    """Open a PDF from its bytes or a path; raises DocumentRejected with the reason."""
    if isinstance(source, bytes | bytearray) and b"%%EOF" not in source[-2048:]:
        raise DocumentRejected(TRUNCATED)
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentRejected(ENCRYPTED) from None
        raise DocumentRejected(CORRUPT.format(detail=_LOAD_ERRORS.get(exc.err_code, str(exc)))) from None


def extract_pdf(data: bytes, options: PdfOptions = PdfOptions()) -> PdfContents:
    """The pictures of a PDF, in page order. Raises DocumentRejected for a PDF it cannot read."""
    with PDFIUM_LOCK:
        pdf = open_pdf(data)
        try:
            return _extract(pdf, options)
        finally:
            pdf.close()


@dataclass
class _Candidate:
    page_index: int
    object_index: int  # among the page's image objects, in PDFium's order
    key: str  # hash of the raw stream: the same image drawn again has the same key
    bbox: tuple[float, float, float, float]
    jpeg: bytes | None


def _extract(pdf: pdfium.PdfDocument, options: PdfOptions) -> PdfContents:
    page_count = len(pdf)
    if page_count == 0:
        raise DocumentRejected(NO_PAGES)
    if page_count > options.max_pages:
        raise DocumentRejected(TOO_MANY_PAGES.format(pages=page_count, limit=options.max_pages))
    contents = PdfContents(page_sizes=[])
    candidates: list[_Candidate] = []
    renders: dict[int, list[tuple[str, tuple]]] = {}  # page index → (kind, bbox) to render
    for index in range(page_count):
        try:
            page = pdf[index]
        except pdfium.PdfiumError as exc:
            contents.page_sizes.append((0.0, 0.0))
            contents.page_errors.append(f"page {index + 1}: could not be read ({exc})")
            continue
        try:
            geometry = _PageGeometry(page)
            contents.page_sizes.append((round(geometry.width, 2), round(geometry.height, 2)))
            page_renders = _scan_page(page, index, geometry, options, candidates, contents.skipped)
            if options.vector_figures and not page_renders:
                page_renders = [(FIGURE, box) for box in _figure_regions(page, geometry)]
            if options.render_all_pages and not any(kind == PAGE for kind, _ in page_renders):
                page_renders.append((PAGE, geometry.full_page))
            if page_renders:
                renders[index] = page_renders
        except pdfium.PdfiumError as exc:
            contents.page_errors.append(f"page {index + 1}: could not be read ({exc})")
        finally:
            page.close()
    if len(contents.page_errors) == page_count:
        raise DocumentRejected(NO_READABLE_PAGES)
    chosen = _choose(candidates, options, contents.skipped)
    _take_pictures(pdf, chosen, renders, options, contents)
    return contents


class _PageGeometry:
    """Converts PDF user-space boxes to displayed, top-left-origin points."""

    def __init__(self, page: pdfium.PdfPage):
        self.left, self.bottom, self.right, self.top = page.get_cropbox()
        self.rotation = page.get_rotation() % 360
        self.raw_width, self.raw_height = self.right - self.left, self.top - self.bottom
        swap = self.rotation in (90, 270)
        self.width, self.height = (self.raw_height, self.raw_width) if swap else (self.raw_width, self.raw_height)
        self.full_page = (0.0, 0.0, round(self.width, 2), round(self.height, 2))

    def to_display(self, left: float, bottom: float, right: float, top: float) -> tuple[float, float, float, float]:
        corners = [self._point(x - self.left, y - self.bottom) for x in (left, right) for y in (bottom, top)]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
        x1, y1 = min(self.width, max(xs)), min(self.height, max(ys))
        return (round(x0, 2), round(y0, 2), round(max(x0, x1), 2), round(max(y0, y1), 2))

    def _point(self, x: float, y: float) -> tuple[float, float]:
        w, h = self.raw_width, self.raw_height
        if self.rotation == 90:
            return y, x
        if self.rotation == 180:
            return w - x, y
        if self.rotation == 270:
            return h - y, w - x
        return x, h - y

    def area(self, box: tuple[float, float, float, float]) -> float:
        return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _page_bounds(obj: pdfium.PdfObject) -> tuple[float, float, float, float]:
    """An object's bounds in page space: inside a Form XObject they are in the form's own space."""
    box = obj.get_bounds()
    container = obj.container
    while container is not None:
        box = container.get_matrix().on_rect(*box)
        container = container.container
    return box


def _objects(
    page: pdfium.PdfPage, types: tuple[int, ...], form: pdfium.PdfObject | None = None, level: int = 0,
) -> Iterator[pdfium.PdfObject]:
    """The page's objects of ``types``, those inside Form XObjects too (many producers wrap every
    figure in one). Like ``PdfPage.get_objects``, but only the objects wanted get a Python
    wrapper: a page of text has hundreds of others."""
    parent = form if form is not None else page
    count, get = ((pdfium_c.FPDFFormObj_CountObjects, pdfium_c.FPDFFormObj_GetObject) if form is not None
                  else (pdfium_c.FPDFPage_CountObjects, pdfium_c.FPDFPage_GetObject))
    for index in range(count(parent)):
        raw = get(parent, index)
        kind = pdfium_c.FPDFPageObj_GetType(raw)
        if kind in types:
            yield pdfium.PdfObject(raw, page=page, pdf=page.pdf, container=form, level=level)
        if kind == pdfium_c.FPDF_PAGEOBJ_FORM and level < _MAX_FORM_DEPTH:
            inner = pdfium.PdfObject(raw, page=page, pdf=page.pdf, container=form, level=level)
            yield from _objects(page, types, inner, level + 1)


_MAX_FORM_DEPTH = 8
_IMAGE = (pdfium_c.FPDF_PAGEOBJ_IMAGE,)
_DRAWING = (pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_SHADING)


def _image_objects(page: pdfium.PdfPage) -> Iterator[pdfium.PdfImage]:
    return _objects(page, _IMAGE)


def _scan_page(
    page: pdfium.PdfPage, index: int, geometry: _PageGeometry, options: PdfOptions,
    candidates: list[_Candidate], skipped: Counter,
) -> list[tuple[str, tuple]]:
    """Note the page's useful images as candidates; returns a page render when it is a scan."""
    found: list[_Candidate] = []
    for object_index, obj in enumerate(_image_objects(page)):
        box = geometry.to_display(*_page_bounds(obj))
        if geometry.area(box) >= SCAN_COVERAGE * geometry.width * geometry.height:
            skipped["scanned page image"] += 1
            return [(PAGE, geometry.full_page)]
        metadata = obj.get_metadata()
        if metadata.colorspace == pdfium_c.FPDF_COLORSPACE_UNKNOWN and metadata.bits_per_pixel == 1:
            skipped["mask"] += 1  # a stencil mask paints a colour through it; it is no picture
            continue
        if min(metadata.width, metadata.height) < options.min_image_side:
            skipped["small"] += 1
            continue
        raw = bytes(obj.get_data(decode_simple=False))
        # the same stream drawn again is the same image; for a JPEG it is also the file's hash
        key = hashlib.sha256(raw).hexdigest()
        is_jpeg = obj.get_filters() == ["DCTDecode"] and metadata.colorspace in (
            pdfium_c.FPDF_COLORSPACE_DEVICEGRAY, pdfium_c.FPDF_COLORSPACE_DEVICERGB)
        found.append(_Candidate(index, object_index, key if is_jpeg else f"{key}-{metadata.width}x{metadata.height}",
                                box, raw if is_jpeg else None))
    candidates.extend(found)
    return []


def _choose(candidates: list[_Candidate], options: PdfOptions, skipped: Counter) -> list[_Candidate]:
    """The first occurrence of each image that does not repeat across many pages."""
    pages_per_key: dict[str, set[int]] = {}
    for c in candidates:
        pages_per_key.setdefault(c.key, set()).add(c.page_index)
    chosen, seen = [], set()
    for c in candidates:
        if len(pages_per_key[c.key]) >= options.repeated_image_pages:
            skipped["repeated on many pages"] += 1
        elif c.key in seen:
            skipped["duplicate in document"] += 1
        else:
            seen.add(c.key)
            chosen.append(c)
    return chosen


def _take_pictures(
    pdf: pdfium.PdfDocument, chosen: list[_Candidate], renders: dict[int, list[tuple[str, tuple]]],
    options: PdfOptions, contents: PdfContents,
) -> None:
    by_page: dict[int, list[_Candidate]] = {}
    for c in chosen:
        by_page.setdefault(c.page_index, []).append(c)
    for index in sorted(set(by_page) | set(renders)):
        wanted = {c.object_index: c for c in by_page.get(index, []) if c.jpeg is None}
        for c in by_page.get(index, []):
            if c.jpeg is not None:  # the stream read in the first pass is the picture
                contents.pictures.append(PdfPicture(index + 1, c.bbox, EMBEDDED, jpeg=c.jpeg, sha256=c.key))
        if not wanted and index not in renders:
            continue
        page = pdf[index]
        try:
            if wanted:
                for object_index, obj in enumerate(_image_objects(page)):
                    if object_index in wanted:
                        c = wanted[object_index]
                        contents.pictures.append(PdfPicture(index + 1, c.bbox, EMBEDDED, pixels=_pixels(obj)))
            geometry = _PageGeometry(page) if index in renders else None
            for kind, box in renders.get(index, []):
                im = render_region(page, geometry, box, dpi=options.render_dpi, max_pixels=options.max_pixels)
                if _is_blank(im):
                    contents.skipped["blank"] += 1
                else:
                    contents.pictures.append(PdfPicture(index + 1, box, kind, pixels=im))
        except pdfium.PdfiumError as exc:
            contents.page_errors.append(f"page {index + 1}: pictures could not be taken ({exc})")
        finally:
            page.close()
    contents.pictures.sort(key=lambda p: (p.page_number, p.bbox[1], p.bbox[0]))


def _pixels(obj: pdfium.PdfImage) -> Image.Image:
    im = obj.get_bitmap(render=False).to_pil()
    # The bitmap's buffer belongs to PDFium and is freed with it: copy out.
    return im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()


def render_region(
    page: pdfium.PdfPage, geometry: _PageGeometry | None, box: tuple[float, float, float, float], *,
    dpi: float, max_pixels: int = 150_000_000,
) -> Image.Image:
    """Render part of a page (``box`` in displayed points) at ``dpi``, capped at ``max_pixels``."""
    geometry = geometry or _PageGeometry(page)
    x0, y0, x1, y1 = box
    scale = dpi / 72
    pixels = (x1 - x0) * (y1 - y0) * scale * scale
    if pixels > max_pixels:
        scale *= (max_pixels / pixels) ** 0.5
    # crop is what to cut off each side (left, bottom, right, top) of the displayed page
    crop = (x0, geometry.height - y1, geometry.width - x1, y0)
    bitmap = page.render(scale=scale, crop=crop, may_draw_forms=True)
    return bitmap.to_pil().convert("RGB")


def _is_blank(im: Image.Image) -> bool:
    low, high = im.convert("L").getextrema()
    return high - low < 8


def _figure_regions(page: pdfium.PdfPage, geometry: _PageGeometry) -> list[tuple[float, float, float, float]]:
    """Boxes of dense vector drawing: clusters of path and shading objects."""
    boxes = [
        geometry.to_display(*_page_bounds(obj))
        for obj in _objects(page, _DRAWING)
    ]
    clusters: list[list] = []  # [box, count]
    for box in boxes:
        merged = [box, 1]
        for cluster in [c for c in clusters if _near(c[0], box)]:
            clusters.remove(cluster)
            merged = [_union(merged[0], cluster[0]), merged[1] + cluster[1]]
        clusters.append(merged)
    changed = True
    while changed:  # merging can bring clusters within reach of each other
        changed = False
        for a in clusters:
            for b in clusters:
                if a is not b and _near(a[0], b[0]):
                    clusters.remove(b)
                    a[0], a[1] = _union(a[0], b[0]), a[1] + b[1]
                    changed = True
                    break
            if changed:
                break
    page_area = geometry.width * geometry.height
    return sorted(
        box for box, count in clusters
        if count >= FIGURE_MIN_OBJECTS and min(box[2] - box[0], box[3] - box[1]) >= FIGURE_MIN_SIDE
        and geometry.area(box) < 0.95 * page_area  # a page frame or background is no figure
    )


def _near(a: tuple, b: tuple) -> bool:
    return not (a[2] + FIGURE_GAP < b[0] or b[2] + FIGURE_GAP < a[0]
                or a[3] + FIGURE_GAP < b[1] or b[3] + FIGURE_GAP < a[1])


def _union(a: tuple, b: tuple) -> tuple:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def render_page_preview(source: bytes | str, page_number: int, *, width: int) -> Image.Image:
    """A page of a PDF rendered ``width`` pixels wide, for the document page."""
    with PDFIUM_LOCK:
        pdf = open_pdf(source)
        try:
            if not 1 <= page_number <= len(pdf):
                raise DocumentRejected(f"no page {page_number} in this document")
            page = pdf[page_number - 1]
            try:
                page_width = page.get_width() or 1.0
                return page.render(scale=width / page_width).to_pil().convert("RGB")
            finally:
                page.close()
        finally:
            pdf.close()
