# The Cloakroom server image: web (gunicorn), Celery worker and beat all run from it.
# docker-compose.yml shows how; every setting comes from the environment (see the README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings

WORKDIR /app

# Dependencies first, so that code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The code belongs to root and is read-only for the app; only var/ (static files, beat's
# schedule) and the private storage folder are writable.
COPY . .
RUN useradd --create-home --uid 10001 cloakroom \
    && mkdir -p /app/var /data/private \
    && chown cloakroom:cloakroom /app/var /data/private \
    && chmod 700 /data/private

USER cloakroom

EXPOSE 8000

CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60", "--access-logfile", "-", "--no-control-socket"]
