"""Export and import of judgments between installations, images named by SHA-256.

Image ids differ between installations; an image's SHA-256 does not, so a file
names every image by its hash and an import looks the hashes up here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from itertools import islice
from pathlib import PurePath
from typing import TextIO

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from imagesearch.errors import AppError
from imagesearch.models import Image
from labeling.models import Triplet, TripletJudgment
from labeling.services.judgments import INVALID_ANSWER, judgment_record
from labeling.services.triplets import triplet_get_or_create
from ranking.models import SimilarityCriterion

FIELDS = ["criterion", "query_sha256", "candidate_a_sha256", "candidate_b_sha256", "answer", "labeler", "source",
          "seconds", "created_at"]
FORMATS = ("jsonl", "csv")
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}

UNKNOWN_FORMAT = "Unknown format {fmt!r}: 'jsonl' or 'csv'."
UNKNOWN_EXTENSION = "Cannot tell the format of {name!r}: name it .jsonl (or .json, .ndjson) or .csv."
NOT_A_JSON_OBJECT = "Not a JSON object."
BAD_CSV_ROW = "Unreadable CSV row: {error}."
# text is decoded a block at a time, so the bad bytes lie at or after the line reported
NOT_UTF8 = "The file is not UTF-8 text: reading stopped here, at or before the bad bytes."
MISSING_FIELD = "Missing field {field!r}."
BAD_SECONDS = "'seconds' must be a number of seconds ≥ 0, not {value!r}."
BAD_CREATED_AT = "'created_at' must be an ISO 8601 date and time, not {value!r}."
UNKNOWN_IMAGE = "No image with SHA-256 {sha256} in this library."
SAME_IMAGE_TWICE = "The query and the two candidates must be three different images."

# sha256 → id and username → user are looked up once per batch rather than once per row
BATCH_ROWS = 1000
_FLIPPED = {"a": "b", "b": "a", "unsure": "unsure"}


@dataclass
class JudgmentImportReport:
    imported: int = 0
    already_present: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


@dataclass(frozen=True)
class _Row:
    query: str
    candidate_a: str
    candidate_b: str
    answer: str  # relative to candidate_a / candidate_b as written in the file
    labeler: str
    seconds: float | None
    created_at: datetime | None


def fmt_from_name(name: str) -> str:
    """The format of a file, from its extension: "jsonl" or "csv"."""
    fmt = EXTENSIONS.get(PurePath(name).suffix.lower())
    if fmt is None:
        raise AppError(UNKNOWN_EXTENSION.format(name=name), field="file")
    return fmt


def judgments_export(*, criterion: SimilarityCriterion, out: TextIO, fmt: str) -> int:
    """Write every judgment of the criterion, oldest id first, to ``out``; returns how many rows."""
    if fmt not in FORMATS:
        raise ValueError(UNKNOWN_FORMAT.format(fmt=fmt))
    rows = (TripletJudgment.objects.filter(triplet__criterion=criterion).order_by("id")
            .values_list("triplet__query__sha256", "triplet__candidate_a__sha256", "triplet__candidate_b__sha256",
                         "answer", "user__username", "source", "seconds", "created_at")
            .iterator(chunk_size=2000))
    writer = None
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(FIELDS)
    count = 0
    for query, candidate_a, candidate_b, answer, username, source, seconds, created_at in rows:
        values = [criterion.name, query, candidate_a, candidate_b, answer, username or "", source, seconds,
                  created_at.isoformat()]
        if writer is not None:
            writer.writerow(["" if v is None else v for v in values])
        else:
            out.write(json.dumps(dict(zip(FIELDS, values)), ensure_ascii=False) + "\n")
        count += 1
    return count


def judgments_import(*, criterion: SimilarityCriterion, file: TextIO, fmt: str) -> JudgmentImportReport:
    """Add the judgments of an exported file to the criterion; rows already here are counted, not added.

    A row is already here when this criterion holds a judgment imported from the
    same row (its ``import_key``), or one on the same triplet by the same labeler
    with the same answer and time: the judgment the row was exported from. Rows
    that cannot be imported are reported with their line number; the others are.
    """
    if fmt not in FORMATS:
        raise ValueError(UNKNOWN_FORMAT.format(fmt=fmt))
    report = JudgmentImportReport()
    lines = _json_lines(file) if fmt == "jsonl" else _csv_rows(file)
    while batch := list(islice(lines, BATCH_ROWS)):
        parsed: list[tuple[int, _Row]] = []
        for line, raw in batch:
            try:
                parsed.append((line, _parse(raw)))
            except ValueError as exc:
                report.failed.append((line, str(exc)))
        _import_batch(criterion=criterion, rows=parsed, report=report)
    # unreadable rows are found before unknown images, a batch at a time
    report.failed.sort()
    return report


def _json_lines(file: TextIO) -> Iterator[tuple[int, dict | str]]:
    """(line number, row or the reason it is unreadable), blank lines skipped."""
    line_number = 0
    try:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            yield line_number, row if isinstance(row, dict) else NOT_A_JSON_OBJECT
    except UnicodeDecodeError:
        yield line_number + 1, NOT_UTF8


def _csv_rows(file: TextIO) -> Iterator[tuple[int, dict | str]]:
    reader = csv.DictReader(file)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, BAD_CSV_ROW.format(error=exc)
            continue
        except UnicodeDecodeError:
            yield reader.line_num + 1, NOT_UTF8
            return
        yield reader.line_num, row


def _parse(raw: dict | str) -> _Row:
    if isinstance(raw, str):
        raise ValueError(raw)
    answer = _text(raw, "answer", required=True).lower()
    if answer not in TripletJudgment.Answer.values:
        raise ValueError(INVALID_ANSWER)
    row = _Row(query=_text(raw, "query_sha256", required=True).lower(),
               candidate_a=_text(raw, "candidate_a_sha256", required=True).lower(),
               candidate_b=_text(raw, "candidate_b_sha256", required=True).lower(),
               answer=answer, labeler=_text(raw, "labeler"),
               seconds=_seconds(raw.get("seconds")), created_at=_created_at(raw.get("created_at")))
    if len({row.query, row.candidate_a, row.candidate_b}) < 3:
        raise ValueError(SAME_IMAGE_TWICE)
    return row


def _text(raw: dict, name: str, *, required: bool = False) -> str:
    value = raw.get(name)
    value = "" if value is None else str(value).strip()
    if required and not value:
        raise ValueError(MISSING_FIELD.format(field=name))
    return value


def _seconds(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    # bool is an int to Python, never a duration
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(BAD_SECONDS.format(value=value))
    return seconds


def _created_at(value) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = parse_datetime(str(value).strip())
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(BAD_CREATED_AT.format(value=value))
    # a time without a zone is taken as UTC, so that every installation reads it alike
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=dt_timezone.utc)


def _import_batch(*, criterion: SimilarityCriterion, rows: list[tuple[int, _Row]],
                  report: JudgmentImportReport) -> None:
    shas = {sha for _, row in rows for sha in (row.query, row.candidate_a, row.candidate_b)}
    image_ids = dict(Image.objects.filter(sha256__in=shas).values_list("sha256", "pk"))
    usernames = {row.labeler for _, row in rows if row.labeler}
    users = {u.username: u for u in get_user_model().objects.filter(username__in=usernames)}
    keys = {line: _import_key(criterion=criterion, row=row) for line, row in rows}
    seen = set(TripletJudgment.objects.filter(import_key__in=keys.values()).values_list("import_key", flat=True))
    for line, row in rows:
        unknown = [sha for sha in (row.query, row.candidate_a, row.candidate_b) if sha not in image_ids]
        if unknown:
            report.failed.append((line, UNKNOWN_IMAGE.format(sha256=unknown[0])))
            continue
        key = keys[line]
        if key in seen:
            report.already_present += 1
            continue
        try:
            added = _import_row(criterion=criterion, row=row, image_ids=image_ids, user=users.get(row.labeler),
                                key=key)
        except (ValueError, ValidationError):
            # a concurrent import of the same row got there first
            if not TripletJudgment.objects.filter(import_key=key).exists():
                raise
            added = False
        seen.add(key)
        if added:
            report.imported += 1
        else:
            report.already_present += 1


def _import_row(*, criterion: SimilarityCriterion, row: _Row, image_ids: dict[str, int], user, key: str) -> bool:
    """Store one row's judgment; False when the judgment it was exported from is already here."""
    id_a, id_b = image_ids[row.candidate_a], image_ids[row.candidate_b]
    # the triplet stores its candidates in id order, and the answer names one of them
    answer = row.answer if id_a < id_b else _FLIPPED[row.answer]
    with transaction.atomic():
        triplet = triplet_get_or_create(criterion=criterion, query_id=image_ids[row.query],
                                        candidate_ids=(id_a, id_b), origin={"strategy": "import"})
        if row.created_at is not None and _same_judgment_exists(triplet=triplet, answer=answer, row=row):
            return False
        judgment = judgment_record(triplet=triplet, answer=answer, user=user, source=TripletJudgment.Source.IMPORT,
                                   seconds=row.seconds, import_key=key)
        if row.created_at is not None:
            # created_at is auto_now_add, so the row's time can only be set after the insert
            TripletJudgment.objects.filter(pk=judgment.pk).update(created_at=row.created_at)
        # an answered triplet is not asked again on the labeling page (a queued one leaves the queue)
        Triplet.objects.filter(pk=triplet.pk, gold_answer="").update(complete=True)
    return True


def _same_judgment_exists(*, triplet: Triplet, answer: str, row: _Row) -> bool:
    same = TripletJudgment.objects.filter(triplet=triplet, answer=answer, created_at=row.created_at)
    if row.labeler:
        return same.filter(user__username=row.labeler).exists()
    return same.filter(user__isnull=True).exists()


def _import_key(*, criterion: SimilarityCriterion, row: _Row) -> str:
    """A hash of the row in a canonical form: the same for the same judgment however the file wrote it.

    Candidates in SHA-256 order (ids differ between installations, hashes do not)
    with the answer turned to match; times in UTC; seconds as a float. The
    criterion is part of it, so one file can be imported into several criteria.
    """
    first, second = sorted((row.candidate_a, row.candidate_b))
    answer = row.answer if first == row.candidate_a else _FLIPPED[row.answer]
    created_at = row.created_at.astimezone(dt_timezone.utc).isoformat() if row.created_at else ""
    canonical = [criterion.pk, row.query, first, second, answer, row.labeler, created_at, row.seconds]
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()
