"""gunicorn settings for the web app: ``gunicorn -c python:webhook.gunicorn_conf 'webhook:create_app()'``.

gevent, not threads (``webhook.web.serving.Worker``): pushbuild's port faces the internet, and under
the gthread worker 200 clients sending half a request, or 8 following build logs, held all of
its threads and kept forges' deliveries waiting past their 10 s. Here each connection is a
greenlet; a request's head must arrive within ``server.request_timeout_s`` of its connection and
its body within that long of its head, else 408 and the connection is closed. A buffering proxy
in front (deploy/nginx.conf, deploy/Caddyfile) is still recommended: see docs/operations.md, "Running it for real".
"""

import os

from webhook import defaults

bind = f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else defaults.BIND
workers = int(os.environ.get("WEB_CONCURRENCY", defaults.WEB_WORKERS))
worker_class = "webhook.web.serving.Worker"
#: Connections held at once per process; the worker raises its open-files limit to fit them.
worker_connections = defaults.WEB_WORKER_CONNECTIONS
#: A worker whose event loop is stuck this long (a call that never yields) is restarted.
timeout = 60
accesslog = "-"
#: gunicorn's default, with the path in place of the request line and no user: a query string may
#: carry the sign-in link's ``?token=``, and gunicorn's user atom is a Basic-auth user, which a
#: client may fill with a token. Neither is logged, nor is the Authorization header.
access_log_format = '%(h)s %(l)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
#: Control characters a client sent (a %0a in the path) are escaped, so they cannot forge log lines.
logger_class = "webhook.web.access_log.AccessLogger"
#: No control socket (gunicorn 25.1+ opens one in $XDG_RUNTIME_DIR or ~/.gunicorn by default): it
#: would depend on the home directory, be shared by every pushbuild on the machine, and nothing uses it.
control_socket_disable = True
