"""bench.api_fuzz: its core (the schemathesis run for one role and the reading of its events) on one
operation with a few examples, against the live server; and the pieces of its report."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from bench.api_fuzz import curl_line, data_dir_claim, fuzz_role, schema_save, server_tracebacks
from imagesearch.services.accounts import user_create


@pytest.mark.slow
def test_fuzz_role_runs_schemathesis_on_one_operation_and_counts_its_requests(live_server, transactional_db,
                                                                             tmp_path):
    user, _ = user_create(username="fuzzer", password="pw", roles=["analyst"])
    token = Token.objects.create(user=user).key
    schema = schema_save(base_url=live_server.url, token=token, path=tmp_path / "openapi.json")

    result = fuzz_role(base_url=live_server.url, schema_path=schema, role="analyst", token=token,
                       report_dir=tmp_path / "reports", max_examples=3, max_time=60, phases="fuzzing",
                       operations=["GET /api/images/"])

    assert result.exit_code == 0, (tmp_path / "reports" / "analyst.out").read_text()
    assert (result.operations, result.failures, result.errors) == (1, [], [])
    assert 1 <= result.requests <= 10


def test_fuzz_role_refuses_any_address_but_loopback(tmp_path):
    with pytest.raises(ValueError):
        fuzz_role(base_url="http://example.org", schema_path=tmp_path / "s.json", role="admin", token=None,
                  report_dir=tmp_path, max_examples=1, max_time=1)


def test_data_dir_claim_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "library.db").write_text("someone's data")
    with pytest.raises(SystemExit):
        data_dir_claim(tmp_path)
    assert (tmp_path / "library.db").exists()


def test_curl_line_hides_the_token_and_escapes_binary_bodies():
    request = {"method": "POST", "uri": "http://127.0.0.1:1/api/search/?q=a b",
               "headers": {"Authorization": ["Token secret"], "Content-Type": ["application/json"]},
               "body": {"$base64": "eyJhIjogIgAifQ=="}}  # {"a": "\0"}
    line = curl_line(request, "secret")
    assert "secret" not in line and '"Authorization: Token $TOKEN"' in line
    assert "--data-binary $'{\"a\": \"\\x00\"}'" in line and line.endswith("'http://127.0.0.1:1/api/search/?q=a b'")


def test_server_tracebacks_keeps_each_distinct_error_once():
    log = "\n".join([
        "2026-01-01 10:00:00,000 ERROR django.request: Internal Server Error: /api/x/",
        "Traceback (most recent call last):",
        '  File "v.py", line 1, in get',
        "ValueError: boom",
        '127.0.0.1 - - [01/Jan/2026:10:00:00 +0000] "GET /api/x/ HTTP/1.1" 500 145 "-" "schemathesis"',
        "2026-01-01 10:00:01,000 ERROR django.request: Internal Server Error: /api/x/",
        "Traceback (most recent call last):",
        "ValueError: boom",
        "2026-01-01 10:00:02,000 WARNING django.request: Bad Request: /api/y/",
    ])
    blocks = server_tracebacks(log)
    assert len(blocks) == 1 and blocks[0].endswith("ValueError: boom")
