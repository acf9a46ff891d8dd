# The ward's notice service: api, dispatcher, channel workers and scheduler in one process.
#
# The code reads config/ and templates/ from the project root, the folder above the
# `notifier` package (notifier/config.py PROJECT_ROOT, notifier/render.py TEMPLATES_DIR).
# So the whole tree lives in /app and is installed in editable mode: a plain
# `pip install .` would put the packages in site-packages, where neither folder is.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The printed digest: Pango (with HarfBuzz-Subset) lays it out in universal-design
# Japanese fonts (and Korean and Chinese ones), which the PDFs embed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
        libharfbuzz-subset0 fonts-morisawa-bizud-gothic fonts-ipaexfont-gothic \
        fonts-nanum fonts-droid-fallback \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, read from pyproject.toml, so that a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps -e . \
    && python -c "from notifier.config import DEFAULT_CONFIG; from notifier.render import TEMPLATES_DIR; assert DEFAULT_CONFIG.is_file() and TEMPLATES_DIR.is_dir(), (DEFAULT_CONFIG, TEMPLATES_DIR)"

# A user of its own; the code stays root's (read-only to the service), only var/ is writable.
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --uid 10001 --gid notifier --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin notifier \
    && mkdir -p /app/var/outbox /app/var/print \
    && chown -R notifier:notifier /app/var

ENV NOTIFIER_HTTP_HOST=0.0.0.0 \
    NOTIFIER_HTTP_PORT=8080 \
    NOTIFIER_OUTBOX_DIR=/app/var/outbox \
    NOTIFIER_PRINT_DIR=/app/var/print

VOLUME ["/app/var"]
USER notifier
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NOTIFIER_HTTP_PORT', '8080') + '/healthz', timeout=4)"]

# Exec form: `notifier` is PID 1 and gets SIGTERM, on which it stops reading and
# finishes its in-flight batches (up to 10 s) before it exits.
CMD ["notifier", "serve"]
