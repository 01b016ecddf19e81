# The web server and the workers share this image; docker-compose.yml picks the command.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATABASE_PATH=/data/db.sqlite3
WORKDIR /app
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app:app /data

# Dependencies first: this layer is rebuilt only when they or the apps change.
COPY pyproject.toml README.md requirements.txt ./
COPY tasks_app/ tasks_app/
COPY workers_app/ workers_app/
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY taskqueue_project/ taskqueue_project/
# A throwaway key for this build step only: without one the settings would write a
# var/secret_key into the image (root's, unreadable by the app user at run time).
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-at-build-time-only \
    python manage.py collectstatic --noinput

USER app
EXPOSE 8080
# Migrations at start (the SQLite file lives on the /data volume), then daphne.
CMD ["sh", "-c", "python manage.py migrate --noinput && exec python -m daphne -b 0.0.0.0 -p 8080 taskqueue_project.asgi:application"]
