"""gunicorn settings for the web app: ``gunicorn -c python:webhook.gunicorn_conf 'webhook:create_app()'``.

Threads, not sync workers: a client following a build log holds its connection for the
whole build, and must not block webhook deliveries, which have to be answered within 10 s.
"""

import os

from webhook import defaults

bind = f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else defaults.BIND
workers = int(os.environ.get("WEB_CONCURRENCY", defaults.WEB_WORKERS))
worker_class = "gthread"
threads = defaults.WEB_THREADS
#: Longest a request may take; log followers stream, so this only bounds a stuck one.
timeout = 60
accesslog = "-"
