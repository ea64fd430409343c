# Flask on Gunicorn behind Nginx, kept up by Supervisord; publishes port 1300.
# Build: docker build -t flask-stack .   (podman: add --format docker to keep HEALTHCHECK)
# Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=/path/to/ca-bundle.pem
# Targets: the default is the minimal image; `--target debug` adds a shell and tools.
ARG BASE_IMAGE=debian:trixie-slim

# Python 3.13 and Nginx from Debian, at trixie's current security updates
# (the upgrade covers what the base image already had, such as libzstd1).
FROM ${BASE_IMAGE} AS debian
RUN apt-get update \
 && apt-get upgrade -y \
 && apt-get install -y --no-install-recommends python3 nginx ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/log/*

# The app's virtual environment, from the lock file only (hashes required).
FROM debian AS venv
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
# Libraries as bytecode only, without their test suites: half the size; then
# the pure-Python ones in one zip. The app keeps its source, so its tracebacks
# show their lines.
COPY image/zip_packages.py /tmp/zip_packages.py
RUN python3 -m compileall -q -b -j 0 --invalidation-mode unchecked-hash /opt/venv/lib \
 && find /opt/venv/lib -name '*.py' -delete \
 && find /opt/venv/lib \( -name __pycache__ -o -name tests \) -type d -prune -exec rm -rf {} + \
 && python3 /tmp/zip_packages.py /opt/venv/lib/python3*/site-packages

# Only what runs: Python, Nginx, the libraries their binaries load, package metadata.
FROM debian AS rootfs
COPY --from=venv /opt/venv /opt/venv
COPY image/rootfs.py /tmp/rootfs.py
RUN python3 /tmp/rootfs.py /rootfs --scan /opt/venv

FROM scratch AS minimal
COPY --from=rootfs /rootfs /
COPY --from=venv /opt/venv /opt/venv
# The stack first, the app last: a change to the app rebuilds one small layer.
COPY supervisord.conf /srv/
COPY nginx /srv/nginx
COPY stack /srv/stack
COPY app /srv/app
ENV PATH=/opt/venv/bin:/usr/bin:/usr/sbin \
    PYTHONPATH=/srv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 10001:10001
EXPOSE 1300
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "stack.healthcheck"]
ENTRYPOINT ["/opt/venv/bin/python", "-m", "stack.entrypoint"]

# For troubleshooting: the same image plus BusyBox's shell and tools.
FROM debian AS busybox
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static \
 && rm -rf /var/lib/apt/lists/*

FROM minimal AS debug
COPY --from=busybox /bin/busybox /usr/bin/busybox
USER 0
RUN ["/usr/bin/busybox", "--install", "-s", "/usr/bin"]
USER 10001:10001

# The default target.
FROM minimal
