"""The build context stream: .dockerignore applied, entries rewritten, nothing held whole."""

import io
import subprocess
import sys
import tarfile

import pytest

from webhook.build.context import IgnoreRules, dockerignore_patterns, filtered_tar
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


def test_file_data_over_the_total_limit_is_refused():
    """More file data in all than max_bytes fails the build, naming the limit and its config key."""
    files = {"Dockerfile": b"", "a": b"x" * 400, "b": b"y" * 400, "c": b"z" * 400}
    with pytest.raises(ContextError, match=r"over 1000 bytes of file data .*server\.max_context_bytes"):
        list(filtered_tar(make_tar(files), IgnoreRules([], dockerfile="Dockerfile"), max_bytes=1000))


def test_more_entries_than_the_limit_are_refused():
    """More entries (directories count) than max_entries fails the build, naming the limit and its config key."""
    source = make_tar({"Dockerfile": b"", "d/a": b"", "d/b": b""}, dirs=("d/",))
    with pytest.raises(ContextError, match=r"over 3 entries .*server\.max_context_entries"):
        list(filtered_tar(source, IgnoreRules([], dockerfile="Dockerfile"), max_entries=3))


def test_the_total_limits_count_only_what_is_sent():
    """Entries .dockerignore leaves out cost neither bytes nor entries of the limits."""
    files = {"Dockerfile": b"", "keep": b"k" * 600, "big.log": b"x" * 5000, "more.log": b"y"}
    rules = IgnoreRules(["*.log"], dockerfile="Dockerfile")
    result = names_and_data(filtered_tar(make_tar(files), rules, max_bytes=600, max_entries=2))
    assert set(result) == {"Dockerfile", "keep"}


def test_dockerignore_with_too_many_patterns_is_refused():
    """2,000 patterns are refused by default, naming .dockerignore; comments and blanks do not count."""
    with pytest.raises(ContextError, match=r"\.dockerignore has 2000 patterns, over the limit"):
        dockerignore_patterns("\n".join(f"dir{i}/**" for i in range(2000)))
    assert len(dockerignore_patterns("# c\n\na\nb\nc\n", max_patterns=3)) == 3
    with pytest.raises(ContextError, match=r"\.dockerignore has 4 patterns, over the limit of 3"):
        dockerignore_patterns("a\nb\nc\nd\n", max_patterns=3)


@pytest.mark.parametrize("patterns", [
    [], ["*.log", "!keep.log"], ["secrets"], ["**/*.md"], ["*", "!app.py"], ["docs/", "!docs/keep/**"],
    ["**/node_modules", "Docs/*.MD"], ["a/../secrets", "./app.py"], ["[a-c]*", "!b*"], ["?.log", "**"],
])
def test_ignore_rules_decide_as_docker_py_does(patterns):
    """The compiled rules keep exactly what docker-py's own PatternMatcher keeps, path for path."""
    from docker.utils.build import PatternMatcher

    paths = ["Dockerfile", ".dockerignore", "app.py", "a.log", "keep.log", "secrets", "secrets/key", "docs",
             "docs/x.md", "docs/keep/y.md", "docs/sub/z.md", "src/node_modules/m/i.js", "node_modules", "docs/README.MD",
             "b.txt", "c/d", "x/y/z/w.log"]
    docker = PatternMatcher([*patterns, "!Dockerfile", "!.dockerignore"])
    rules = IgnoreRules(patterns, dockerfile="Dockerfile")
    assert {p: rules.keeps(p) for p in paths} == {p: not docker.matches(p) for p in paths}


def test_an_invalid_dockerignore_pattern_is_a_context_error():
    """A pattern that is no valid character class fails the build naming .dockerignore, not as an internal error."""
    with pytest.raises(ContextError, match=r"\.dockerignore holds an invalid pattern '\[z-a\]'"):
        list(filtered_tar(make_tar({"Dockerfile": b""}), IgnoreRules(["[z-a]"], dockerfile="Dockerfile")))


