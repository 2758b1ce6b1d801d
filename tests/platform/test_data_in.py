"""Catalogue import and demo galaxies: validate everything first, import all or nothing, idempotent."""
import shutil
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from aggregation.tree import DecisionTree
from zooplatform.galaxies.demo import describe_answers
from zooplatform.galaxies.models import GoldStandard, Subject

from ..conftest import realdata_path

pytestmark = pytest.mark.django_db


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def write_png(path: Path, size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (40, 50, 60)).save(path)


def test_real_decals_ring_catalogue_imports_once():
    root = realdata_path("zoobot")
    catalogue = root / "data" / "example_ring_catalog_basic.csv"
    out = run("import_subjects", str(catalogue), images=str(root), survey="DECaLS DR5")
    assert "470 created" in out
    subject = Subject.objects.get(external_id="J000411.19+020924.0")
    assert (subject.width, subject.height) == (424, 424)
    assert subject.metadata["ring"] == 1
    assert subject.survey_ids == {"id_str": "J000411.19+020924.0"}
    assert subject.image.read()[:2] == b"\xff\xd8"  # the JPEG is stored byte for byte
    again = run("import_subjects", str(catalogue), images=str(root))
    assert "0 created, 0 updated, 470 unchanged" in again
    assert Subject.objects.count() == 470


