"""The headers every answer of the web app carries, whichever part of it answers (Flask, or :mod:`.receive`)."""

from __future__ import annotations

from flask import Response

#: Pages load only pushbuild's own scripts and styles, no other site may frame them, nothing is
#: sniffed into another type, no other site learns a console address, and nothing is cached.
EVERY_ANSWER = (
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


def add_to(response: Response) -> Response:
    """Give a Flask answer the headers it does not set itself (a sign-in's redirect says ``no-referrer``)."""
    for name, value in EVERY_ANSWER:
        response.headers.setdefault(name, value)
    return response
