"""Judgments exported from one installation and imported into another, images named by SHA-256.

Two installations are simulated in one database as two criteria: what one exports
the other imports, and the images are matched by their hashes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import CommandError, call_command

from imagesearch.models import Image
from labeling.models import TripletJudgment
from labeling.services.judgments import INVALID_ANSWER
from labeling.services.transfer import (
    BAD_CREATED_AT,
    BAD_SECONDS,
    MISSING_FIELD,
    NOT_A_JSON_OBJECT,
    NOT_UTF8,
    SAME_IMAGE_TWICE,
    UNKNOWN_EXTENSION,
    UNKNOWN_IMAGE,
    fmt_from_name,
    judgments_export,
    judgments_import,
)
from ranking.services.criteria import criterion_create
from tests.factories import UserFactory, make_judgment

pytestmark = pytest.mark.django_db

START = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)
UNKNOWN_SHA = "f" * 64


@pytest.fixture
def judged(criterion, stripes_library):
    """Five judgments of the default criterion by two labelers and one anonymous source, at known times."""
    v, h = stripes_library["v"], stripes_library["h"]
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    answers = [
        ((v[0], (v[1], h[0])), "a", alice, 1.5),
        ((v[0], (v[1], h[0])), "b", bob, None),
        ((h[1], (v[2], h[2])), "b", alice, 0.25),
        ((v[3], (h[3], v[4])), "unsure", bob, 3.0),
        ((h[4], (h[5], v[5])), "a", None, None),
    ]
    for i, ((query, candidates), answer, user, seconds) in enumerate(answers):
        judgment = make_judgment(criterion=criterion, query=query, candidates=candidates, answer=answer, user=user,
                                 seconds=seconds,
                                 source=TripletJudgment.Source.SEARCH_FEEDBACK if user is None else "labeling")
        TripletJudgment.objects.filter(pk=judgment.pk).update(created_at=START + timedelta(hours=i))
    return criterion


def _sha(image_id: int) -> str:
    return Image.objects.get(pk=image_id).sha256


def _judgments(criterion) -> list[tuple]:
    """The criterion's judgments as an installation-independent list: images by hash, the winner by hash."""
    rows = []
    for j in TripletJudgment.objects.filter(triplet__criterion=criterion).select_related(
            "triplet__query", "triplet__candidate_a", "triplet__candidate_b", "user"):
        t = j.triplet
        winner = {"a": t.candidate_a.sha256, "b": t.candidate_b.sha256, "unsure": "unsure"}[j.answer]
        rows.append((t.query.sha256, tuple(sorted((t.candidate_a.sha256, t.candidate_b.sha256))), winner,
                     j.user.username if j.user else None, j.seconds, j.created_at))
    return sorted(rows, key=repr)


def _export(criterion, fmt: str) -> str:
    out = io.StringIO(newline="")
    judgments_export(criterion=criterion, out=out, fmt=fmt)
    return out.getvalue()


def _import(criterion, text: str, fmt: str):
    return judgments_import(criterion=criterion, file=io.StringIO(text, newline=""), fmt=fmt)


def _jsonl(*rows: dict | str) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def _row(query: int, a: int, b: int, answer: str, **extra) -> dict:
    return {"query_sha256": _sha(query), "candidate_a_sha256": _sha(a), "candidate_b_sha256": _sha(b),
            "answer": answer, **extra}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_judgments_travel_to_another_installation_by_image_hash(judged, fmt):
    other = criterion_create(name="Other installation")
    text = _export(judged, fmt)

    report = _import(other, text, fmt)

    assert (report.imported, report.already_present, report.failed) == (5, 0, [])
    assert _judgments(other) == _judgments(judged)
    assert set(TripletJudgment.objects.filter(triplet__criterion=other).values_list("source", flat=True)) == {"import"}


