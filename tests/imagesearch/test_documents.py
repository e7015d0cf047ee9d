"""Taking pictures out of generated PDFs (imagesearch.documents; no database)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bench.pdfgen import PdfBuilder, encrypt_pdf, jpeg_photo, scanned_pdf
from imagesearch import documents
from imagesearch.documents import EMBEDDED, FIGURE, PAGE, DocumentRejected, PdfOptions, extract_pdf
from tests import hostile


def report(pages: int = 3, logo: bool = False, seed: int = 0) -> tuple[bytes, list[bytes]]:
    """A report: a photo and some text on every page, and optionally the same logo on each."""
    b = PdfBuilder()
    logo_xobj = b.raw(Image.new("RGB", (120, 80), (200, 30, 30))) if logo else None
    photos = [jpeg_photo(320, 240, seed=seed * 100 + i) for i in range(pages)]
    for i, photo in enumerate(photos):
        page = b.add_page()
        page.text(f"Section {i + 1}: seismic line", x=72, y=740)
        page.draw(b.jpeg(photo), x=72, y=300, w=320, h=240)
        if logo_xobj:
            page.draw(logo_xobj, x=500, y=740, w=60, h=40)
    return b.to_bytes(), photos


def test_each_embedded_photo_becomes_a_picture_at_its_place_on_its_page():
    data, photos = report(pages=3)
    contents = extract_pdf(data)
    assert contents.page_sizes == [(612.0, 792.0)] * 3
    assert [p.page_number for p in contents.pictures] == [1, 2, 3]
    assert [p.jpeg for p in contents.pictures] == photos  # the JPEG stream, byte for byte
    # placed at x 72..392, y 300..540 from the bottom: 252..492 from the top
    assert {p.bbox for p in contents.pictures} == {(72.0, 252.0, 392.0, 492.0)}
    assert {p.kind for p in contents.pictures} == {EMBEDDED}


def test_a_logo_on_every_page_is_left_out_but_kept_in_a_short_document():
    data, photos = report(pages=4, logo=True)
    contents = extract_pdf(data)
    assert [p.jpeg for p in contents.pictures] == photos
    assert contents.skipped["repeated on many pages"] == 4
    # on two pages only it is a picture of the document, taken once
    two_pages, _ = report(pages=2, logo=True)
    contents = extract_pdf(two_pages, PdfOptions(repeated_image_pages=3))
    logos = [p for p in contents.pictures if p.jpeg is None]
    assert len(logos) == 1 and logos[0].pixels.size == (120, 80)
    assert contents.skipped["duplicate in document"] == 1


def test_small_decorations_and_stencil_masks_are_left_out_and_soft_masks_are_no_pictures():
    b = PdfBuilder()
    page = b.add_page()
    page.draw(b.raw(Image.new("RGB", (32, 32), (0, 0, 255))), 72, 700, 16, 16)  # a bullet icon
    page.fill_color((1, 0, 0))
    page.draw(b.stencil(Image.new("1", (200, 200), 1)), 72, 400, 100, 100)
    alpha = Image.linear_gradient("L").resize((150, 100))
    page.draw(b.raw(Image.new("RGB", (150, 100), (0, 128, 0)), smask=alpha), 300, 400, 150, 100)
    contents = extract_pdf(b.to_bytes(), PdfOptions(min_image_side=64))
    assert len(contents.pictures) == 1
    assert contents.pictures[0].pixels.size == (150, 100)
    assert contents.skipped["small"] == 1 and contents.skipped["mask"] == 1


def test_an_image_inside_a_form_xobject_is_found_at_its_page_position():
    b = PdfBuilder()
    photo = jpeg_photo(200, 100, seed=5)
    b.add_page().draw_form(b.jpeg(photo), x=100, y=200, w=200, h=100)
    (picture,) = extract_pdf(b.to_bytes()).pictures
    assert picture.jpeg == photo
    assert picture.bbox == (100.0, 492.0, 300.0, 592.0)


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_positions_are_those_of_the_displayed_page_whatever_its_rotation(rotate):
    b = PdfBuilder()
    page = b.add_page(width=400, height=300, rotate=rotate)
    page.draw(b.raw(Image.new("RGB", (100, 80), (255, 0, 0))), x=40, y=30, w=100, h=80)
    data = b.to_bytes()
    contents = extract_pdf(data)
    (picture,) = contents.pictures
    width, height = contents.page_sizes[0]
    assert (width, height) == ((300.0, 400.0) if rotate in (90, 270) else (400.0, 300.0))
    # the box is red on the page as a viewer shows it
    rendered = documents.render_page_preview(data, 1, width=int(width))
    x0, y0, x1, y1 = picture.bbox
    assert rendered.getpixel((int((x0 + x1) / 2), int((y0 + y1) / 2)))[:3] == (255, 0, 0)
    assert rendered.getpixel((int(x0) - 5 if x0 > 5 else int(x1) + 5, int(y0) + 5))[:3] == (255, 255, 255)


def test_a_scanned_page_is_rendered_whole_at_the_configured_resolution():
    contents = extract_pdf(scanned_pdf(2, seed=1), PdfOptions(render_dpi=100))
    assert [(p.page_number, p.kind, p.bbox) for p in contents.pictures] == [
        (1, PAGE, (0.0, 0.0, 612.0, 792.0)), (2, PAGE, (0.0, 0.0, 612.0, 792.0))]
    assert contents.pictures[0].pixels.size == (850, 1100)  # 8.5 × 11 in at 100 dpi
    assert contents.skipped["scanned page image"] == 2


def test_every_page_can_be_rendered_besides_its_embedded_pictures_and_blank_pages_are_not():
    data, _ = report(pages=2)
    b = PdfBuilder()
    b.add_page()  # blank
    contents = extract_pdf(data, PdfOptions(render_all_pages=True, render_dpi=36))
    assert sorted((p.page_number, p.kind) for p in contents.pictures) == [
        (1, EMBEDDED), (1, PAGE), (2, EMBEDDED), (2, PAGE)]
    blank = extract_pdf(b.to_bytes(), PdfOptions(render_all_pages=True, render_dpi=36))
    assert blank.pictures == [] and blank.skipped["blank"] == 1


def test_vector_figures_are_rendered_only_when_asked():
    b = PdfBuilder()
    page = b.add_page()
    page.text("Figure 1: a chart drawn with lines", x=72, y=250)
    for i in range(12):  # a bar chart of vector rectangles and an axis
        page.rect(100 + i * 25, 300, 18, 20 + i * 10, fill=(0.2, 0.3, 0.8))
    page.line(95, 300, 400, 300)
    page.line(95, 300, 95, 450)
    page.line(72, 100, 540, 100)  # a rule under the text, no figure
    data = b.to_bytes()
    assert extract_pdf(data).pictures == []
    (figure,) = extract_pdf(data, PdfOptions(vector_figures=True, render_dpi=72)).pictures
    assert figure.kind == FIGURE
    x0, y0, x1, y1 = figure.bbox
    # the bars and both axes (stroked 1 pt wide), not the rule far below
    assert (x0, y0, x1, y1) == pytest.approx((94.5, 341.5, 400.5, 492.5), abs=1)
    assert figure.pixels.size == pytest.approx((x1 - x0, y1 - y0), abs=2)


def test_encrypted_corrupt_and_truncated_pdfs_are_rejected_with_the_reason():
    data, _ = report(pages=1)
    with pytest.raises(DocumentRejected, match="encrypted PDF"):
        extract_pdf(encrypt_pdf(data, user_password="secret"))
    with pytest.raises(DocumentRejected, match="truncated PDF"):
        extract_pdf(data[: len(data) // 2])
    with pytest.raises(DocumentRejected, match="corrupt PDF"):
        extract_pdf(b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n")
    # a PDF that only restricts permissions opens without a password
    assert len(extract_pdf(encrypt_pdf(data, user_password="")).pictures) == 1


def test_too_many_pages_is_refused_before_any_work():
    data, _ = report(pages=3)
    with pytest.raises(DocumentRejected, match="too many pages: 3"):
        extract_pdf(data, PdfOptions(max_pages=2))


def test_page_preview_is_rendered_at_the_asked_width():
    data, _ = report(pages=2)
    preview = documents.render_page_preview(data, 2, width=306)
    assert preview.size == (306, 396)
    with pytest.raises(DocumentRejected, match="no page 3"):
        documents.render_page_preview(data, 3, width=100)


def test_is_pdf_sniffs_the_header_not_the_name():
    data, _ = report(pages=1)
    assert documents.is_pdf(data) and documents.is_pdf(b"junk" + data)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    assert not documents.is_pdf(buffer.getvalue())


def test_an_image_declaring_too_many_pixels_is_left_out_before_it_is_decoded():
    b = PdfBuilder()
    page = b.add_page()
    page.draw(b.declared(40_000, 40_000), 0, 0, 300, 300)
    page.draw(b.jpeg(jpeg_photo(200, 150, seed=3)), 300, 300, 200, 150)
    contents = extract_pdf(b.to_bytes(), PdfOptions(max_pixels=50_000_000))
    assert [p.kind for p in contents.pictures] == [EMBEDDED] and contents.pictures[0].jpeg is not None
    assert contents.skipped["too many pixels"] == 1
    assert contents.page_errors == ["page 1: an image of 40000×40000 pixels was left out (IMAGE_MAX_PIXELS)"]


def test_a_full_page_background_repeated_on_every_page_is_no_scan_and_the_photos_on_it_are_taken():
    b = PdfBuilder()
    background = b.raw(Image.new("RGB", (300, 400), (240, 240, 250)))
    photos = [jpeg_photo(320, 240, seed=60 + i) for i in range(3)]
    for photo in photos:
        page = b.add_page()
        page.draw(background, 0, 0, 612, 792)  # a slide's or brochure's backdrop
        page.draw(b.jpeg(photo), 72, 300, 320, 240)
    contents = extract_pdf(b.to_bytes())
    assert [p.jpeg for p in contents.pictures] == photos
    assert contents.skipped["repeated on many pages"] == 3 and not contents.skipped["scanned page image"]
    # one full-page image beside a photo on a single page is a picture too, not a scan
    b = PdfBuilder()
    page = b.add_page()
    page.draw(b.jpeg(jpeg_photo(612, 792, seed=70)), 0, 0, 612, 792)
    page.draw(b.jpeg(photos[0]), 72, 300, 320, 240)
    assert [p.kind for p in extract_pdf(b.to_bytes()).pictures] == [EMBEDDED, EMBEDDED]


def test_positions_are_relative_to_the_visible_page_when_the_crop_box_reaches_past_the_media_box():
    b = PdfBuilder()
    page = b.add_page(width=400, height=300, cropbox=(-50, -50, 450, 350))
    page.draw(b.raw(Image.new("RGB", (100, 80), (255, 0, 0))), x=40, y=30, w=100, h=80)
    data = b.to_bytes()
    contents = extract_pdf(data, PdfOptions(render_all_pages=True, render_dpi=72))
    assert contents.page_sizes == [(400.0, 300.0)]
    embedded, rendered = contents.pictures
    assert embedded.bbox == (40.0, 190.0, 140.0, 270.0)
    assert rendered.kind == PAGE and rendered.pixels.size == (400, 300)
    assert rendered.pixels.getpixel((90, 230)) == (255, 0, 0)


def test_a_jpeg_in_an_icc_colour_space_is_kept_as_it_is():
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = jpeg_photo(200, 150, seed=8)
    b = PdfBuilder()
    b.add_page().draw(b.jpeg(photo, icc_profile=profile), 72, 72, 200, 150)
    (picture,) = extract_pdf(b.to_bytes()).pictures
    assert picture.jpeg == photo


def test_a_document_is_streamed_a_picture_at_a_time():
    data = scanned_pdf(3, seed=9, dpi=72)
    with documents.PdfPictures(data, PdfOptions(render_dpi=50)) as pdf:
        pictures = iter(pdf)
        first = next(pictures)
        assert (first.page_number, first.kind) == (1, PAGE)
        assert [p.page_number for p in pictures] == [2, 3]
    assert not documents.PDFIUM_LOCK._is_owned()  # released when closed


def test_a_figure_reused_on_a_few_pages_of_a_long_document_is_no_logo():
    b = PdfBuilder()
    figure = b.jpeg(jpeg_photo(200, 150, seed=90))
    logo = b.raw(Image.new("RGB", (100, 100), (10, 120, 10)))
    for i in range(40):
        page = b.add_page()
        page.draw(logo, 500, 720, 50, 50)
        if i in (3, 17, 30):
            page.draw(figure, 72, 300, 200, 150)
    contents = extract_pdf(b.to_bytes(), PdfOptions(repeated_image_pages=3, repeated_image_share=0.1))
    assert [(p.page_number, p.kind) for p in contents.pictures] == [(4, EMBEDDED)]
    assert contents.skipped["duplicate in document"] == 2 and contents.skipped["repeated on many pages"] == 40


def test_a_page_tree_that_claims_more_pages_than_it_has_is_counted_by_its_pages():
    contents = extract_pdf(hostile.lying_page_count_pdf(claimed=9000))
    assert contents.page_sizes == [(612.0, 792.0)] and len(contents.pictures) == 1
    assert contents.page_errors == [documents.PAGES_MISSING.format(claimed=9000, found=1)]
    # past the page limit, the pages are counted all the same: only a document that has them is refused
    assert len(extract_pdf(hostile.lying_page_count_pdf(claimed=50_000), PdfOptions(max_pages=10)).page_sizes) == 1


@pytest.mark.parametrize("max_pixels", [1_500_000, 2_000_003])
def test_a_page_too_large_for_the_pixel_limit_is_rendered_at_the_largest_scale_that_fits(max_pixels):
    contents = extract_pdf(hostile.huge_page_pdf(14_400), PdfOptions(max_pixels=max_pixels))
    (picture,) = contents.pictures
    width, height = picture.pixels.size
    assert width * height <= max_pixels and (width + 2) * (height + 2) > max_pixels  # nothing to spare
    assert contents.page_errors == [documents.RENDERED_SMALLER.format(
        page=1, dpi=documents.render_dpi((0, 0, 14_400, 14_400), dpi=150, max_pixels=max_pixels), wanted=150,
        limit=max_pixels)]
