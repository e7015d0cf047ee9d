"""Taking the pictures out of PDF documents with PDFium (pypdfium2, Apache-2.0/BSD; no Django).

What becomes a picture of the library:
  * each embedded raster image of useful size, once per document: JPEG streams are
    kept byte for byte, other encodings are decoded to pixels;
  * a scanned page (one image covering the page) is rendered whole at ``render_dpi``,
    as is every page with ``render_all_pages``;
  * with ``vector_figures``, regions of dense vector drawing are rendered as figures.
What does not: images smaller than ``min_image_side`` pixels on either side,
stencil masks and soft masks (the latter are never page objects in PDFium), images
that repeat on ``repeated_image_pages`` or more pages and on at least ``repeated_image_share``
of them (logos, letterheads, backgrounds), blank
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

import numpy as np
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
PAGES_MISSING = "the PDF says it has {claimed:,} pages but has {found:,}: the others are not there"
RENDERED_SMALLER = ("page {page}: rendered at {dpi:.0f} dpi instead of {wanted:.0f}, the most that fits "
                    "{limit:,} pixels (IMAGE_MAX_PIXELS)")
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
FIGURE_CELL = 6.0
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
    # and on at least this share of the pages: a figure reused on 3 pages of a 300-page report stays
    repeated_image_share: float = 0.1
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


_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def is_pdf(data: bytes) -> bool:
    # The header may follow up to 1 KB of junk, which readers accept; an image whose
    # metadata happens to hold "%PDF-" is still an image.
    return not data.startswith(_IMAGE_MAGIC) and PDF_MAGIC in data[:1024]


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
    """All the pictures of a PDF at once (small documents, tests); the importer streams them
    with ``PdfPictures``. Raises DocumentRejected for a PDF it cannot read."""
    with PdfPictures(data, options) as pdf:
        pictures = list(pdf)
    return PdfContents(pdf.page_sizes, pictures, pdf.skipped, pdf.page_errors)


@dataclass
class _Candidate:
    page_index: int
    object_index: int  # among the page's image objects, in PDFium's order
    key: str  # hash of the raw stream: the same image drawn again has the same key
    bbox: tuple[float, float, float, float]
    is_jpeg: bool
    full_page: bool
    jpeg: bytes | None = None  # kept from the first pass while the budget allows


# JPEG streams read in the first pass are kept for the second up to this many bytes a document
# (re-reading them would load every page twice); beyond it they are read again.
_KEPT_JPEG_BYTES = 64 * 1024 * 1024
# the formats whose stream is a JPEG file as it is: 1 or 3 components (CMYK JPEGs in PDFs are
# often stored inverted, so they are decoded instead)
_PLAIN_COLOURS = {pdfium_c.FPDF_COLORSPACE_DEVICEGRAY, pdfium_c.FPDF_COLORSPACE_DEVICERGB,
                  pdfium_c.FPDF_COLORSPACE_CALGRAY, pdfium_c.FPDF_COLORSPACE_CALRGB}


class PdfPictures:
    """The pictures of one PDF, taken page by page, so that a 1,000-page scan is never in memory
    at once. A first pass notes every image (where, how big, a hash of its stream), so that
    images repeated across pages are known before any is taken; iterating takes the pictures.

        with PdfPictures(data, options) as pdf:
            for picture in pdf: ...
            pdf.page_sizes, pdf.skipped, pdf.page_errors

    PDFium is not thread-safe: the module lock is held from opening to closing.
    """

    def __init__(self, data: bytes, options: PdfOptions = PdfOptions()):
        self.options = options
        self.page_sizes: list[tuple[float, float]] = []
        self.skipped: Counter = Counter()
        self.page_errors: list[str] = []
        PDFIUM_LOCK.acquire()
        self._locked = True
        self._pdf = None
        try:
            self._pdf = open_pdf(data)
            self._plan()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PdfPictures:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        pdf, self._pdf = self._pdf, None
        if pdf is not None:
            pdf.close()
        if self._locked:
            self._locked = False
            PDFIUM_LOCK.release()

    # -- first pass: what to take ----------------------------------------------------

    def _plan(self) -> None:
        pdf, options = self._pdf, self.options
        # the count the page tree claims (its /Count), which PDFium believes: the pages are counted below
        claimed = len(pdf)
        if claimed == 0:
            raise DocumentRejected(NO_PAGES)
        if claimed > options.max_pages and _page_exists(pdf, options.max_pages):
            raise DocumentRejected(TOO_MANY_PAGES.format(pages=claimed, limit=options.max_pages))
        candidates: list[_Candidate] = []
        figures: dict[int, list[tuple]] = {}
        unreadable = 0
        missing: list[int] = []  # pages that could not be loaded, which may not exist at all
        for index in range(min(claimed, options.max_pages)):
            try:
                page = pdf[index]
            except pdfium.PdfiumError as exc:
                self.page_sizes.append((0.0, 0.0))
                self.page_errors.append(f"page {index + 1}: could not be read ({exc})")
                missing.append(index)
                unreadable += 1
                continue
            try:
                geometry = _PageGeometry(page)
                self.page_sizes.append((round(geometry.width, 2), round(geometry.height, 2)))
                candidates += self._page_candidates(page, index, geometry)
                if options.vector_figures:
                    figures[index] = _figure_regions(page, geometry)
            except (pdfium.PdfiumError, ValueError) as exc:
                self.page_errors.append(f"page {index + 1}: could not be read ({exc})")
                unreadable += 1
                if len(self.page_sizes) == index:  # one size per page, known or not
                    self.page_sizes.append((0.0, 0.0))
            finally:
                page.close()
        if unreadable == len(self.page_sizes):
            raise DocumentRejected(NO_READABLE_PAGES)
        self._drop_pages_not_there(claimed, missing)
        self._choose(candidates, figures)

    def _drop_pages_not_there(self, claimed: int, missing: list[int]) -> None:
        """Pages after the last one that loads are not in the page tree, whatever its /Count says:
        the document has the pages up to that one, and one line says so (not one per page)."""
        found = len(self.page_sizes)
        while missing and missing[-1] == found - 1:
            missing.pop()
            found -= 1
        if found < claimed:
            del self.page_sizes[found:]
            self.page_errors = [e for e in self.page_errors if _page_of(e) <= found]
            self.page_errors.append(PAGES_MISSING.format(claimed=claimed, found=found))

    def _page_candidates(self, page: pdfium.PdfPage, index: int, geometry: _PageGeometry) -> list[_Candidate]:
        found = []
        page_area = geometry.width * geometry.height
        for object_index, obj in enumerate(_image_objects(page)):
            metadata = obj.get_metadata()
            if metadata.colorspace == pdfium_c.FPDF_COLORSPACE_UNKNOWN and metadata.bits_per_pixel == 1:
                self.skipped["mask"] += 1  # a stencil mask paints a colour through it; it is no picture
                continue
            if min(metadata.width, metadata.height) < self.options.min_image_side:
                self.skipped["small"] += 1
                continue
            if metadata.width * metadata.height > self.options.max_pixels:
                # refused before its pixels are decoded: a small file can declare a huge image
                self.skipped["too many pixels"] += 1
                self.page_errors.append(f"page {index + 1}: an image of {metadata.width}×{metadata.height} pixels "
                                        f"was left out (IMAGE_MAX_PIXELS)")
                continue
            box = geometry.to_display(*_page_bounds(obj))
            raw = bytes(obj.get_data(decode_simple=False))
            is_jpeg = obj.get_filters() == ["DCTDecode"] and (
                metadata.colorspace in _PLAIN_COLOURS
                or (metadata.colorspace == pdfium_c.FPDF_COLORSPACE_ICCBASED and metadata.bits_per_pixel in (8, 24)))
            # the same stream drawn again is the same image; for a JPEG it is also the file's hash
            key = hashlib.sha256(raw).hexdigest()
            found.append(_Candidate(
                index, object_index, key if is_jpeg else f"{key}-{metadata.width}x{metadata.height}", box, is_jpeg,
                full_page=geometry.area(box) >= SCAN_COVERAGE * page_area, jpeg=raw if is_jpeg else None,
            ))
        return found

    def _choose(self, candidates: list[_Candidate], figures: dict[int, list[tuple]]) -> None:
        """Decide, for every page, which images to take and what to render."""
        pages_per_key: dict[str, set[int]] = {}
        for c in candidates:
            pages_per_key.setdefault(c.key, set()).add(c.page_index)
        per_page: dict[int, list[_Candidate]] = {}
        repeated = max(self.options.repeated_image_pages, self.options.repeated_image_share * len(self.page_sizes))
        for c in candidates:
            if len(pages_per_key[c.key]) >= repeated:
                self.skipped["repeated on many pages"] += 1  # a logo, a letterhead, a background
            else:
                per_page.setdefault(c.page_index, []).append(c)
        self._take: dict[int, list[_Candidate]] = {}
        self._render: dict[int, list[tuple[str, tuple]]] = {}
        seen: set[str] = set()
        kept_bytes = 0
        for index in range(len(self.page_sizes)):
            useful = per_page.get(index, [])
            full_page = (0.0, 0.0, *self.page_sizes[index])
            if useful and all(c.full_page for c in useful):
                # a scan: the page is its picture (a full-page image beside other pictures is not)
                self.skipped["scanned page image"] += len(useful)
                self._render[index] = [(PAGE, full_page)]
                continue
            for c in useful:
                if c.key in seen:
                    self.skipped["duplicate in document"] += 1
                    continue
                seen.add(c.key)
                if c.jpeg is not None:
                    kept_bytes += len(c.jpeg)
                    if kept_bytes > _KEPT_JPEG_BYTES:
                        c.jpeg = None  # read again when taken
                self._take.setdefault(index, []).append(c)
            renders = [(FIGURE, box) for box in figures.get(index, [])]
            if self.options.render_all_pages:
                renders.append((PAGE, full_page))
            if renders:
                self._render[index] = renders

    # -- second pass: the pictures --------------------------------------------------

    def __iter__(self) -> Iterator[PdfPicture]:
        for index in sorted(set(self._take) | set(self._render)):
            take = self._take.get(index, [])
            if all(c.jpeg is not None for c in take) and index not in self._render:
                # the streams read in the first pass are the pictures: no need to load the page again
                yield from (PdfPicture(index + 1, c.bbox, EMBEDDED, jpeg=c.jpeg, sha256=c.key) for c in take)
                continue
            try:
                yield from self._page_pictures(index, take)
            except (pdfium.PdfiumError, ValueError) as exc:
                self.page_errors.append(f"page {index + 1}: pictures could not be taken ({exc})")

    def _page_pictures(self, index: int, take: list[_Candidate]) -> Iterator[PdfPicture]:
        page = self._pdf[index]
        try:
            wanted = {c.object_index: c for c in take}
            if wanted:
                for object_index, obj in enumerate(_image_objects(page)):
                    c = wanted.get(object_index)
                    if c is None:
                        continue
                    if c.is_jpeg:
                        jpeg = c.jpeg if c.jpeg is not None else bytes(obj.get_data(decode_simple=False))
                        yield PdfPicture(index + 1, c.bbox, EMBEDDED, jpeg=jpeg, sha256=c.key)
                    else:
                        yield PdfPicture(index + 1, c.bbox, EMBEDDED, pixels=_pixels(obj))
            geometry = _PageGeometry(page)
            for kind, box in self._render.get(index, []):
                dpi = render_dpi(box, dpi=self.options.render_dpi, max_pixels=self.options.max_pixels)
                if dpi < self.options.render_dpi:
                    self.page_errors.append(RENDERED_SMALLER.format(
                        page=index + 1, dpi=dpi, wanted=self.options.render_dpi, limit=self.options.max_pixels))
                im = render_region(page, geometry, box, dpi=dpi, max_pixels=self.options.max_pixels)
                if _is_blank(im):
                    self.skipped["blank"] += 1
                else:
                    yield PdfPicture(index + 1, box, kind, pixels=im)
        finally:
            page.close()


def _page_exists(pdf: pdfium.PdfDocument, index: int) -> bool:
    try:
        pdf[index].close()
    except pdfium.PdfiumError:
        return False
    return True


def _page_of(page_error: str) -> int:
    """The page number a page error begins with ("page 12: …")."""
    return int(page_error.split(":", 1)[0].removeprefix("page "))


class _PageGeometry:
    """Converts PDF user-space boxes to displayed, top-left-origin points."""

    def __init__(self, page: pdfium.PdfPage):
        # the visible page: its crop box within its media box (inherited from the page tree)
        self.left, self.bottom, self.right, self.top = page.get_bbox()
        self.rotation = page.get_rotation() % 360
        self.raw_width, self.raw_height = self.right - self.left, self.top - self.bottom
        swap = self.rotation in (90, 270)
        self.width, self.height = (self.raw_height, self.raw_width) if swap else (self.raw_width, self.raw_height)

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


def _pixels(obj: pdfium.PdfImage) -> Image.Image:
    im = obj.get_bitmap(render=False).to_pil()
    # The bitmap's buffer belongs to PDFium and is freed with it: copy out.
    return im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()


def render_dpi(box: tuple[float, float, float, float], *, dpi: float, max_pixels: int) -> float:
    """``dpi``, or the largest resolution at which ``box`` (points) renders within ``max_pixels``.

    PDFium's bitmap is each side in points × scale, rounded up, so up to one pixel more each way:
    the scale s solves (w·s + 1)(h·s + 1) = max_pixels."""
    width, height = box[2] - box[0], box[3] - box[1]
    scale = dpi / 72
    if width <= 0 or height <= 0 or (width * scale + 1) * (height * scale + 1) <= max_pixels:
        return dpi
    a, b, c = width * height, width + height, 1 - max_pixels
    return 72 * (-b + (b * b - 4 * a * c) ** 0.5) / (2 * a)


def render_region(
    page: pdfium.PdfPage, geometry: _PageGeometry, box: tuple[float, float, float, float], *,
    dpi: float, max_pixels: int = 150_000_000,
) -> Image.Image:
    """Render part of a page (``box`` in displayed points) at ``dpi``, or at less where more pixels
    than ``max_pixels`` would come out (``render_dpi``)."""
    x0, y0, x1, y1 = box
    scale = render_dpi(box, dpi=dpi, max_pixels=max_pixels) / 72
    # crop is what to cut off each side (left, bottom, right, top) of the displayed page
    crop = (x0, geometry.height - y1, geometry.width - x1, y0)
    bitmap = page.render(scale=scale, crop=crop, may_draw_forms=True)
    try:
        # PDFium's BGR bitmap becomes a new RGB image (not a view of the bitmap): no second copy
        im = bitmap.to_pil()
        return im if im.mode == "RGB" else im.convert("RGB")
    finally:
        bitmap.close()  # its buffer now, not when the garbage collector gets to it


def _is_blank(im: Image.Image) -> bool:
    low, high = im.convert("L").getextrema()
    return high - low < 8


def _figure_regions(page: pdfium.PdfPage, geometry: _PageGeometry) -> list[tuple[float, float, float, float]]:
    """Boxes of dense vector drawing: path and shading objects within FIGURE_GAP of each other.

    Each drawing's box, grown by half the gap, is marked on a grid of FIGURE_CELL-point cells;
    the connected groups of marked cells are the candidate figures. The work is bounded by the
    page's cells, however many thousand paths a map or a plan has.
    """
    page_area = geometry.width * geometry.height
    # a page frame or a background would join everything into one: it is no part of a figure
    boxes = [box for box in (geometry.to_display(*_page_bounds(obj)) for obj in _objects(page, _DRAWING))
             if geometry.area(box) < 0.5 * page_area]
    if len(boxes) < FIGURE_MIN_OBJECTS:
        return []
    columns, rows = int(geometry.width // FIGURE_CELL) + 1, int(geometry.height // FIGURE_CELL) + 1
    grid = np.zeros((rows, columns), dtype=bool)
    margin = FIGURE_GAP / 2
    cells = []
    for x0, y0, x1, y1 in boxes:
        c0, r0 = max(int((x0 - margin) // FIGURE_CELL), 0), max(int((y0 - margin) // FIGURE_CELL), 0)
        c1, r1 = min(int((x1 + margin) // FIGURE_CELL), columns - 1), min(int((y1 + margin) // FIGURE_CELL), rows - 1)
        grid[r0 : r1 + 1, c0 : c1 + 1] = True
        cells.append((r0, c0))
    labels = _connected_cells(grid)
    groups: dict[int, list] = {}  # label → [box, count]
    for box, (r, c) in zip(boxes, cells):
        group = groups.setdefault(int(labels[r, c]), [box, 0])
        group[0], group[1] = _union(group[0], box), group[1] + 1
    return sorted(
        box for box, count in groups.values()
        if count >= FIGURE_MIN_OBJECTS and min(box[2] - box[0], box[3] - box[1]) >= FIGURE_MIN_SIDE
        and geometry.area(box) < 0.95 * page_area
    )


def _connected_cells(grid: np.ndarray) -> np.ndarray:
    """Label the 8-connected groups of True cells (1, 2, …; 0 for False)."""
    labels = np.zeros(grid.shape, dtype=np.int32)
    rows, columns = grid.shape
    label = 0
    for start in zip(*np.nonzero(grid)):
        if labels[start]:
            continue
        label += 1
        labels[start] = label
        stack = [start]
        while stack:
            r, c = stack.pop()
            for nr in range(max(r - 1, 0), min(r + 2, rows)):
                for nc in range(max(c - 1, 0), min(c + 2, columns)):
                    if grid[nr, nc] and not labels[nr, nc]:
                        labels[nr, nc] = label
                        stack.append((nr, nc))
    return labels


def _union(a: tuple, b: tuple) -> tuple:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


_PREVIEW_MAX_PIXELS = 8_000_000


def render_page_preview(source: bytes | str, page_number: int, *, width: int) -> Image.Image:
    """A page of a PDF rendered ``width`` pixels wide, for the document page."""
    with PDFIUM_LOCK:
        pdf = open_pdf(source)
        try:
            if not 1 <= page_number <= len(pdf):
                raise DocumentRejected(f"no page {page_number} in this document")
            page = pdf[page_number - 1]
            try:
                page_width, page_height = page.get_width() or 1.0, page.get_height() or 1.0
                scale = width / page_width
                # a strip-shaped page (a long receipt, a 1-pt-wide page) must not become a huge bitmap
                scale = min(scale, (_PREVIEW_MAX_PIXELS / (page_width * page_height)) ** 0.5)
                return page.render(scale=scale).to_pil().convert("RGB")
            finally:
                page.close()
        finally:
            pdf.close()
