"""Writes for projects and subjects: bootstrap, catalogue import, demo subjects, retirement."""
from __future__ import annotations

import csv
import io
from contextlib import contextmanager
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from PIL import Image

from zooplatform.core.exceptions import ApplicationError

from .models import GoldStandard, Project, Retirement, Subject, SubjectSet

DEFAULT_PROJECT_SLUG = "galaxy-zoo"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
FITS_SUFFIXES = {".fits", ".fit", ".fts", ".fits.gz", ".fit.gz"}
ID_COLUMNS = ("id_str", "external_id", "subject_id", "id", "iauname")
IMAGE_COLUMNS = ("file_loc", "image", "png_loc", "jpg_loc", "fits_loc", "filename")
# Columns that name the galaxy in other catalogues: kept apart from free metadata.
SURVEY_ID_COLUMNS = {"id_str", "iauname", "nsa_id", "objid", "dr7objid", "sdss_id", "subject_id", "zooniverse_id"}


@transaction.atomic
def project_bootstrap(*, slug: str = DEFAULT_PROJECT_SLUG, name: str = "Galaxy Zoo") -> Project:
    """The project with its built-in workflows, created if missing (idempotent)."""
    from zooplatform.workflows.services import workflows_ensure_builtin

    project, _ = Project.objects.get_or_create(
        slug=slug, defaults={"name": name, "description": "Galaxy morphology with volunteers and machines."}
    )
    workflows_ensure_builtin(project=project)
    return project


# ------------------------------------------------------------------------------------------- images
def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fits.gz" if name.endswith(".fits.gz") else ".fit.gz" if name.endswith(".fit.gz") else path.suffix.lower()


def image_check(path: Path) -> str | None:
    """Why ``path`` cannot be a subject image, or None if it can (reads headers only)."""
    if not path.is_file():
        return f"image file not found: {path}"
    suffix = _suffix(path)
    if suffix in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as im:
                im.verify()
                if im.size[0] < 8 or im.size[1] < 8:
                    return f"image {path.name} is only {im.size[0]}x{im.size[1]} pixels"
        except Exception as exc:  # PIL raises many types for a broken file
            return f"image {path.name} cannot be read: {exc}"
        return None
    if suffix in FITS_SUFFIXES:
        from astropy.io import fits

        try:
            with fits.open(path, memmap=False) as hdus:
                hdu = next((h for h in hdus if getattr(h, "data", None) is not None and h.data.ndim in (2, 3)), None)
                if hdu is None:
                    return f"FITS file {path.name} has no 2-D or 3-D image"
        except Exception as exc:
            return f"FITS file {path.name} cannot be read: {exc}"
        return None
    return f"unsupported image type {suffix!r} (use PNG, JPEG or FITS)"


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 array of shape (H, W, 3) or (H, W) as PNG (lossless: volunteers see every pixel)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@contextmanager
def _files_removed_on_failure():
    """Yield a list to record stored file names in; if the block fails, the files are deleted again, so
    a failed import leaves no files behind its rolled-back rows."""
    written: list[str] = []
    try:
        yield written
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


# ------------------------------------------------------------------------------------------- import
@dataclass
class CatalogueRow:
    line: int
    external_id: str
    image_path: Path
    ra: float | None
    dec: float | None
    survey_ids: dict
    metadata: dict


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self):
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


def _number(value: str) -> float | int | str:
    try:
        f = float(value)
    except ValueError:
        return value
    if not math.isfinite(f):
        return value
    return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f


