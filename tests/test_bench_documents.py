"""The document benchmark's corpus and reference (the imports themselves are measured, not tested, there)."""

from __future__ import annotations

import pypdfium2 as pdfium

from bench.documents import _count_images, generate_pdfs, reference_rate


def test_generated_reports_have_a_photo_and_a_page_of_text_on_every_page(tmp_path):
    assert generate_pdfs(tmp_path / "pdfs", docs=2, pages=3, photo=(160, 120)) == 6
    files = sorted((tmp_path / "pdfs").glob("*.pdf"))
    assert len(files) == 2 and _count_images(files) == 6
    page = pdfium.PdfDocument(files[0])[1]
    assert len(page.get_textpage().get_text_range()) > 2000  # a report's page, not a caption
    seconds, images = reference_rate(files, tmp_path / "out")
    assert images == 6 and seconds > 0
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".jpg"] * 6  # JPEGs as they were
