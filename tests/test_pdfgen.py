"""The test-PDF writer, checked with the reader the app uses (pdfium): no database needed."""

from __future__ import annotations

import hashlib
import io

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw

from bench.pdfgen import PdfBuilder, encrypt_pdf, jpeg_photo, scanned_pdf

IMAGE = pdfium.raw.FPDF_PAGEOBJ_IMAGE


def images(page: pdfium.PdfPage, max_depth: int = 15) -> list[pdfium.PdfImage]:
    return list(page.get_objects(filter=[IMAGE], max_depth=max_depth))


def test_photos_and_text_land_where_they_were_drawn_with_the_jpeg_bytes_unchanged():
    builder = PdfBuilder()
    photos = [jpeg_photo(160, 120, seed=seed) for seed in range(3)]
    for n, photo in enumerate(photos):
        page = builder.add_page(width=612, height=792)
        page.text(f"Holiday page {n} (beach)", x=72, y=720, size=12)
        page.draw(builder.jpeg(photo), x=72 + n, y=300, w=300, h=200)
        page.line(72, 100, 540, 100, width=2)
        page.rect(72, 120, 100, 50, fill=(0, 0, 1))
    data = builder.to_bytes()
    assert data.startswith(b"%PDF-1.7") and data.count(b"%%EOF") == 1 and b"\nxref\n" in data

    pdf = pdfium.PdfDocument(data)
    assert len(pdf) == 3
    for n, photo in enumerate(photos):
        (image,) = images(pdf[n])
        assert image.get_bounds() == pytest.approx((72 + n, 300, 372 + n, 500))
        assert image.get_filters() == ["DCTDecode"]
        assert bytes(image.get_data(decode_simple=False)) == photo
        assert pdf[n].get_textpage().get_text_range() == f"Holiday page {n} (beach)"


def test_jpeg_photo_is_deterministic_and_differs_by_seed():
    assert jpeg_photo(64, 48, seed=1) == jpeg_photo(64, 48, seed=1)
    assert len({hashlib.sha256(jpeg_photo(64, 48, seed=s)).digest() for s in range(5)}) == 5
    assert Image.open(io.BytesIO(jpeg_photo(64, 48))).size == (64, 48)


def test_a_logo_on_every_page_is_one_image_object():
    builder = PdfBuilder()
    logo = builder.raw(Image.new("RGB", (32, 32), (200, 0, 0)))
    for _ in range(4):
        builder.add_page().draw(logo, x=500, y=700, w=50, h=50)
    data = builder.to_bytes()
    assert data.count(b"/Subtype /Image") == 1

    pdf = pdfium.PdfDocument(data)
    assert [len(images(page)) for page in pdf] == [1, 1, 1, 1]


def test_a_soft_mask_is_not_a_page_object_of_its_own():
    builder = PdfBuilder()
    alpha = Image.linear_gradient("L").resize((40, 30))
    builder.add_page().draw(builder.raw(Image.new("RGB", (40, 30), "blue"), smask=alpha), 10, 10, 40, 30)
    data = builder.to_bytes()
    assert data.count(b"/Subtype /Image") == 2 and b"/SMask" in data

    (image,) = images(pdfium.PdfDocument(data)[0])
    assert image.get_metadata().colorspace == pdfium.raw.FPDF_COLORSPACE_DEVICERGB


def test_encrypted_pdfs_need_the_user_password_unless_it_is_empty():
    builder = PdfBuilder()
    builder.add_page().text("secret words", 72, 720)
    plain = builder.to_bytes()

    locked = encrypt_pdf(plain, user_password="secret", owner_password="owner")
    with pytest.raises(pdfium.PdfiumError, match="Incorrect password"):
        pdfium.PdfDocument(locked)
    text = pdfium.PdfDocument(locked, password="secret")[0].get_textpage().get_text_range()
    assert text == "secret words"

    open_one = encrypt_pdf(plain, user_password="")
    assert b"/Encrypt" in open_one
    assert len(pdfium.PdfDocument(open_one)) == 1


def test_an_image_inside_a_form_is_found_only_by_descending_into_the_form():
    builder = PdfBuilder()
    photo = jpeg_photo(64, 48)
    builder.add_page().draw_form(builder.jpeg(photo), x=100, y=200, w=128, h=96)
    page = pdfium.PdfDocument(builder.to_bytes())[0]

    assert images(page, max_depth=1) == []
    (image,) = images(page, max_depth=2)
    assert image.level == 1 and image.container.type == pdfium.raw.FPDF_PAGEOBJ_FORM
    # Bounds of nested objects are in the form's space; the form's matrix maps them to the page.
    assert image.get_bounds() == pytest.approx((0, 0, 1, 1))
    on_page = image.container.get_matrix().on_rect(*image.get_bounds())
    assert on_page == pytest.approx((100, 200, 228, 296))
    assert bytes(image.get_data(decode_simple=False)) == photo


def test_stencil_masks_have_no_colour_space_unlike_one_bit_gray_images():
    bits = Image.new("1", (40, 30), 1)
    ImageDraw.Draw(bits).rectangle((5, 5, 30, 20), fill=0)
    builder = PdfBuilder()
    page = builder.add_page()
    page.fill_color((1, 0, 0))
    page.draw(builder.stencil(bits), 10, 10, 40, 30)
    page.draw(builder.raw(bits), 100, 10, 40, 30)
    stencil, gray = images(pdfium.PdfDocument(builder.to_bytes())[0])

    assert stencil.get_metadata().bits_per_pixel == gray.get_metadata().bits_per_pixel == 1
    assert stencil.get_metadata().colorspace == pdfium.raw.FPDF_COLORSPACE_UNKNOWN
    assert gray.get_metadata().colorspace == pdfium.raw.FPDF_COLORSPACE_DEVICEGRAY


def test_a_scanned_pdf_is_one_full_page_image_per_page_and_no_text():
    pdf = pdfium.PdfDocument(scanned_pdf(2, seed=3, dpi=72))
    assert len(pdf) == 2
    for page in pdf:
        (image,) = images(page)
        assert image.get_bounds() == pytest.approx((0, 0, 612, 792))
        assert image.get_metadata().colorspace == pdfium.raw.FPDF_COLORSPACE_DEVICEGRAY
        assert page.get_textpage().get_text_range() == ""
