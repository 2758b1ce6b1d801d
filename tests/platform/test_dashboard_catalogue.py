"""Catalogue export (streamed CSV and manage.py export_catalogue) and import (CSV + zip of images) from the
dashboard: the export parses back, its vote counts are the classifications', it is a training catalogue
for the classifier; the import validates every row first and is all or nothing, and refuses paths that
leave the uploaded zip."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from zooplatform.celery import app as celery_app
from zooplatform.classify.models import Classification
from zooplatform.core.exceptions import ApplicationError
from zooplatform.dashboard.selectors import catalogue_export_lines, project_tree
from zooplatform.galaxies.models import Retirement, Subject
from zooplatform.galaxies.services import subject_retire
from zooplatform.learning.models import ModelVersion, Prediction, SubjectPosterior
from zooplatform.learning.services import classification_aggregate

from .factories import ClassificationFactory, ProjectFactory, SubjectFactory, png_file
from .test_classify_selector import clean_classify_state

pytestmark = pytest.mark.django_db

PATHS = [
    [("smooth-or-featured", "smooth"), ("how-rounded", "round"), ("merging", "none")],
    [("smooth-or-featured", "smooth"), ("how-rounded", "cigar-shaped"), ("merging", "merger")],
    [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "yes"), ("edge-on-bulge", "boxy"),
     ("merging", "none")],
]


@pytest.fixture(autouse=True)
def _quiet():
    clean_classify_state()
    with mock.patch.object(celery_app, "send_task"):
        yield
    clean_classify_state()


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="sci", password="x-long-password-1", is_staff=True))
    return client


def classified_project():
    """Five galaxies with 0..4 classifications (aggregated for real), one retired, and a promoted model
    that scored three of them."""
    project = ProjectFactory()
    subjects = [SubjectFactory(subject_set__project=project, ra=10.0 + i, dec=-5.0 + i) for i in range(5)]
    rng = np.random.default_rng(0)
    for i, s in enumerate(subjects):
        for _ in range(i):
            c = ClassificationFactory(subject=s, answers=[{"question": q, "answer": a}
                                                          for q, a in PATHS[rng.integers(len(PATHS))]])
            classification_aggregate(classification_id=c.pk)
    subject_retire(subject=subjects[4], reason=Retirement.Reason.MANUAL, n_classifications=4)
    model = ModelVersion.objects.create(project=project, kind="morphology", architecture="a", status="ready",
                                        promoted=True, checkpoint="checkpoints/m.pt")
    tree = project_tree(project=project)
    for s in subjects[:3]:
        Prediction.objects.create(subject=s, model_version=model, acquisition=0.1 * s.pk,
                                  fractions={c: round(float(rng.random()), 4) for c in tree.columns})
    return project, subjects, model, tree


def test_export_streams_a_catalogue_whose_votes_match_the_classifications(staff):
    project, subjects, model, tree = classified_project()
    response = staff.get(f"/dashboard/{project.slug}/catalogue.csv")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith(f'attachment; filename="{project.slug}-catalogue-')
    text = b"".join(response.streaming_content).decode()
    df = pd.read_csv(io.StringIO(text), dtype={"id_str": str}, keep_default_na=False, na_values=[""])

    assert list(df["id_str"]) == [s.external_id for s in subjects]
    assert list(df["subject_id"]) == [s.pk for s in subjects]
    assert list(df["ra"]) == [s.ra for s in subjects] and list(df["dec"]) == [s.dec for s in subjects]
    assert list(df["state"]) == ["active"] * 4 + ["retired"]
    assert df["retirement_reason"].fillna("").tolist() == [""] * 4 + ["manual"]
    assert pd.isna(df["retired_at"][0]) and str(df["retired_at"][4]).startswith(
        Retirement.objects.get(subject=subjects[4]).retired_at.isoformat()[:19])
    assert list(df["n_classifications"]) == [0, 1, 2, 3, 4]

    # Raw vote counts per <question>_<answer>, exactly what the classifications say.
    for s in subjects:
        expected = dict.fromkeys(tree.columns, 0)
        for c in Classification.objects.filter(subject=s):
            for step in c.answers:
                expected[f"{step['question']}_{step['answer']}"] += 1
        row = df[df.subject_id == s.pk].iloc[0]
        assert {c: int(row[c]) for c in tree.columns} == expected
    assert df[list(tree.columns)].to_numpy().sum() == sum(len(c.answers) for c in Classification.objects.all())
    # Posteriors as the aggregator stored them; empty for a galaxy nobody classified.
    post = SubjectPosterior.objects.get(subject=subjects[3], question="smooth-or-featured").probabilities
    row = df[df.subject_id == subjects[3].pk].iloc[0]
    for answer, p in post.items():
        assert row[f"smooth-or-featured_{answer}_posterior"] == pytest.approx(p, abs=1e-6)
    assert df[df.subject_id == subjects[0].pk][[f"{c}_posterior" for c in tree.columns]].isna().all(axis=None)
    # The promoted model's predictions where it scored, empty elsewhere.
    for s in subjects[:3]:
        p = Prediction.objects.get(subject=s, model_version=model)
        r = df[df.subject_id == s.pk].iloc[0]
        assert r["acquisition"] == pytest.approx(p.acquisition)
        assert all(r[f"{c}_fraction"] == pytest.approx(v) for c, v in p.fractions.items())
    assert df[df.subject_id.isin([subjects[3].pk, subjects[4].pk])][["acquisition"]].isna().all(axis=None)
    # file_loc is relative to MEDIA_ROOT, so `--images MEDIA_ROOT` finds every image.
    from django.conf import settings
    assert all((Path(settings.MEDIA_ROOT) / f).is_file() for f in df["file_loc"])

    # A valid Zoobot-convention training catalogue for the classifier.
    from classifier.data import read_catalog
    checked = read_catalog(df, project_tree(project=project))
    assert len(checked) == 5


def test_export_is_the_same_in_small_chunks_and_from_the_command(tmp_path):
    project, subjects, model, tree = classified_project()
    whole = "".join(catalogue_export_lines(project=project))
    assert "".join(catalogue_export_lines(project=project, chunk=2)) == whole
    out = tmp_path / "cat.csv"
    stdout = io.StringIO()
    call_command("export_catalogue", project=project.slug, out=str(out), stdout=stdout)
    assert out.read_text() == whole
    assert "5 subjects" in stdout.getvalue()
    assert not list(tmp_path.glob(".*.part"))
    # Without a promoted model there are no prediction columns.
    ModelVersion.objects.filter(pk=model.pk).update(promoted=False)
    header = next(iter(catalogue_export_lines(project=project))).strip().split(",")
    assert "acquisition" not in header and not any(h.endswith("_fraction") for h in header)
    assert header[-1] == "file_loc"
    # An unknown project is an error of the command, not a traceback.
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("export_catalogue", project="nope", out=str(out))
    # A project without an active workflow cannot be exported: said before any byte is sent.
    project.workflows.update(active=False)
    with pytest.raises(ApplicationError, match="no active workflow"):
        catalogue_export_lines(project=project)


def zip_of(files: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return SimpleUploadedFile("images.zip", buffer.getvalue(), content_type="application/zip")


def csv_upload(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("catalogue.csv", text.encode(), content_type="text/csv")


def png(seed):
    return png_file(seed=seed).read()


def test_import_from_the_dashboard_all_rows_at_once(staff, settings):
    project = ProjectFactory()
    images = zip_of({"cutouts/a.png": png(1), "cutouts/b.png": png(2), "c.png": png(3)})
    catalogue = csv_upload("id_str,file_loc,ra,dec,redshift\nG1,cutouts/a.png,10.5,-5,0.02\n"
                           "G2,cutouts/b.png,11,5,0.1\nG3,c.png,,,0.3\n")
    response = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": catalogue, "images": images, "subject_set": "Spring batch", "survey": "DECaLS DR5"}, follow=True)
    assert response.status_code == 200
    assert "3 created, 0 updated, 0 unchanged" in str(list(response.context["messages"])[0])
    got = {s.external_id: s for s in Subject.objects.filter(project=project)}
    assert set(got) == {"G1", "G2", "G3"}
    assert got["G1"].ra == 10.5 and got["G3"].ra is None and got["G2"].metadata == {"redshift": 0.1}
    assert got["G1"].survey == "DECaLS DR5" and got["G1"].subject_set.name == "Spring batch"
    assert (got["G1"].width, got["G1"].height) == (64, 48)
    assert Path(got["G2"].image.path).read_bytes() == png(2)
    # Importing the same catalogue again changes nothing.
    again = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": csv_upload("id_str,file_loc\nG1,cutouts/a.png\n"),
        "images": zip_of({"cutouts/a.png": png(1)}), "subject_set": "Spring batch"}, follow=True)
    assert "0 created" in str(list(again.context["messages"])[0])


def test_import_reports_every_bad_row_and_imports_nothing(staff, settings):
    project = ProjectFactory()
    images = zip_of({"a.png": png(1), "b.png": png(2), "broken.png": b"not a png"})
    catalogue = csv_upload("id_str,file_loc,ra,dec\n"
                           "G1,a.png,10,5\n"          # line 2: fine
                           "G2,missing.png,10,5\n"    # line 3: not in the zip
                           "G3,b.png,400,5\n"         # line 4: ra out of range
                           "G4,broken.png,1,1\n"      # line 5: unreadable
                           "G1,b.png,1,1\n")          # line 6: repeated id
    response = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": catalogue, "images": images, "subject_set": "bad"})
    assert response.status_code == 400
    errors = response.context["row_errors"]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 5", "line 6"]
    assert "image file not found: missing.png" in errors[0] and "ra 400.0 outside" in errors[1]
    assert "/tmp" not in " ".join(errors) and "zoo-import-" not in " ".join(errors)
    html = response.content.decode()
    assert "4 problems" in html and "line 5: image broken.png cannot be read" in html
    assert Subject.objects.filter(project=project).count() == 0
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


@pytest.mark.parametrize("member", ["../evil.png", "/abs/evil.png", "ok/../../evil.png", "C:/evil.png"])
def test_import_refuses_zip_members_outside_the_upload(staff, member):
    project = ProjectFactory()
    response = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": csv_upload("id_str,file_loc\nG1,a.png\n"),
        "images": zip_of({"a.png": png(1), member: png(2)}), "subject_set": "x"})
    assert response.status_code == 400
    assert "would be extracted outside" in " ".join(response.context["form"].errors["images"])
    assert Subject.objects.filter(project=project).count() == 0


def test_import_refuses_catalogue_paths_outside_the_zip(staff, tmp_path):
    project = ProjectFactory()
    outside = tmp_path / "secret.png"
    outside.write_bytes(png(5))
    response = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": csv_upload(f"id_str,file_loc\nG1,a.png\nG2,../../{outside}\nG3,{outside}\n"),
        "images": zip_of({"a.png": png(1)}), "subject_set": "x"})
    assert response.status_code == 400
    errors = response.context["row_errors"]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4"]
    assert all("points outside the uploaded zip" in e for e in errors)
    assert Subject.objects.filter(project=project).count() == 0


def test_import_form_checks_the_uploads(staff):
    project = ProjectFactory()
    response = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": SimpleUploadedFile("cat.xlsx", b"x"), "images": SimpleUploadedFile("i.tar", b"x"),
        "subject_set": ""})
    errors = response.context["form"].errors
    assert response.status_code == 400 and set(errors) == {"catalogue", "images", "subject_set"}
    not_zip = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": csv_upload("id_str,file_loc\nG1,a.png\n"), "images": SimpleUploadedFile("i.zip", b"nope"),
        "subject_set": "x"})
    assert "not a zip file" in " ".join(not_zip.context["form"].errors["images"])
    latin = staff.post(f"/dashboard/{project.slug}/catalogue/", {
        "catalogue": SimpleUploadedFile("c.csv", "id_str,file_loc\nGé,a.png\n".encode("latin-1")),
        "images": zip_of({"a.png": png(1)}), "subject_set": "x"})
    assert "not UTF-8" in " ".join(latin.context["form"].errors["catalogue"])
