# The archiver service image (docker-compose.yml builds it; see docs/production.md).
FROM python:3.11-slim-bookworm

# weasyprint's native libraries and a font for the PDF reports.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY archiver ./archiver
COPY search ./search
COPY reports ./reports
COPY policies ./policies
RUN pip install . && rm -rf /src

# Never run as root; the app keeps no state of its own outside MinIO and Elasticsearch.
RUN useradd --system --uid 10001 --create-home --home-dir /home/archiver archiver
USER archiver
WORKDIR /home/archiver

EXPOSE 8080
CMD ["archiver", "serve", "--host", "0.0.0.0", "--workers", "2"]
