"""What became of a forge's delivery, in one word: the ``outcome`` of /metrics and of a repository's last delivery. Performs no I/O.

The words are a fixed set, so a stranger sending deliveries cannot make more of them.
"""

from __future__ import annotations

from .errors import BadRequest, NotFound, PayloadTooLarge, SignatureError, UnsupportedMediaType

ACCEPTED = "accepted"              # recorded and queued builds (202)
DUPLICATE = "duplicate"            # a delivery or push recorded before (200)
IGNORED = "ignored"                # verified, but builds nothing: a ping, another event, no rule matches (200)
REFUSED_SIGNATURE = "refused_signature"  # no configured secret signs it, or not the one of the repository it names (401)
UNKNOWN_REPO = "unknown_repo"      # signed, but names a repository not configured for the forge (404)
UNKNOWN_FORGE = "unknown_forge"    # POST /hooks/<name> for no forge pushbuild knows (404)
BAD_REQUEST = "bad_request"        # a malformed body, header, ref or commit id (400)
TOO_LARGE = "too_large"            # a body over server.max_body_bytes (413)
UNSUPPORTED_TYPE = "unsupported_type"  # neither JSON nor form-encoded (415)
ERROR = "error"                    # pushbuild failed answering it (a defect, the database down)

#: Every outcome, in the order /metrics lists them.
OUTCOMES = (ACCEPTED, DUPLICATE, IGNORED, REFUSED_SIGNATURE, UNKNOWN_REPO, UNKNOWN_FORGE, BAD_REQUEST, TOO_LARGE,
            UNSUPPORTED_TYPE, ERROR)

_REFUSALS = ((SignatureError, REFUSED_SIGNATURE), (NotFound, UNKNOWN_REPO), (PayloadTooLarge, TOO_LARGE),
             (UnsupportedMediaType, UNSUPPORTED_TYPE), (BadRequest, BAD_REQUEST))


def refusal(exc: BaseException) -> str:
    """Return the outcome of a delivery answered with ``exc``."""
    return next((word for kind, word in _REFUSALS if isinstance(exc, kind)), ERROR)
