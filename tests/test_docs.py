"""The manual says what the code does: every configuration key and default in docs/configuration.md.

The keys the configuration reader knows are collected by reading a configuration that uses every
section (each table's reader records the keys it asks for, present or not); the documented ones
are read from the tables of docs/configuration.md. A key added to the code but not to the manual,
or documented but unknown to the code, fails here; so does a documented default that is not
the code's.
"""

import re
from collections import defaultdict
from pathlib import Path

import pytest

from webhook import config as config_module
from webhook.config import EngineConfig, ServerConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "configuration.md").read_text()
ENV = {"S": "secret-value", "T": "t" * 40, "U": "u" * 40, "W": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
REPO = {"name": "acme/app", "forge": "github", "secret_env": "S", "clone_url": "https://h.example/acme/app.git",
        "image": "r.example.com/acme/app"}
#: Tables the manual documents in rows of their own, and where a list of sub-keys is written inline.
INLINE = {"repos.status": "status", "repos.hooks": "hooks", "auth.tokens": "tokens"}


def _known_keys(monkeypatch) -> dict[str, set[str]]:
    """Read configurations that reach every reader; return each table's keys (``repos[0]`` → ``repos``)."""
    known: dict[str, set[str]] = defaultdict(set)
    finish = config_module._Reader.finish

    def recording(reader) -> None:
        known[re.sub(r"\[\d+\]", "", reader.where)] |= reader.seen
        finish(reader)

    monkeypatch.setattr(config_module._Reader, "finish", recording)
    full = {
        "server": {"build_cpu_shares": 512},
        "engine": {}, "registry": {},
        "auth": {"tokens": [{"name": "a", "token_env": "T", "scope": "read"}],
                 "trusted_header": "X-Forwarded-User", "trusted_proxies": ["10.0.0.1"]},
        "repos": [
            {**REPO, "status": {"token_env": "S"}, "hooks": [{"url": "https://d.example/h", "secret_env": "W"}],
             "builder": "buildkit"},
            {**REPO, "name": "acme/rules", "rules": [{"branch": "main"}]},
            {**REPO, "name": "acme/gl", "forge": "gitlab", "signing_token_env": "W"},
        ],
    }
    parse_config(full, ENV)
    return known


def _documented() -> dict[str, dict[str, str]]:
    """Return each documented table's keys with the default cell of their row."""
    tables: dict[str, dict[str, str]] = {}
    for heading, body in re.findall(r"^## `\[\[?([\w.]+)\]\]?`\n(.*?)(?=^## |\Z)", REFERENCE, re.M | re.S):
        rows = tables.setdefault(heading, {})
        for row in re.findall(r"^\| (`[^|]+`) \|(.*)$", body, re.M):
            cells = [c.strip() for c in row[1].split(" | ")]
            names = re.findall(r"`([a-z_]+)`", row[0])
            defaults = [d.strip() for d in cells[0].split(",")] if len(cells) > 1 else [""] * len(names)
            for i, name in enumerate(names):
                rows[name] = defaults[i] if len(defaults) == len(names) else cells[0]
            for table, key in INLINE.items():
                if table.startswith(f"{heading}.") and key in names:
                    listed = re.sub(r"\([^)]*\)", "", cells[-1].split(":", 1)[-1])  # not the values in brackets
                    tables[table] = {k: "" for k in re.findall(r"`([a-z_]+)`", listed)}
    return tables


@pytest.mark.parametrize("table", ["server", "engine", "registry", "auth", "auth.tokens", "repos", "repos.status",
                                   "repos.hooks"])
def test_every_key_the_code_reads_is_documented_and_no_other(monkeypatch, table):
    known = _known_keys(monkeypatch)[table]
    documented = set(_documented()[table])
    assert sorted(known - documented) == [], f"[{table}] keys missing from docs/configuration.md"
    assert sorted(documented - known) == [], f"[{table}] keys documented but unknown to the code"


@pytest.mark.parametrize(("table", "defaults"), [("server", ServerConfig()), ("engine", EngineConfig())])
def test_documented_defaults_are_the_codes(table, defaults):
    """A default written as a literal (`600`, `false`, `docker`) is the value the code uses."""
    checked = 0
    for key, cell in _documented()[table].items():
        literal = re.fullmatch(r"`([^`]+)`(?: \(.*\))?", cell)
        if literal is None or not hasattr(defaults, key):
            continue
        value = getattr(defaults, key)
        text = literal.group(1)
        if isinstance(value, bool):
            assert text == str(value).lower(), key
        elif isinstance(value, (int, float)):
            assert float(text) == value, key
        elif value is not None:
            assert text in (str(value), f"./{value}"), key
        checked += 1
    assert checked >= 3
