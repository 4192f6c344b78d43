"""Making text safe to log, store or show (webhook/redact.py): secrets masked, control characters escaped."""

from webhook.redact import MASK, Redactor, printable

#: Text a stranger could send → what is written instead.
ESCAPED = {
    "GET /a\nforged 200": "GET /a\\x0aforged 200",
    "\x1b[31mred\x1b[0m": "\\x1b[31mred\\x1b[0m",
    "tab\there\r": "tab\\x09here\\x0d",
    "del\x7f and c1\x9b": "del\\x7f and c1\\x9b",
    "plain text, ünïcödé and emoji 🐳": "plain text, ünïcödé and emoji 🐳",
}


def test_printable_escapes_every_control_character():
    """A newline cannot start a forged log line, nor an escape sequence drive a terminal."""
    assert {text: printable(text) for text in ESCAPED} == ESCAPED


def test_printable_keeps_only_the_characters_it_is_told_to():
    """A build log keeps its newlines and tabs (``keep``), and still loses its escape sequences."""
    assert printable("step 1\n\tok\x1b[2K\r", keep="\n\t") == "step 1\n\tok\\x1b[2K\\x0d"


def test_every_secret_is_masked_wherever_it_appears():
    """Each occurrence of each secret becomes ***; other text is left alone."""
    redact = Redactor(["s3cret-token", "hunter2"])
    assert redact("a s3cret-token, hunter2 and s3cret-token again") == f"a {MASK}, {MASK} and {MASK} again"
    assert redact("nothing secret here") == "nothing secret here"


def test_a_secret_containing_another_is_masked_whole():
    """Longest first: masking the shorter secret first would leave the rest of the longer one in the text."""
    redact = Redactor(["abc", "abc-def-long"])
    assert redact("token=abc-def-long") == f"token={MASK}"


def test_empty_secrets_are_ignored():
    """An unset secret (the empty string) would otherwise mask between every character."""
    assert Redactor(["", "x-secret"])("text with x-secret") == f"text with {MASK}"
    assert Redactor([""])("text") == "text"
