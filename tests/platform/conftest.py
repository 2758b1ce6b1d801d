import pytest


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Every test writes images and checkpoints to its own folder, never to var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"
