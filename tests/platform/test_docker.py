"""docker/: no Docker engine runs here, so what the containers would run is checked directly: the env
file configures a production settings module that passes the deployment checks, the compose file
names every service with a health check, and each container command starts for real."""
import sys

import yaml

from ..conftest import REPO, run_in_repo

DOCKER = REPO / "docker"


def example_env() -> dict:
    env = {}
    for line in (DOCKER / "example.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env




def test_example_env_names_every_setting_the_code_reads():
    settings_py = (REPO / "zooplatform" / "settings.py").read_text()
    env = example_env()
    for key in env:
        if key.startswith("POSTGRES_"):
            continue  # read by the postgres container, not by Django
        assert f'"{key}"' in settings_py, f"{key} in example.env is not read by settings.py"
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "TORCH_DEVICE", "MEDIA_ROOT"):
        assert key in env


def test_production_profile_from_the_example_env_passes_deploy_checks(tmp_path):
    env = example_env()
    # The database and Redis hosts are compose service names; the checks do not connect to them.
    env.update(ZOO_VAR_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"), STATIC_ROOT=str(tmp_path / "static"))
    result = run_in_repo([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_profile_demands_secret_key_and_allowed_hosts(tmp_path):
    for missing in ("SECRET_KEY", "ALLOWED_HOSTS"):
        env = example_env()
        env.pop(missing)
        env.update(ZOO_VAR_DIR=str(tmp_path))
        result = run_in_repo([sys.executable, "manage.py", "check"], env)
        assert result.returncode != 0 and f"{missing} must be set" in result.stderr


def test_compose_services_commands_and_health_checks():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "gpu-worker", "beat"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["gpu-worker"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    # scoring's decoding workers hand batches over in /dev/shm: 32 workers x 2 batches x 38.5 MB must fit
    size = services["gpu-worker"]["shm_size"]
    assert size.endswith("gb") and int(size[:-2]) * 2**30 >= 32 * 2 * 256 * 224 * 224 * 3
    assert "-Q" in services["worker"]["command"] and "default" in services["worker"]["command"]
    assert services["gpu-worker"]["command"][services["gpu-worker"]["command"].index("-Q") + 1] == "gpu"
    for name in ("web", "worker", "gpu-worker", "beat"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "media:/var/lib/zoo/media" in services[name]["volumes"]
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / dockerfile).read_text()
        assert "torch==2.14.1 torchvision==0.29.1" in text and "USER zoo" in text


def test_gunicorn_config_loads_the_app(tmp_path):
    """What the web container runs: gunicorn with docker/gunicorn.conf.py (checked, not served)."""
    env = example_env()
    env.update(ZOO_VAR_DIR=str(tmp_path), MEDIA_ROOT=str(tmp_path / "media"), STATIC_ROOT=str(tmp_path / "static"))
    result = run_in_repo([sys.executable, "-m", "gunicorn", "zooplatform.wsgi:application", "--config",
                  "docker/gunicorn.conf.py", "--check-config"], env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_celery_app_has_the_queues_and_schedule_the_workers_and_beat_use(tmp_path):
    """What the worker and beat containers run: the Celery app, its routes and beat schedule."""
    code = ("from zooplatform.celery import app; app.loader.import_default_modules(); "
            "import json; print(json.dumps({'routes': app.conf.task_routes, 'beat': sorted(app.conf.beat_schedule), "
            "'tasks': sorted(t for t in app.tasks if t.startswith(('learning.', 'classify.')))}))")
    result = run_in_repo([sys.executable, "-c", code], {"ZOO_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "zooplatform.settings"})
    assert result.returncode == 0, result.stderr
    import json

    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["routes"]["learning.retrain"]["queue"] == "gpu" and info["routes"]["learning.score"]["queue"] == "gpu"
    assert info["beat"] == ["aggregation-catch-up", "aggregation-sweep", "retrain-if-due"]
    assert {"learning.classification_aggregate", "learning.retrain", "learning.score",
            "learning.aggregation_sweep", "learning.aggregation_catch_up", "classify.subject_queue_refresh"} <= set(info["tasks"])
