# The two commands of the README:
#   make demo   set up .venv, migrate, load demo galaxies, create a scientist account, run the platform
#   make test   set up .venv (+ chromium), run the whole suite on PostgreSQL + Redis, then on SQLite
# Everything else here is a step of those two.

PYTHON3 ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed

# This machine's PostgreSQL and Redis (trust auth); override for another machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/15
PYTEST_ARGS       ?=

.PHONY: demo test test-postgres test-sqlite venv chromium migrate setup-demo run services check-deploy clean

venv: $(STAMP)

# torch and torchvision first, alone: pip takes the wheels on this machine's disk; everything else then
# resolves against the torch already installed and can never pull another one.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24" setuptools wheel
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e ".[ml,test]"
	$(PIP) uninstall --quiet --yes zoobot 2>/dev/null || true  # from an earlier run: see below
	$(PIP) check
	# Test-only: zoobot's own Dirichlet-multinomial loss, to cross-check ours (tests/classifier/test_losses.py).
	# Its code alone (--no-deps): the loss module needs only torch, and its full dependency set would pull
	# torchaudio and another torch.
	$(PIP) install --quiet --no-deps zoobot==2.9.0
	touch $@

migrate: venv
	$(PY) manage.py migrate --noinput

setup-demo: migrate
	$(PY) manage.py setup_demo

run: venv
	$(PY) manage.py runplatform

demo: setup-demo run

chromium:
	@scripts/ensure-chromium.sh

# CI and the README's test command: the suite on this machine's PostgreSQL and Redis, then the
# database-backed tests again on the embedded defaults (SQLite, filesystem broker).
test: venv chromium test-postgres test-sqlite

test-postgres: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) ZOO_ENV=test \
	  $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: venv
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL ZOO_ENV=test ZOO_VAR_DIR=$$(mktemp -d) \
	  $(PY) -m pytest tests/platform $(PYTEST_ARGS)

# The production profile must pass Django's deployment checks with no warning.
check-deploy: venv
	ZOO_ENV=production SECRET_KEY=$$($(PY) -c "import secrets; print(secrets.token_urlsafe(64))") \
	  ALLOWED_HOSTS=zoo.example.org $(PY) manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