def _pick(header: Sequence[str], candidates: Iterable[str], wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in header else None
    return next((c for c in candidates if c in header), None)


def catalogue_parse(
    text: str, *, images_dir: Path, id_column: str | None = None, image_column: str | None = None
) -> tuple[list[CatalogueRow], list[str]]:
    """Parse and validate a whole catalogue before anything is written.

    Returns the rows and a list of errors, each ``line N: reason`` (line 1 is the header). Every row
    is checked: an id, unique in the file; an image that exists and opens; ra in [0, 360) and dec in
    [-90, 90] when given.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    errors: list[str] = []
    id_col = _pick(header, ID_COLUMNS, id_column)
    img_col = _pick(header, IMAGE_COLUMNS, image_column)
    if id_col is None:
        errors.append(f"line 1: no id column (expected {id_column or ' or '.join(ID_COLUMNS)})")
    if img_col is None:
        errors.append(f"line 1: no image column (expected {image_column or ' or '.join(IMAGE_COLUMNS)})")
    if errors:
        return [], errors
    rows: list[CatalogueRow] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(reader, start=2):
        if None in record:
            errors.append(f"line {line}: more fields than the header has")
            continue
        record = {k: (v or "").strip() for k, v in record.items()}
        external_id = record[id_col]
        if not external_id:
            errors.append(f"line {line}: empty {id_col}")
            continue
        if len(external_id) > 128:
            errors.append(f"line {line}: {id_col} longer than 128 characters")
            continue
        if external_id in seen:
            errors.append(f"line {line}: {id_col} {external_id!r} repeats line {seen[external_id]}")
            continue
        seen[external_id] = line
        if not record[img_col]:
            errors.append(f"line {line}: empty {img_col}")
            continue
        image_path = (images_dir / record[img_col]).resolve()
        problem = image_check(image_path)
        if problem:
            errors.append(f"line {line}: {problem}")
            continue
        coords = {}
        bad = False
        for name, low, high in (("ra", 0.0, 360.0), ("dec", -90.0, 90.0)):
            raw = record.get(name, "")
            if raw == "":
                coords[name] = None
                continue
            try:
                value = float(raw)
            except ValueError:
                errors.append(f"line {line}: {name} {raw!r} is not a number")
                bad = True
                continue
            if not (low <= value <= high) or (name == "ra" and value == 360.0):
                errors.append(f"line {line}: {name} {value} outside [{low}, {high}{')' if name == 'ra' else ']'}")
                bad = True
            coords[name] = value
        if bad:
            continue
        skip = {img_col, "ra", "dec", ""}
        survey_ids = {k: v for k, v in record.items() if k in SURVEY_ID_COLUMNS and v and k not in skip}
        metadata = {k: _number(v) for k, v in record.items() if k not in skip and k not in SURVEY_ID_COLUMNS and v != ""}
        rows.append(CatalogueRow(line, external_id, image_path, coords.get("ra"), coords.get("dec"), survey_ids, metadata))
    return rows, errors


def _stored_image(row: CatalogueRow) -> tuple[str, bytes, bytes | None]:
    """(file name, image bytes, FITS bytes or None) for a row: PNG/JPEG kept byte for byte, FITS
    rendered to RGB (``classifier.imaging``'s documented asinh stretch) and kept beside it."""
    suffix = _suffix(row.image_path)
    if suffix in IMAGE_SUFFIXES:
        return row.image_path.name, row.image_path.read_bytes(), None
    from classifier.imaging import load_image_any

    rgb = load_image_any(row.image_path)
    return row.image_path.name.split(".")[0] + ".png", png_bytes(rgb), row.image_path.read_bytes()


def subjects_import(
    *, project: Project, subject_set_name: str, rows: Sequence[CatalogueRow], survey: str = ""
) -> ImportReport:
    """Import validated rows, all or nothing. Re-importing the same catalogue changes nothing.

    A subject already in the project (same external id) keeps its image; its coordinates and
    metadata are updated if they changed. Files written before a failure are removed again, so a
    failed import leaves neither rows nor files behind.
    """
    report = ImportReport()
    with _files_removed_on_failure() as written, transaction.atomic():
        subject_set, _ = SubjectSet.objects.get_or_create(project=project, name=subject_set_name)
        existing = {s.external_id: s for s in Subject.objects.filter(project=project, external_id__in=[r.external_id for r in rows])}
        for row in rows:
            subject = existing.get(row.external_id)
            if subject is not None:
                changed = (subject.ra, subject.dec, subject.metadata, subject.survey_ids) != (
                    row.ra, row.dec, row.metadata, row.survey_ids)
                if changed:
                    subject.ra, subject.dec, subject.metadata, subject.survey_ids = row.ra, row.dec, row.metadata, row.survey_ids
                    subject.save(update_fields=["ra", "dec", "metadata", "survey_ids"])
                    report.updated += 1
                else:
                    report.unchanged += 1
                continue
            subject = Subject(
                project=project, subject_set=subject_set, external_id=row.external_id, ra=row.ra, dec=row.dec,
                survey=survey, survey_ids=row.survey_ids, metadata=row.metadata,
            )
            name, image, fits_bytes = _stored_image(row)
            subject.image.save(name, ContentFile(image), save=False)
            # Set after saving the file: assigning an ImageField recomputes these from storage.
            subject.width, subject.height = _image_size(image)
            written.append(subject.image.name)
            if fits_bytes is not None:
                subject.fits.save(row.image_path.name, ContentFile(fits_bytes), save=False)
                written.append(subject.fits.name)
            subject.full_clean(exclude=["image", "fits"])
            subject.save()
            report.created += 1
    return report


@dataclass(frozen=True)
class NewSubject:
    """A subject made in memory (demo generators): a uint8 image of shape (H, W, 3)."""

    external_id: str
    image: np.ndarray
    survey: str
    metadata: Mapping = field(default_factory=dict)
    truth: Mapping | None = None
    ra: float | None = None
    dec: float | None = None
    gold: Mapping | None = None  # {"answers": [...], "boxes": [...], "feedback": "..."}


def subjects_create_from_arrays(*, project: Project, subject_set_name: str, subjects: Sequence[NewSubject]) -> ImportReport:
    """Store in-memory galaxies as subjects (PNG), skipping ids already in the project; all or nothing."""
    report = ImportReport()
    with _files_removed_on_failure() as written, transaction.atomic():
        subject_set, _ = SubjectSet.objects.get_or_create(project=project, name=subject_set_name)
        existing = set(Subject.objects.filter(project=project, external_id__in=[s.external_id for s in subjects])
                       .values_list("external_id", flat=True))
        for new in subjects:
            if new.external_id in existing:
                report.unchanged += 1
                continue
            subject = Subject(
                project=project, subject_set=subject_set, external_id=new.external_id, survey=new.survey,
                metadata=dict(new.metadata), truth=dict(new.truth) if new.truth is not None else None,
                ra=new.ra, dec=new.dec,
            )
            subject.image.save(f"{new.external_id}.png", ContentFile(png_bytes(new.image)), save=False)
            subject.height, subject.width = new.image.shape[:2]
            written.append(subject.image.name)
            subject.save()
            if new.gold is not None:
                gold = GoldStandard(subject=subject, answers=list(new.gold["answers"]),
                                    boxes=list(new.gold.get("boxes", [])), feedback=new.gold.get("feedback", ""))
                gold.full_clean()
                gold.save()
            report.created += 1
    return report


# ------------------------------------------------------------------------------------------- retirement
def subject_retire(
    *, subject: Subject, reason: str, n_classifications: int = 0, label: Mapping | None = None
) -> Retirement | None:
    """Retire ``subject`` once. Returns the new Retirement, or None if it had already retired.

    Safe under concurrency: the conditional UPDATE lets exactly one caller move the subject from
    active to retired, and the one-to-one Retirement row makes a second retirement impossible.
    """
    if reason not in Retirement.Reason.values:
        raise ApplicationError(f"unknown retirement reason {reason!r}", field="reason")
    with transaction.atomic():
        moved = Subject.objects.filter(pk=subject.pk, state=Subject.State.ACTIVE).update(state=Subject.State.RETIRED)
        if not moved:
            return None
        try:
            with transaction.atomic():
                retirement = Retirement.objects.create(
                    subject_id=subject.pk, reason=reason, n_classifications=n_classifications, label=dict(label or {})
                )
        except IntegrityError:
            return None
    subject.state = Subject.State.RETIRED
    return retirement
