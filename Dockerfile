# The image every Stride service in compose.yml runs: stride-server, stride-worker and
# stride-migrate (console scripts from pyproject.toml). Build: docker compose build.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# What `pip install .` reads: the project metadata, the readme it names, the generated
# stride.v1 package (gen/) and every package pyproject.toml's packages.find includes
# (tests/test_compose.py checks this list against pyproject.toml).
WORKDIR /opt/stride-src
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY core/ core/
COPY domain/ domain/
COPY services/ services/
COPY storage/ storage/
COPY tasks/ tasks/
COPY runtime/ runtime/
COPY server/ server/
COPY cli/ cli/
COPY gateway/ gateway/
RUN pip install . \
    && cd / && rm -rf /opt/stride-src

# An unprivileged user; the data and import staging directories exist (owned by it) so
# named volumes mounted there start with the right owner.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/stride stride \
    && mkdir -p /var/lib/stride/data /var/lib/stride/imports \
    && chown -R stride:stride /var/lib/stride
USER stride
WORKDIR /var/lib/stride

ENV STRIDE_DATA_DIR=/var/lib/stride/data \
    STRIDE_IMPORT_STAGING_DIR=/var/lib/stride/imports \
    STRIDE_LISTEN_ADDRESS=0.0.0.0:50051 \
    STRIDE_METRICS_ADDRESS=0.0.0.0:9464 \
    STRIDE_LOG_FORMAT=json

# gRPC, Prometheus /metrics
EXPOSE 50051 9464
CMD ["stride-server"]
