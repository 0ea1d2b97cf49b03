# badsmtp in a container (README, Container).  Build: docker build -t badsmtp .
#
# Two stages from the same base: "build" makes the wheels (badsmtp's from this
# checkout, its dependencies' from PyPI) and installs them into the venv
# /opt/badsmtp; the runtime stage copies only that venv, so it holds no
# compiler, no pip, no wheel files and no source.  Python is found on PATH
# (python3 -m venv), so any Debian-based image with python3 and venv works as
# the base, e.g. --build-arg BASE=python:3.13-slim-bookworm.
ARG BASE=python:3.12-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN python3 -m venv /opt/badsmtp \
 && /opt/badsmtp/bin/python -m pip wheel --wheel-dir /wheels . \
 && /opt/badsmtp/bin/python -m pip install --no-index --find-links /wheels badsmtp \
 && /opt/badsmtp/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/badsmtp/bin/badsmtp --version

FROM ${BASE}
# A fixed numeric non-root user: `docker run --user` and Kubernetes'
# runAsNonRoot can check it, and a named volume mounted on the mailbox
# directory inherits its owner.
RUN groupadd --gid 2525 badsmtp \
 && useradd --uid 2525 --gid 2525 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin badsmtp \
 && install -d -o 2525 -g 2525 -m 0755 /var/mail/badsmtp
COPY --from=build /opt/badsmtp /opt/badsmtp

# - Listen on every interface of the container: a published port (-p) reaches
#   the container's own address, never its 127.0.0.1.
# - Storage stays off, as everywhere else (README, Storing messages): a sink
#   for load tests must not fill a volume nobody reads.  Turn it on with
#   -e BADSMTP_MAILBOX_DIR=/var/mail/badsmtp and mount a volume there.
# - Shut down within docker stop's 10 s grace period: sessions get their 421
#   at once, a client that ignores it is cut off after 5 s, and badsmtp exits
#   0 before the runtime's SIGKILL (badsmtp(1), SIGNALS).
ENV PATH=/opt/badsmtp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    BADSMTP_LISTEN_ADDRESS=0.0.0.0 \
    BADSMTP_SHUTDOWN_TIMEOUT=5
VOLUME ["/var/mail/badsmtp"]
USER 2525:2525

# The main ports: normal SMTP, implicit TLS, port-587-style STARTTLS.  The
# fault ports are not exposed (304 would clutter every listing); publish the
# ones a test needs, e.g. -p 3000-3099:3000-3099 (greeting delays),
# -p 4000-4099:4000-4099 (command delays), -p 5000-5099:5000-5099 (delayed
# drops), -p 6000:6000 (immediate drop).
EXPOSE 2525 25465 25587

# The check speaks SMTP: connect to the main port actually bound (read from
# the port file, so --port and BADSMTP_PORT are followed), expect the 220,
# say QUIT.  Any other greeting, a refused connection or a timeout fails it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import json, smtplib; port = json.load(open('/tmp/badsmtp-ports.json'))['normal_port']; smtplib.SMTP('127.0.0.1', port, timeout=4).quit()"]

# Exec form: badsmtp is PID 1 and receives docker stop's SIGTERM itself.
ENTRYPOINT ["badsmtp", "--port-file", "/tmp/badsmtp-ports.json"]