def test_a_dockerignore_pattern_cannot_hold_a_worker_for_ever():
    """``*a*a*a*a*a*a*a*a*b`` against a long path ends (RE2, linear time); Python's backtracking engine would not.

    Run in a child process, since one regular-expression match cannot be interrupted in-process.
    """
    probe = ("from webhook.build.context import IgnoreRules; "
             "print(IgnoreRules(['*a*a*a*a*a*a*a*a*b'], dockerfile='Dockerfile').keeps('a' * 4000))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "True"


def test_refused_patterns_are_not_logged_by_the_matcher(capfd):
    """An invalid pattern is the build's error, not a line on the worker's stderr."""
    with pytest.raises(ContextError, match="invalid character class range"):
        IgnoreRules(["[z-a]"], dockerfile="Dockerfile")
    assert capfd.readouterr().err == ""


def make_entries(entries: list[tuple[str, bytes, str]]) -> io.BytesIO:
    """A tar of a Dockerfile and then ``entries`` in the order given: (name, type, link target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("Dockerfile"), io.BytesIO(b""))
        for name, kind, target in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    out.seek(0)
    return out


SYM, HARD, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE


@pytest.mark.parametrize("entries, refused", [
    # git archive sorts entries: the link leaving through "s" comes before "s" itself
    ([("leak", SYM, "s/../etc/passwd"), ("s", SYM, ".")], "leak"),
    ([("a", DIR, ""), ("a/b", SYM, ".."), ("a/c", SYM, "b/../x")], "a/c"),
    ([("a", DIR, ""), ("a/b", SYM, ".."), ("d", SYM, "a/b"), ("x", SYM, "d/../y")], "x"),
    ([("a", DIR, ""), ("a/b", DIR, ""), ("a/b/c", SYM, "../.."), ("z", SYM, "a/b/c/../w")], "z"),
    ([("h", HARD, "s/../outside"), ("s", SYM, ".")], "h"),
])
def test_links_resolving_outside_through_other_links_are_refused(entries, refused):
    """A link whose target leaves the context once the other links are followed fails the build, naming it."""
    with pytest.raises(ContextError, match=rf"^{refused} is a link to .*outside the build context"):
        list(filtered_tar(make_entries(entries), IgnoreRules([], dockerfile="Dockerfile")))


@pytest.mark.parametrize("entries, patterns", [
    ([("ok", SYM, "s/Dockerfile"), ("s", SYM, ".")], []),
    ([("a", DIR, ""), ("a/b", SYM, ".."), ("a/c", SYM, "b/Dockerfile"), ("a/d", SYM, "b/a/b/a/c")], []),
    ([("d", DIR, ""), ("d/e", DIR, ""), ("d/e/up", SYM, "../.."), ("d/in", SYM, "e/up/Dockerfile")], []),
    # "s" is not sent, so the engine has no link to follow there
    ([("leak", SYM, "s/../etc/passwd"), ("s", SYM, ".")], ["s"]),
])
def test_links_resolving_inside_through_other_links_are_kept(entries, patterns):
    """Links through links that stay inside the context are ordinary content."""
    kept = {name for name, _, _ in entries if name not in patterns}
    chunks = filtered_tar(make_entries(entries), IgnoreRules(patterns, dockerfile="Dockerfile"))
    assert set(names_and_data(chunks)) == {"Dockerfile", *kept}


def test_a_refused_link_stops_the_stream_before_the_end_of_the_archive():
    """The engine never receives a complete tar when a link is refused: the end-of-archive blocks are withheld."""
    sent = []
    with pytest.raises(ContextError, match="leak"):
        for chunk in filtered_tar(make_entries([("leak", SYM, "s/../etc/passwd"), ("s", SYM, ".")]),
                                  IgnoreRules([], dockerfile="Dockerfile")):
            sent.append(chunk)
    assert sent and not b"".join(sent).endswith(b"\0" * (2 * tarfile.BLOCKSIZE))


def test_a_link_loop_is_refused():
    """Links pointing at each other fail the build once more than 40 would be followed, as the kernel stops."""
    with pytest.raises(ContextError, match=r"^a resolves through over 40 links"):
        list(filtered_tar(make_entries([("a", SYM, "b"), ("b", SYM, "a")]), IgnoreRules([], dockerfile="Dockerfile")))


def test_resolving_links_is_bounded_in_work():
    """Resolving links through each other stops with an error past max_link_steps components in all."""
    entries = [(f"l{i}", SYM, "x/" * 20) for i in range(10)]
    with pytest.raises(ContextError, match="over 100 steps to resolve"):
        list(filtered_tar(make_entries(entries), IgnoreRules([], dockerfile="Dockerfile"), max_link_steps=100))
