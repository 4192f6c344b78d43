"""The web edge: the Flask app, its blueprints and access control, and the gunicorn worker it runs in.

:mod:`.app` composes the app; :mod:`.receive` is ``POST /hooks/<forge>``, :mod:`.api` the API,
:mod:`.access` signing requests in, :mod:`.http_errors` errors as JSON; :mod:`.serving` and
:mod:`.access_log` are gunicorn's worker class and access log. This module imports nothing:
gunicorn's master loads :mod:`.serving` and :mod:`.access_log` before its gevent workers patch.
"""
