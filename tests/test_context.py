"""The build context stream: .dockerignore applied, entries rewritten, nothing held whole."""

import io
import tarfile

import pytest

from webhook.context import IgnoreRules, dockerignore_patterns, filtered_tar
from webhook.errors import ContextError


def make_tar(files: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> io.BytesIO:
    """A tar like `git archive` makes: directories, then files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def names_and_data(chunks) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r:") as tar:
        return {m.name: (tar.extractfile(m).read() if m.isreg() else b"<other>") for m in tar}


def test_dockerignore_patterns_skip_blanks_and_comments():
    """Blank lines and # comments are not patterns."""
    assert dockerignore_patterns("# comment\n\n*.log\n  secrets/  \n!keep.log\n") == ["*.log", "secrets/", "!keep.log"]


@pytest.mark.parametrize("patterns, kept", [
    ([], {"Dockerfile", "app.py", "a.log", "keep.log", "secrets", "secrets/key", "docs", "docs/x.md", ".dockerignore"}),
    (["*.log", "!keep.log"], {"Dockerfile", "app.py", "keep.log", "secrets", "secrets/key", "docs", "docs/x.md", ".dockerignore"}),
    (["secrets"], {"Dockerfile", "app.py", "a.log", "keep.log", "docs", "docs/x.md", ".dockerignore"}),
    (["**/*.md"], {"Dockerfile", "app.py", "a.log", "keep.log", "secrets", "secrets/key", "docs", ".dockerignore"}),
    (["*", "!app.py"], {"Dockerfile", "app.py", ".dockerignore"}),
    (["Dockerfile", ".dockerignore"], {"Dockerfile", "app.py", "a.log", "keep.log", "secrets", "secrets/key", "docs", "docs/x.md", ".dockerignore"}),
])
def test_dockerignore_is_applied_like_docker(patterns, kept):
    """Docker's .dockerignore semantics; the Dockerfile and .dockerignore are always sent."""
    source = make_tar({"Dockerfile": b"FROM scratch\n", "app.py": b"print()\n", "a.log": b"x", "keep.log": b"y",
                       "secrets/key": b"k", "docs/x.md": b"m", ".dockerignore": b"..."}, dirs=("secrets/", "docs/"))
    rules = IgnoreRules(patterns, dockerfile="Dockerfile")
    assert set(names_and_data(filtered_tar(source, rules))) == kept


def test_file_contents_survive_the_rewrite():
    """Kept files arrive byte for byte, whatever their size relative to the tar block."""
    files = {"a": b"", "b": b"x" * 511, "c": b"y" * 512, "d": bytes(range(256)) * 7}
    result = names_and_data(filtered_tar(make_tar(files), IgnoreRules([], dockerfile="Dockerfile"), chunk_bytes=100))
    assert result == files


def test_large_files_are_streamed_in_bounded_chunks():
    """No chunk handed to the engine is larger than the chunk size: a big file is never held whole."""
    big = b"z" * (3 * 1024 * 1024 + 17)
    chunks = list(filtered_tar(make_tar({"big.bin": big}), IgnoreRules([], dockerfile="Dockerfile"), chunk_bytes=65536))
    assert max(len(c) for c in chunks) <= 65536
    assert names_and_data(chunks)["big.bin"] == big


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../escape"])
def test_paths_leaving_the_context_are_refused(name):
    """An entry that would land outside the context fails the build."""
    with pytest.raises(ContextError, match="unsafe path"):
        list(filtered_tar(make_tar({name: b"x"}), IgnoreRules([], dockerfile="Dockerfile")))


def test_truncated_tar_is_a_context_error():
    """A stream that ends inside a file is an error, not a short file."""
    data = make_tar({"a": b"x" * 5000}).getvalue()[:2048]
    with pytest.raises(ContextError):
        list(filtered_tar(io.BytesIO(data), IgnoreRules([], dockerfile="Dockerfile")))


def make_links(links: dict[str, tuple[bytes, str]]) -> io.BytesIO:
    """A tar of links: name → (type, target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("Dockerfile"), io.BytesIO(b""))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    out.seek(0)
    return out


@pytest.mark.parametrize("name, kind, target", [
    ("etc-link", tarfile.SYMTYPE, "/etc/passwd"),
    ("up", tarfile.SYMTYPE, "../../outside"),
    ("a/b/up", tarfile.SYMTYPE, "../../../outside"),
    ("hard", tarfile.LNKTYPE, "../outside"),
])
def test_links_leaving_the_context_are_refused(name, kind, target):
    """A link to somewhere outside the context fails the build with its name."""
    with pytest.raises(ContextError, match="outside the build context"):
        list(filtered_tar(make_links({name: (kind, target)}), IgnoreRules([], dockerfile="Dockerfile")))


def test_links_within_the_context_are_kept():
    """Relative links that stay inside are ordinary content."""
    chunks = filtered_tar(make_links({"a/b/sibling": (tarfile.SYMTYPE, "../c"), "same": (tarfile.SYMTYPE, "Dockerfile")}),
                          IgnoreRules([], dockerfile="Dockerfile"))
    assert set(names_and_data(chunks)) == {"Dockerfile", "a/b/sibling", "same"}


def test_files_over_the_size_limit_are_refused():
    """A file larger than the limit fails the build before it is sent."""
    with pytest.raises(ContextError, match="over the 1000-byte limit"):
        list(filtered_tar(make_tar({"big": b"x" * 1001}), IgnoreRules([], dockerfile="Dockerfile"), max_file_bytes=1000))
