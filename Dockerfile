# Context Graph API / worker image. The same image runs both:
#   api:    ctxgraph serve --host 0.0.0.0 --no-worker   (the default command)
#   worker: ctxgraph worker
# Give it DATABASE_URL and REDIS_URL (see docker-compose.yml): with them unset it would start
# embedded servers inside the container, which is for laptops, not deployments.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CTXGRAPH_HOME=/var/lib/ctxgraph

WORKDIR /app
COPY . .
# Editable install: the code stays in /app, where app/db/migrate.py finds ../../migrations.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /var/lib/ctxgraph --create-home ctxgraph

USER ctxgraph
EXPOSE 8000
CMD ["ctxgraph", "serve", "--host", "0.0.0.0", "--no-worker"]
