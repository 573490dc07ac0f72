# syntax=docker/dockerfile:1
# The web, worker, beat and migration image: one immutable artefact, configured by environment
# only (README "Configuration"). Build: docker build -t todo-scale:latest .

# Wheels are built in a throwaway stage, so compilers or build caches never reach the final image.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt


FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER, and 10001 is
# outside the range of users a base image or host commonly defines.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app

WORKDIR /app
# Runtime requirements only (requirements-dev.txt never enters the image); the wheels are
# mounted for this step rather than copied, so they take no layer.
COPY requirements.txt .
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r requirements.txt

# Code stays owned by root: the app user can read it but not change it.
COPY . .
# Static files are collected once, into the image, instead of at every container start. The
# secret key exists only for this command; the real one comes from the environment at run time.
# Byte-compiling here too: at run time the root filesystem may be read-only.
RUN DJANGO_SECRET_KEY=build python manage.py collectstatic --noinput \
    && python -m compileall -q .

USER 10001:10001
EXPOSE 8000

# Liveness only (/healthz needs no database), so a database outage does not mark every
# container unhealthy at once. Python, not curl: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]

CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "config.wsgi:application"]