def test_bad_rows_reported_with_line_numbers_and_nothing_imported(tmp_path, settings):
    write_png(tmp_path / "img" / "a.png")
    write_png(tmp_path / "img" / "b.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    csv = tmp_path / "cat.csv"
    csv.write_text(
        "id_str,file_loc,ra,dec,redshift\n"
        "G1,img/a.png,10.5,-5,0.02\n"          # line 2: fine
        "G2,img/missing.png,10,5,0.1\n"        # line 3: no image
        "G1,img/b.png,1,1,0.1\n"               # line 4: repeated id
        "G4,img/b.png,400,1,0.1\n"             # line 5: ra out of range
        "G5,img/b.png,abc,1,0.1\n"             # line 6: ra not a number
        "G6,img/broken.png,1,1,0.1\n"          # line 7: unreadable image
        ",img/b.png,1,1,0.1\n"                 # line 8: empty id
    )
    with pytest.raises(CommandError) as err:
        run("import_subjects", str(csv), images=str(tmp_path))
    message = str(err.value)
    for line, reason in [(3, "not found"), (4, "repeats line 2"), (5, "ra 400.0 outside"), (6, "not a number"),
                         (7, "cannot be read"), (8, "empty id_str")]:
        assert f"line {line}: " in message and reason in message, (line, reason, message)
    assert "line 2:" not in message
    assert Subject.objects.count() == 0
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_missing_columns_named(tmp_path):
    csv = tmp_path / "cat.csv"
    csv.write_text("name,path\nG1,a.png\n")
    with pytest.raises(CommandError, match=r"line 1: no id column .*id_str"):
        run("import_subjects", str(csv), images=str(tmp_path))


def test_failure_while_writing_leaves_no_rows_or_files(tmp_path, settings, monkeypatch):
    for name in ("a", "b", "c"):
        write_png(tmp_path / f"{name}.png")
    csv = tmp_path / "cat.csv"
    csv.write_text("id_str,file_loc\nA,a.png\nB,b.png\nC,c.png\n")
    from zooplatform.galaxies import services

    real = services._stored_image
    calls = []

    def flaky(row):
        calls.append(row.external_id)
        if row.external_id == "C":
            raise OSError("disk full")
        return real(row)

    monkeypatch.setattr(services, "_stored_image", flaky)
    with pytest.raises(OSError):
        run("import_subjects", str(csv), images=str(tmp_path))
    assert calls == ["A", "B", "C"]
    assert Subject.objects.count() == 0
    assert not any(p.is_file() for p in Path(settings.MEDIA_ROOT).rglob("*"))


def test_fits_cutout_rendered_to_rgb_and_kept(tmp_path):
    fits = realdata_path("galaxy-zoo-bayesian-cnn", "zoobot", "tests", "test_examples", "example_b.fits")
    shutil.copy(fits, tmp_path / "example_b.fits")
    csv = tmp_path / "cat.csv"
    csv.write_text("id_str,file_loc,ra,dec\nEXB,example_b.fits,150.1,2.2\n")
    run("import_subjects", str(csv), images=str(tmp_path))
    subject = Subject.objects.get(external_id="EXB")
    assert (subject.width, subject.height) == (162, 162)
    assert subject.image.name.endswith(".png") and subject.fits.name.endswith(".fits")
    with Image.open(subject.image.path) as im:
        assert im.mode == "RGB"
        centre = im.getpixel((81, 81))
        corner = im.getpixel((5, 5))
    assert sum(centre) > sum(corner) + 60  # the galaxy is bright at the centre, the sky dark


def test_make_demo_subjects_hudf_and_synthetic_with_truth_and_gold():
    out = run("make_demo_subjects", hudf=3, synthetic=9)
    assert "HUDF: 3 created" in out and "synthetic: 9 created" in out
    hudf = Subject.objects.filter(survey="HUDF")
    assert hudf.count() == 3 and all(s.truth is None for s in hudf)
    tree = DecisionTree.builtin("gz_decals")
    synthetic = Subject.objects.filter(survey__startswith="synthetic")
    for s in synthetic:
        tree.validate_path(s.truth["answers"])
        for box in s.truth["boxes"]:
            assert 0 <= box["x"] and box["x"] + box["width"] <= s.width + 1
    gold = GoldStandard.objects.select_related("subject")
    assert {g.subject.external_id for g in gold} == {"syn-0-0000000", "syn-0-0000008"}
    assert all(g.answers == g.subject.truth["answers"] and g.feedback for g in gold)
    again = run("make_demo_subjects", hudf=3, synthetic=9)
    assert "3 unchanged" in again and "9 unchanged" in again


def test_setup_demo_creates_scientist_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = run("setup_demo", hudf=2, synthetic=2)
    assert "Scientist login: user 'scientist', password" in first
    password = (tmp_path / "scientist-password.txt").read_text().strip()
    from django.contrib.auth import authenticate

    assert authenticate(username="scientist", password=password).is_superuser
    second = run("setup_demo", hudf=2, synthetic=2)
    assert password in second and "Making the demo galaxies" not in second


@pytest.mark.parametrize("answers, text", [
    ([("smooth-or-featured", "artifact")], "a star or image artifact, not a galaxy"),
    ([("smooth-or-featured", "smooth"), ("how-rounded", "round"), ("merging", "none")], "a smooth, round galaxy"),
    ([("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "no"), ("bar", "strong"),
      ("has-spiral-arms", "yes"), ("spiral-winding", "tight"), ("spiral-arm-count", "2"),
      ("bulge-size", "small"), ("merging", "merger")], "a strongly barred spiral, tightly wound, 2 arms, merging"),
])
def test_gold_feedback_text(answers, text):
    assert describe_answers(answers) == text


@pytest.mark.parametrize("command", [
    ["import_subjects", "{tmp}/catalogue.csv", "--images", "{tmp}"],
    ["export_catalogue", "--out", "{tmp}/out.csv"],
    ["simulate", "--json", "{tmp}/out.json"],
    ["make_demo_subjects"],
])
def test_data_commands_on_an_unmigrated_database_say_so(tmp_path, command):
    """A fresh var folder (or a new PostgreSQL database) gets one clear line, not a traceback."""
    import sys

    from ..conftest import run_in_repo

    (tmp_path / "catalogue.csv").write_text("id_str,file_loc\n")
    args = [part.format(tmp=tmp_path) for part in command]
    result = run_in_repo([sys.executable, "manage.py", *args], {"ZOO_VAR_DIR": str(tmp_path), "ZOO_ENV": "test"})
    assert result.returncode == 1
    assert "unapplied migration(s)" in result.stderr and "run `manage.py migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.json").exists()
