# Flask on Gunicorn behind Nginx, kept up by Supervisord; publishes port 1300.
# Build: docker build -t flask-stack .   (podman: add --format docker to keep HEALTHCHECK)
# Behind a TLS-intercepting proxy: --secret id=ca_bundle,src=/path/to/ca-bundle.pem
# Targets: the default is the runtime plus the app in app/; `runtime` is the
# stack without an app and `builder` what adds one to it (examples/external);
# `debug` is the default plus a shell and tools.
ARG BASE_IMAGE=debian:trixie-slim
# The app's directory in the build context: `--build-arg APP_SOURCE=examples/package`.
ARG APP_SOURCE=app
# The stack's version (CHANGELOG.md), and what the labels say of the build.
ARG VERSION=1.0.0
ARG REVISION=unknown
ARG SOURCE=local
# Debian trixie's: the builder stops if its Python or Nginx is another.
ARG PYTHON_VERSION=3.13
ARG NGINX_VERSION=1.26

# Python and Nginx from Debian, at trixie's current security updates (the
# upgrade covers what the base image already had, such as libzstd1), with what
# the later stages need: pip for the builder, BusyBox for the debug target.
# One apt run: an arm64 build runs each under emulation, for minutes. The
# runtime takes only what its files need (stack/build/rootfs.py).
FROM ${BASE_IMAGE} AS debian
RUN apt-get update \
 && apt-get upgrade -y \
 && apt-get install -y --no-install-recommends python3 nginx ca-certificates \
      python3-pip busybox-static \
 && rm -rf /var/lib/apt/lists/* /var/log/*

# The builder: Debian's Python with pip, the stack's virtual environment, the
# runtime's root filesystem, and flask-stack-add, which adds an app's locked
# dependencies to them.
FROM debian AS builder
ARG PYTHON_VERSION
ARG NGINX_VERSION
RUN python3 -c "import sys; assert sys.version.startswith('${PYTHON_VERSION}.'), sys.version" \
 && nginx -v 2>/tmp/nginx-version && grep -q "nginx/${NGINX_VERSION}\." /tmp/nginx-version
# The stack's own lock (hashes required) as bytecode, pure-Python packages
# zipped. The CA bundle is mounted for this step only; no image keeps it.
COPY stack/requirements.txt /opt/stack/requirements.txt
COPY stack/build/packages.py /opt/stack/build/packages.py
RUN --mount=type=secret,id=ca_bundle,required=false \
    python3 /opt/stack/build/packages.py /opt/venv /opt/stack/requirements.txt
# Only what runs: Python, Nginx, the libraries their binaries load, package
# metadata. And Flask's instance folder, where an app keeps its data: the
# runtime user's and group 0's, group-writable, so a volume there is writable
# by any UID in group 0 (`--user 123456:0`, OpenShift's convention) too.
COPY stack/build/rootfs.py /opt/stack/build/rootfs.py
RUN python3 /opt/stack/build/rootfs.py /rootfs --scan /opt/venv \
 && install -d -m 775 /app-data/instance
# The runtime's SBOMs, SPDX and CycloneDX, from the package metadata it holds
# (docs/hardening.md); an image with an app gets its own from flask-stack-add.
COPY stack/build/pkgmeta.py stack/build/sbom.py /opt/stack/build/
RUN python3 /opt/stack/build/sbom.py /rootfs --name "flask-stack runtime" \
      --layer /rootfs=/ --layer /opt/venv=/opt/venv
COPY --chmod=755 stack/build/add.py /opt/stack/build/add.py
RUN ln -s /opt/stack/build/add.py /usr/local/bin/flask-stack-add \
 && python3 /opt/stack/build/sbom.py / --name "flask-stack builder" --layer /=/
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="flask-stack builder" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      io.flask-stack.python.version="${PYTHON_VERSION}" \
      io.flask-stack.nginx.version="${NGINX_VERSION}"

# The runtime: the stack with no app.
FROM scratch AS runtime
COPY --from=builder /rootfs /
COPY --from=builder /opt/venv /opt/venv
COPY supervisord.conf /srv/
COPY nginx /srv/nginx
# The stack's modules; its build/ tools are the builder's alone.
COPY stack/*.py /srv/stack/
COPY --from=builder --chown=10001:0 /app-data/ /srv/app/
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
ARG VERSION
# For the metrics' flask_stack_build_info.
ENV FLASK_STACK_VERSION=${VERSION}
ARG REVISION
ARG SOURCE
ARG PYTHON_VERSION
ARG NGINX_VERSION
LABEL org.opencontainers.image.title="flask-stack" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      io.flask-stack.python.version="${PYTHON_VERSION}" \
      io.flask-stack.nginx.version="${NGINX_VERSION}"

# The app's dependencies, added as any user's are (examples/external).
FROM builder AS app-dependencies
ARG APP_SOURCE
COPY ${APP_SOURCE}/requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=ca_bundle,required=false flask-stack-add /tmp/requirements.txt

# The runtime plus the app: the app last, so a change to it rebuilds one small layer.
FROM runtime AS app
ARG APP_SOURCE
COPY --from=app-dependencies /added/ /
COPY ${APP_SOURCE} /srv/app

# For troubleshooting: the same image plus BusyBox's shell and tools.
FROM app AS debug
COPY --from=debian /bin/busybox /usr/bin/busybox
USER 0
RUN ["/usr/bin/busybox", "--install", "-s", "/usr/bin"]
USER 10001:10001

# The default target.
FROM app
