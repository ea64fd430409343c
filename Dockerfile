# Flask on Gunicorn behind Nginx, kept up by Supervisord; publishes port 1300.
# Build: docker build -t flask-stack .   (podman: add --format docker to keep HEALTHCHECK)
# Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=/path/to/ca-bundle.pem
# Targets: the default is the minimal image; `--target debug` adds a shell and tools.
ARG BASE_IMAGE=debian:trixie-slim
# The app's directory in the build context: `--build-arg APP_SOURCE=examples/package`.
ARG APP_SOURCE=app

# Python 3.13 and Nginx from Debian, at trixie's current security updates
# (the upgrade covers what the base image already had, such as libzstd1).
FROM ${BASE_IMAGE} AS debian
RUN apt-get update \
 && apt-get upgrade -y \
 && apt-get install -y --no-install-recommends python3 nginx ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/log/*

# One virtual environment from two lock files (hashes required): the stack's
# own and the app's. A package both pin must be pinned alike, and together they
# must satisfy every requirement (pip check).
FROM debian AS venv
ARG APP_SOURCE
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY stack/requirements.txt /tmp/stack-requirements.txt
COPY ${APP_SOURCE}/requirements.txt /tmp/app-requirements.txt
# The CA bundle is mounted for this step only; the image never keeps it.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv --without-pip /opt/venv \
 && if ! { pip --python /opt/venv/bin/python install --no-cache-dir --disable-pip-version-check \
             --require-hashes --no-deps -r /tmp/stack-requirements.txt -r /tmp/app-requirements.txt \
           && pip --python /opt/venv/bin/python check; }; then \
      echo "app/requirements.txt does not fit stack/requirements.txt: lock it with" \
           "-c stack/requirements.txt (README, Your own Flask app)" >&2; exit 1; \
    fi
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
# And Flask's instance folder, where the app keeps its data: the runtime user's
# and group 0's, group-writable, so a volume there is writable by any UID in
# group 0 (`--user 123456:0`, the OpenShift convention) as by the default user.
RUN python3 /tmp/rootfs.py /rootfs --scan /opt/venv \
 && install -d -m 775 /app-data/instance

FROM scratch AS minimal
ARG APP_SOURCE
COPY --from=rootfs /rootfs /
COPY --from=venv /opt/venv /opt/venv
# The stack first, the app last: a change to the app rebuilds one small layer.
COPY supervisord.conf /srv/
COPY nginx /srv/nginx
COPY stack /srv/stack
COPY ${APP_SOURCE} /srv/app
COPY --from=rootfs --chown=10001:0 /app-data/ /srv/app/
# `docker exec` and commands run where the app is, as in its project directory.
WORKDIR /srv/app
ENV PATH=/opt/venv/bin:/usr/bin:/usr/sbin \
    PYTHONPATH=/srv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
USER 10001:10001
EXPOSE 1300
# -P: the working directory (the app's) is not on the stack's own import path,
# so an app module never shadows a module of the stack's.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-P", "-m", "stack.healthcheck"]
ENTRYPOINT ["/opt/venv/bin/python", "-P", "-m", "stack.entrypoint"]

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
