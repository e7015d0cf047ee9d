"""The app as an attacker finds it: odd parameters, odd file names, error pages, the content
security policy, guessing passwords, and what analysts learn about the server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory
from django.views.defaults import server_error

from imagesearch.login_throttle import TOO_MANY_FAILURES, login_failures_reset
from imagesearch.models import Document, Image
from imagesearch.params import (
    MAX_ID,
    MAX_INTEGER,
    NOT_A_NUMBER,
    NUL_IN_TEXT,
    OUT_OF_RANGE,
    InvalidParameter,
    int_param,
)
from imagesearch.services.ingest import image_ingest_bytes, ingest_job_run
from ranking.models import ModelVersion, SimilarityCriterion
from tests.conftest import CHROMIUM, browser_login
from tests.factories import CollectionFactory, UserFactory, make_image
from tests.imagesearch.test_document_ingest import report_pdf

pytestmark = pytest.mark.django_db

TEMPLATES_DIR = Path(django_settings.BASE_DIR) / "templates"


@pytest.fixture
def report(db):
    outcome = image_ingest_bytes(data=report_pdf(2, seed=11), original_name="Report.pdf",
                                 collection=CollectionFactory(name="Reports"))
    return Document.objects.get(pk=outcome.document_id)


@pytest.fixture
def admin(client):
    client.force_login(UserFactory(roles=["admin"]))
    return client


# --- A. parameters that cannot mean anything: 400 (or 404), never 500 ---------------------------

def test_int_param_takes_ascii_digits_within_range_only():
    assert int_param({"n": " 0042 "}, "n") == 42 and int_param({}, "n", default=7) == 7
    for raw, message in (("²", NOT_A_NUMBER), ("٣", NOT_A_NUMBER), ("-1", NOT_A_NUMBER), ("1e3", NOT_A_NUMBER),
                         ("9" * 25, OUT_OF_RANGE), ("0" * 5000 + "1" * 30, OUT_OF_RANGE)):
        with pytest.raises(InvalidParameter) as error:
            int_param({"n": raw}, "n")
        assert str(error.value) == message.format(name="n", low=0, high=MAX_ID)
    with pytest.raises(InvalidParameter, match="from 0 to 2,147,483,647"):
        int_param({"n": str(MAX_INTEGER + 1)}, "n", max_value=MAX_INTEGER)


@pytest.mark.parametrize("url", [
    "/images/?collection=%C2%B2", "/images/?document=%C2%B2", "/images/?label=a%00b",
    "/images/?collection=99999999999999999999999999",
    "/documents/?collection=%C2%B2", "/documents/?q=%00",
    "/documents/{document}/?page=%C2%B2",
    "/search/?image=%C2%B2", "/search/?image={image}&label=%00", "/search/?q=%00", "/search/?criterion=%C2%B2",
    "/dashboard/?criterion=%C2%B2",
    "/api/documents/?q=%00", "/api/documents/?collection=%C2%B2", "/api/images/?label=%00",
    "/api/images/?collection=%C2%B2", "/api/jobs/?kind=%00", "/api/jobs/?limit=%C2%B2",
    "/api/documents/imports/?limit=%00", "/api/labeling/stats/?criterion=%C2%B2",
])
def test_parameters_that_cannot_mean_anything_are_refused_not_a_server_error(admin, report, url):
    image = report.images.first()
    response = admin.get(url.format(document=report.pk, image=image.pk))
    assert response.status_code == 400, (url, response.status_code)
    if url.startswith("/api/"):
        assert response["Content-Type"] == "application/json" and response.json()
    else:  # the page says which parameter, in the site's layout
        html = response.content.decode()
        assert 'class="topbar"' in html and "Bad request" in html
        assert re.search(r"(collection|document|label|page|q|image|criterion): give a whole number|"
                         r"the text holds a NUL character|give a number from", html), html


def test_a_nul_in_a_stored_file_name_is_not_found_for_labelers_and_analysts(client):
    for role in ("labeler", "analyst"):
        client.force_login(UserFactory(roles=[role]))
        assert client.get("/media/originals/%00.jpg").status_code == 404
        assert client.get("/media/thumbs/ab/%00cd.webp").status_code == 404


def test_a_nul_in_posted_names_is_refused_with_a_message(admin, criterion):
    response = admin.post("/dashboard/action/", {"action": "create_criterion", "name": "bad\x00name"}, follow=True)
    assert NUL_IN_TEXT.format(name="name") in response.content.decode()
    assert not SimilarityCriterion.objects.filter(name__startswith="bad").exists()
    response = admin.post("/documents/", {"files": [SimpleUploadedFile("a.png", b"x")], "collection": "x\x00y"})
    assert response.status_code == 400


def test_an_oversized_auto_retrain_value_is_refused_with_a_clear_message(admin, criterion):
    for value in ("99999999999", str(MAX_INTEGER + 1), "²", "-3"):
        response = admin.post("/dashboard/action/", {"action": "set_auto_retrain", "criterion": criterion.pk,
                                                     "auto_retrain_after": value}, follow=True)
        assert response.status_code == 200
        assert "Retrain after (judgments; 0 turns it off): give" in response.content.decode(), value
    criterion.refresh_from_db()
    assert criterion.auto_retrain_after == 0
    admin.post("/dashboard/action/", {"action": "set_auto_retrain", "criterion": criterion.pk,
                                      "auto_retrain_after": str(MAX_INTEGER)})
    criterion.refresh_from_db()
    assert criterion.auto_retrain_after == MAX_INTEGER


def test_training_form_numbers_outside_the_database_are_refused_with_a_message(admin, criterion):
    for name, value, message in (("epochs", "9" * 30, "Epochs: give a number from 0 to 2,147,483,647."),
                                 ("lr", "nan", "Learning rate: &#x27;nan&#x27; is not a number."),
                                 ("margin", "inf", "Margin: &#x27;inf&#x27; is not a number.")):
        response = admin.post("/dashboard/action/", {"action": "train_ranking", "criterion": criterion.pk,
                                                     name: value}, follow=True)
        assert response.status_code == 200 and message in response.content.decode(), name
    assert not ModelVersion.objects.filter(criterion=criterion).exists()


# --- B. download names: RFC 6266 / 5987, whatever the original name holds ------------------------

@pytest.mark.parametrize("name, header", [
    ('45_quote"semi;colon.png', 'attachment; filename="45_quote\\"semi;colon.png"'),
    ("two\nlines.png", "attachment; filename*=utf-8''two%0Alines.png"),
    ("Überblick.png", "attachment; filename*=utf-8''%C3%9Cberblick.png"),
])
def test_download_names_are_encoded_not_pasted_into_the_header(client, report, name, header):
    client.force_login(UserFactory(roles=["analyst"]))
    image = make_image(name=name)
    response = client.get(f"/media/{image.file.name}?download=1")
    assert response.status_code == 200 and response["Content-Disposition"] == header
    Document.objects.filter(pk=report.pk).update(original_name=name.replace(".png", ".pdf"))
    response = client.get(f"/documents/{report.pk}/download/")
    assert response.status_code == 200 and response["Content-Disposition"] == header.replace(".png", ".pdf")
    assert client.get(f"/media/{image.file.name}")["Content-Disposition"].startswith("inline")  # shown


# --- C. error pages in the site's layout ---------------------------------------------------------

def test_a_missing_image_is_a_styled_404_for_analysts(client):
    client.force_login(UserFactory(roles=["analyst"]))
    response = client.get("/images/987654321/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in html and 'href="/images/"' in html and "Go back" in html  # navigation, way back
    assert client.get("/no/such/page/").status_code == 404


def test_a_labeler_opening_the_search_page_gets_the_styled_403(client):
    client.force_login(UserFactory(roles=["labeler"]))
    response = client.get("/search/")
    html = response.content.decode()
    assert response.status_code == 403
    assert "<h1>Not allowed</h1>" in html and 'href="/label/"' in html and "Go back" in html


def test_the_500_page_renders_without_a_request_context():
    response = server_error(RequestFactory().get("/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert 'class="topbar"' in html and "Something went wrong" in html and 'href="/"' in html
    assert "Log out" not in html  # no user: nothing that needs the request


# --- D. content security policy ------------------------------------------------------------------

def test_every_response_has_the_content_security_policy(client):
    for response in (client.get("/accounts/login/"), client.get("/images/"), client.get("/api/images/"),
                     client.get("/no/such/page/")):
        policy = response["Content-Security-Policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
                          "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'",
                          "img-src 'self' data: blob:"):
            assert directive in policy
        assert "unsafe-inline" not in policy


def test_the_api_docs_alone_may_run_their_inline_script(client):
    client.force_login(UserFactory(roles=["analyst"]))
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert "script-src 'self' 'unsafe-inline'" in response["Content-Security-Policy"]
    assert "object-src 'none'" in response["Content-Security-Policy"]
    assert "unsafe-inline" not in client.get("/api/schema/")["Content-Security-Policy"]


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|<[a-z][^>]*\sstyle\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


@pytest.mark.parametrize("template", sorted(p.relative_to(TEMPLATES_DIR).as_posix()
                                            for p in TEMPLATES_DIR.rglob("*.html")))
def test_templates_have_no_inline_script_handler_or_style(template):
    """The policy blocks them: each would silently stop working in the browser."""
    text = (TEMPLATES_DIR / template).read_text()
    for pattern, what in ((INLINE_SCRIPT, "inline <script>"), (INLINE_HANDLER, "on* handler attribute"),
                          (INLINE_STYLE, "inline style"), (JAVASCRIPT_URL, "javascript: URL")):
        found = pattern.search(text)
        assert found is None, f"{template}: {what}: {found.group(0) if found else ''}"


# --- D. failed sign-ins --------------------------------------------------------------------------

@pytest.fixture
def attacker_ip(request):
    """An address of its own per test (documentation range), its counts removed afterwards."""
    ip = f"198.51.100.{abs(hash(request.node.name)) % 250 + 1}"
    names = ["victim", "victim2", "other", *(f"guess{i}" for i in range(40))]
    for name in names:
        login_failures_reset(username=name, ip=ip)
    yield ip
    for name in names:
        login_failures_reset(username=name, ip=ip)


def test_the_token_endpoint_answers_429_after_ten_wrong_passwords(client, attacker_ip):
    UserFactory(username="victim", roles=["analyst"])
    for _ in range(django_settings.LOGIN_FAILURES_PER_USER):
        response = client.post("/api/auth/token/", {"username": "victim", "password": "guess"},
                               REMOTE_ADDR=attacker_ip)
        assert response.status_code == 400
    # now even the right password is not checked, from here (JSON too) or from anywhere else
    response = client.post("/api/auth/token/", {"username": "victim", "password": "pw"},
                           content_type="application/json", REMOTE_ADDR=attacker_ip)
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["detail"].startswith("Too many failed sign-ins")
    response = client.post("/api/auth/token/", {"username": "victim", "password": "pw"}, REMOTE_ADDR="192.0.2.1")
    assert response.status_code == 429


def test_failures_per_address_are_limited_across_user_names(client, attacker_ip, settings):
    settings.LOGIN_FAILURES_PER_IP = 5
    UserFactory(username="other", roles=["analyst"])
    for i in range(5):
        client.post("/api/auth/token/", {"username": f"guess{i}", "password": "x"}, REMOTE_ADDR=attacker_ip)
    assert client.post("/api/auth/token/", {"username": "other", "password": "pw"},
                       REMOTE_ADDR=attacker_ip).status_code == 429
    assert client.post("/api/auth/token/", {"username": "other", "password": "pw"},
                       REMOTE_ADDR="192.0.2.7").status_code == 200


def test_the_login_page_says_so_after_ten_wrong_passwords(client, attacker_ip):
    UserFactory(username="victim2", roles=["analyst"])
    for _ in range(django_settings.LOGIN_FAILURES_PER_USER):
        response = client.post("/accounts/login/", {"username": "victim2", "password": "guess"},
                               REMOTE_ADDR=attacker_ip)
        assert "didn&#x27;t match" in response.content.decode()
    response = client.post("/accounts/login/", {"username": "victim2", "password": "pw"}, REMOTE_ADDR=attacker_ip)
    minutes = django_settings.LOGIN_FAILURES_WINDOW_SECONDS // 60
    assert response.status_code == 200
    assert TOO_MANY_FAILURES.format(minutes=minutes, s="s") in response.content.decode()
    assert client.get("/images/").status_code == 302  # not signed in
    # the admin's login form checks no password either
    client.post("/admin/login/", {"username": "victim2", "password": "pw"}, REMOTE_ADDR=attacker_ip)
    assert client.get("/images/").status_code == 302


# --- D. server paths are for admins ---------------------------------------------------------------

def test_analysts_see_their_import_jobs_without_server_paths_admins_with(client, settings):
    analyst = UserFactory(roles=["analyst"])
    client.force_login(analyst)
    files = [SimpleUploadedFile("locked.pdf", b"%PDF-1.7 truncated", "application/pdf")]
    job_id = client.post("/api/documents/upload/", {"files": files, "collection": "Uploads"}).json()["id"]
    upload_dir = str(settings.DOCUMENT_UPLOAD_DIR)
    ingest_job_run(job_id=job_id, inline=True)
    for response in (client.get("/api/documents/imports/"), client.get("/documents/")):
        body = response.content.decode()
        assert response.status_code == 200 and "locked.pdf" in body
        assert upload_dir not in body and str(settings.DATA_DIR) not in body
    (job,) = client.get("/api/documents/imports/").json()
    assert job["issues"][0]["source"] == "locked.pdf"
    assert all(not str(p).startswith("/") for p in job["params"]["paths"]) and job["params"]["upload_dir"]

    client.force_login(UserFactory(roles=["admin"]))
    (job,) = [j for j in client.get("/api/documents/imports/").json() if j["id"] == job_id]
    assert job["params"]["upload_dir"].startswith(upload_dir) and job["issues"][0]["source"].startswith(upload_dir)
    (job,) = [j for j in client.get("/api/jobs/").json() if j["id"] == job_id]
    assert job["params"]["paths"][0].startswith(upload_dir)


def test_the_image_page_names_the_source_file_not_its_folder_for_analysts(client):
    image = make_image(name="boot.jpg")
    Image.objects.filter(pk=image.pk).update(source_path="/srv/private/shoes/boot.jpg")
    client.force_login(UserFactory(roles=["analyst"]))
    html = client.get(f"/images/{image.pk}/").content.decode()
    assert "boot.jpg" in html and "/srv/private" not in html
    client.force_login(UserFactory(roles=["admin"]))
    assert "/srv/private/shoes/boot.jpg" in client.get(f"/images/{image.pk}/").content.decode()


# --- D. the policy in a browser: every page still works, nothing is refused -----------------------

@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium (scripts/test does)")
def test_no_page_breaks_the_content_security_policy(browser_page, live_server, transactional_db, criterion):
    outcome = image_ingest_bytes(data=report_pdf(2, seed=12), original_name="Report.pdf",
                                 collection=CollectionFactory(name="Reports"))
    image = Image.objects.filter(document_id=outcome.document_id, page_number=2).first()
    UserFactory(username="ada", roles=["admin"])
    page = browser_page
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))
    browser_login(page, live_server.url, "ada")
    for path in ("/images/", f"/images/{image.pk}/", "/documents/", f"/search/?image={image.pk}", "/label/",
                 "/dashboard/", "/admin/", "/admin/imagesearch/image/", "/no/such/page/"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock")  # the relaxed policy lets Swagger UI run
    # the picture outlined on its page (SVG, no inline style) leads to it
    page.goto(f"{live_server.url}/documents/{outcome.document_id}/")
    page.wait_for_function("() => [...document.querySelectorAll('.page-preview img')].every(i => i.naturalWidth > 0)")
    box = page.locator(f'#page-2 a.bbox[href="/images/{image.pk}/"]')
    size = box.bounding_box()
    assert size and size["width"] > 20 and size["height"] > 20
    box.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/images/{image.pk}/")
    # "Go back" on an error page goes back
    page.goto(f"{live_server.url}/images/987654321/")
    page.click("text=Go back")
    page.wait_for_url(f"**/images/{image.pk}/")
    assert refused == []


def test_a_refused_page_is_one_log_line_and_a_server_error_keeps_its_traceback():
    import logging

    from imagesearch.logfilters import ClientErrorsWithoutTraceback

    def record(status: int) -> logging.LogRecord:
        try:
            raise PermissionError("refused")
        except PermissionError:
            import sys

            rec = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden", None, sys.exc_info())
        rec.status_code = status
        return rec

    quiet = ClientErrorsWithoutTraceback()
    forbidden, broken = record(403), record(500)
    assert quiet.filter(forbidden) and forbidden.exc_info is None
    assert quiet.filter(broken) and broken.exc_info is not None
