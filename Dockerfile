# Affidavit attestation service image: docs/operations.md ("Containers and Kubernetes").
#   docker build -t affidavit:0.1.0 .
#   docker run -p 8080:8080 -e AFFIDAVIT_ISSUER=https://attest.example.com \
#     -e AFFIDAVIT_DATABASE_URL=postgresql://... -e AFFIDAVIT_ADMIN_TOKEN=... affidavit:0.1.0
# Stage 1 builds the wheel of this source tree and the wheels of its runtime dependencies; stage 2 installs
# only those, from local files, into a slim Python and runs as an unprivileged user. No compiler, no
# test or benchmark extras, no source tree in the final image.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="affidavit" \
      org.opencontainers.image.description="Self-hosted remote attestation service, wire-compatible with MAA" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 affidavit \
    && useradd --system --uid 10001 --gid affidavit --home-dir /var/lib/affidavit --shell /usr/sbin/nologin affidavit \
    && install -d -o affidavit -g affidavit -m 0700 /var/lib/affidavit
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links=/wheels /wheels/affidavit-*.whl \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AFFIDAVIT_HOST=0.0.0.0 \
    AFFIDAVIT_PORT=8080 \
    AFFIDAVIT_DATA_DIR=/var/lib/affidavit
USER 10001:10001
WORKDIR /var/lib/affidavit
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["affidavit"]
CMD ["serve"]
