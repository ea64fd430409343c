# Flask on Gunicorn behind Nginx, kept up by Supervisord; publishes port 1300.
# Build: docker build -t flask-stack .   (podman: add --format docker to keep HEALTHCHECK)
# Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=/path/to/ca-bundle.pem
ARG BASE_IMAGE=debian:trixie-slim

# Python 3.13 and Nginx from Debian: what every later stage runs on.
FROM ${BASE_IMAGE} AS runtime-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 nginx \
 && rm -rf /var/lib/apt/lists/* /var/log/*

# The app's virtual environment, from the lock file only (hashes required).
FROM runtime-base AS venv
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY app/requirements.txt /tmp/requirements.txt
# The CA bundle is mounted for this step only; the image never keeps it.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
        --require-hashes --no-deps -r /tmp/requirements.txt

FROM runtime-base AS runtime
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app
COPY --from=venv /opt/venv /opt/venv
# The stack first, the app last: a change to the app rebuilds one small layer.
COPY gunicorn.conf.py supervisord.conf /srv/
COPY nginx /srv/nginx
COPY stack /srv/stack
COPY app /srv/app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/srv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 1300
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "stack.healthcheck"]
ENTRYPOINT ["/opt/venv/bin/python", "-m", "stack.entrypoint"]