def test_export_writes_one_row_per_judgment_with_images_by_hash(judged, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    rows = [json.loads(line) for line in _export(judged, "jsonl").splitlines()]
    csv_rows = list(csv.DictReader(io.StringIO(_export(judged, "csv"), newline="")))

    assert len(rows) == len(csv_rows) == 5
    first = rows[0]
    low, high = sorted((v[1], h[0]))
    assert first == {"criterion": judged.name, "query_sha256": _sha(v[0]), "candidate_a_sha256": _sha(low),
                     "candidate_b_sha256": _sha(high), "answer": "a", "labeler": "alice",
                     "source": "labeling", "seconds": 1.5, "created_at": START.isoformat()}
    assert rows[-1]["labeler"] == "" and rows[-1]["seconds"] is None and rows[-1]["source"] == "search"
    assert csv_rows[0]["created_at"] == START.isoformat() and csv_rows[-1]["seconds"] == ""


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_importing_the_same_file_twice_adds_nothing(judged, fmt):
    other = criterion_create(name="Other installation")
    text = _export(judged, fmt)
    _import(other, text, fmt)

    again = _import(other, text, fmt)

    assert (again.imported, again.already_present, again.failed) == (0, 5, [])
    assert TripletJudgment.objects.filter(triplet__criterion=other).count() == 5


def test_judgments_exported_and_imported_back_are_not_added_again(judged):
    assert _import(judged, _export(judged, "csv"), "csv").already_present == 5
    # and after a round trip through another installation, where they are imported judgments
    other = criterion_create(name="Other installation")
    _import(other, _export(judged, "jsonl"), "jsonl")
    back = _import(judged, _export(other, "jsonl"), "jsonl")

    assert (back.imported, back.already_present) == (0, 5)
    assert TripletJudgment.objects.filter(triplet__criterion=judged).count() == 5


def test_one_file_can_be_imported_into_several_criteria(judged):
    text = _export(judged, "jsonl")
    for name in ("Second", "Third"):
        assert _import(criterion_create(name=name), text, "jsonl").imported == 5


def test_candidates_in_either_order_name_the_same_judgment(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    low, high = sorted((v[1], h[0]))
    when = START.isoformat()
    text = _jsonl(
        # "high" is more similar, written with the candidates in the order opposite to the stored one
        _row(v[0], high, low, "a", labeler="alice", created_at=when, seconds=2),
        # the same judgment, candidates the other way round
        _row(v[0], low, high, "b", labeler="alice", created_at=when, seconds=2.0),
    )

    report = _import(criterion, text, "jsonl")

    assert (report.imported, report.already_present, report.failed) == (1, 1, [])
    judgment = TripletJudgment.objects.select_related("triplet").get()
    winner = judgment.triplet.candidate_a_id if judgment.answer == "a" else judgment.triplet.candidate_b_id
    assert winner == high and judgment.triplet.query_id == v[0]


def test_labelers_are_matched_by_name_and_times_kept(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    alice = UserFactory(username="alice")
    text = _jsonl(_row(v[0], v[1], h[0], "a", labeler="alice", created_at="2023-01-02T03:04:05Z", seconds="4.5"),
                  _row(v[2], v[3], h[1], "b", labeler="someone from elsewhere"),
                  _row(v[4], v[5], h[2], "unsure"))

    assert _import(criterion, text, "jsonl").imported == 3

    by_query = {j.triplet.query_id: j for j in TripletJudgment.objects.select_related("triplet")}
    assert by_query[v[0]].user == alice and by_query[v[0]].seconds == 4.5
    assert by_query[v[0]].created_at == datetime(2023, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert by_query[v[2]].user is None and by_query[v[4]].user is None and by_query[v[4]].seconds is None


def test_bad_rows_are_reported_by_line_and_the_others_imported(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    text = _jsonl(
        _row(v[0], v[1], h[0], "a"),
        {**_row(v[2], v[3], h[1], "a"), "candidate_b_sha256": UNKNOWN_SHA},
        "{not json",
        _row(v[4], v[5], h[2], "left"),
        {k: val for k, val in _row(v[6], v[7], h[3], "a").items() if k != "query_sha256"},
        _row(v[0], v[2], h[4], "b", seconds="slow"),
        _row(v[0], v[3], h[5], "b", created_at="yesterday"),
        "",
        _row(v[0], v[0], h[6], "a"),
        "[1, 2, 3]",
        _row(v[1], v[2], h[0], "b"),
    )

    report = _import(criterion, text, "jsonl")

    assert report.failed == [
        (2, UNKNOWN_IMAGE.format(sha256=UNKNOWN_SHA)),
        (3, NOT_A_JSON_OBJECT),
        (4, INVALID_ANSWER),
        (5, MISSING_FIELD.format(field="query_sha256")),
        (6, BAD_SECONDS.format(value="slow")),
        (7, BAD_CREATED_AT.format(value="yesterday")),
        (9, SAME_IMAGE_TWICE),
        (10, NOT_A_JSON_OBJECT),
    ]
    assert report.imported == 2
    assert set(TripletJudgment.objects.values_list("triplet__query_id", flat=True)) == {v[0], v[1]}


def test_bad_csv_rows_are_reported_by_line(criterion, stripes_library):
    v, h = stripes_library["v"], stripes_library["h"]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, ["query_sha256", "candidate_a_sha256", "candidate_b_sha256", "answer", "seconds"])
    writer.writeheader()
    writer.writerow(_row(v[0], v[1], h[0], "a", seconds=""))
    writer.writerow(_row(v[2], v[3], h[1], "maybe"))
    writer.writerow({**_row(v[4], v[5], h[2], "b"), "query_sha256": UNKNOWN_SHA})
    writer.writerow(_row(v[6], v[7], h[3], "unsure", seconds="-1"))

    report = _import(criterion, out.getvalue(), "csv")

    assert report.failed == [(3, INVALID_ANSWER), (4, UNKNOWN_IMAGE.format(sha256=UNKNOWN_SHA)),
                             (5, BAD_SECONDS.format(value="-1"))]
    assert report.imported == 1


def test_the_format_comes_from_the_file_name():
    assert [fmt_from_name(n) for n in ("a.jsonl", "b.JSON", "c.ndjson", "d.csv")] == ["jsonl", "jsonl", "jsonl", "csv"]
    with pytest.raises(ValueError, match="judgments.txt"):
        fmt_from_name("judgments.txt")


def test_management_commands_export_and_import(judged, tmp_path, stripes_library):
    other = criterion_create(name="Other installation")
    path = tmp_path / "judgments.csv"
    out = io.StringIO()
    call_command("export_judgments", str(path), stdout=out)
    assert "Exported 5 judgments" in out.getvalue()

    out = io.StringIO()
    call_command("import_judgments", str(path), criterion=other.name, stdout=out)
    assert out.getvalue().startswith("Imported 5 judgments; 0 already present; 0 failed")
    assert _judgments(other) == _judgments(judged)

    out = io.StringIO()
    call_command("export_judgments", "-", criterion=other.name, format="jsonl", stdout=out, stderr=io.StringIO())
    assert len(out.getvalue().splitlines()) == 5

    v, h = stripes_library["v"], stripes_library["h"]
    bad = tmp_path / "more.data"
    bad.write_text(_jsonl(_row(v[6], v[7], h[6], "a"), "oops"))
    out = io.StringIO()
    call_command("import_judgments", str(bad), criterion=other.name, format="jsonl", stdout=out)
    assert out.getvalue().splitlines() == ["Imported 1 judgments; 0 already present; 1 failed",
                                           f"  line 2: {NOT_A_JSON_OBJECT}"]


def test_a_file_that_is_not_utf8_is_reported_not_a_crash(tmp_path, criterion):
    path = tmp_path / "judgments.jsonl"
    path.write_bytes(b'{"answer": "a"}\n\xff\xfe\n')
    out = io.StringIO()
    call_command("import_judgments", str(path), stdout=out)
    assert out.getvalue().splitlines()[0].endswith("1 failed") and NOT_UTF8 in out.getvalue()


def test_import_command_refuses_a_file_of_unknown_format(tmp_path, criterion):
    path = tmp_path / "judgments.txt"
    path.write_text("")
    with pytest.raises(CommandError, match=re.escape(UNKNOWN_EXTENSION.format(name=str(path)))):
        call_command("import_judgments", str(path))
