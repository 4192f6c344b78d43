"""Bare mirrors fetched over real git smart HTTP."""

import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from webhook.build.mirror import Mirrors
from webhook.config import RepoConfig
from webhook.errors import ContextError, GitError

from .helpers.gitrepo import Repo
from .helpers.gitserver import GitHttpServer
from .helpers.sshserver import SshGitServer


def config_for(repo, git_server, **extra) -> RepoConfig:
    return RepoConfig(name=repo.name, forge="github", clone_url=git_server.url(f"{repo.name}.git"),
                      image="127.0.0.1:5000/x", **extra)


@pytest.fixture
def mirrors(tmp_path):
    return Mirrors(tmp_path / "mirrors")


def test_fetches_the_pushed_commit_into_a_bare_mirror(repo, git_server, mirrors):
    """The pushed commit becomes readable in a bare mirror, with no working tree."""
    sha = repo.commit({"Dockerfile": "FROM scratch\n", "hello.txt": "hi\n"})
    cfg = config_for(repo, git_server)
    lines = []
    assert mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lines.append) == sha
    path = mirrors.path(cfg)
    assert (path / "HEAD").exists() and not (path / ".git").exists()
    assert mirrors.read_file(cfg, sha, "hello.txt") == b"hi\n"
    assert mirrors.read_file(cfg, sha, "missing") is None
    assert mirrors.read_files(cfg, sha, ["Dockerfile", "missing", "hello.txt"]) == {
        "Dockerfile": b"FROM scratch\n", "missing": None, "hello.txt": b"hi\n"}
    assert all(git_server.url("") not in line for line in lines), "the clone URL is not logged"


def test_a_commit_already_mirrored_is_not_fetched_again(repo, git_server, mirrors):
    """A second build of the same commit makes no request to the server."""
    sha = repo.commit({"a": "1"})
    cfg = config_for(repo, git_server)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    before = len(git_server.requests)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    assert len(git_server.requests) == before


def test_an_older_commit_of_the_branch_is_fetched_by_id(repo, git_server, mirrors):
    """Deliveries arrive late: a commit that is no longer the branch head is still fetched."""
    old = repo.commit({"a": "1"})
    repo.commit({"a": "2"})
    cfg = config_for(repo, git_server)
    assert mirrors.fetch_commit(cfg, sha=old, ref="refs/heads/main", log=lambda _: None) == old
    assert mirrors.read_file(cfg, old, "a") == b"1"


def test_servers_refusing_fetch_by_id_get_the_ref_instead(tmp_path, mirrors):
    """Where the server will not send an unadvertised commit, the pushed ref is fetched."""
    server = GitHttpServer(tmp_path / "served", protocol_v2=False).start()
    try:
        repo = Repo(server.root, tmp_path / "work", "acme/v0")
        old = repo.commit({"a": "1"})
        repo.commit({"a": "2"})
        lines = []
        assert mirrors.fetch_commit(config_for(repo, server), sha=old, ref="refs/heads/main", log=lines.append) == old
        assert any("fetching refs/heads/main instead" in line for line in lines)
    finally:
        server.stop()


def test_an_annotated_tag_resolves_to_its_commit(repo, git_server, mirrors):
    """A tag object id is peeled to the tagged commit."""
    commit = repo.commit({"a": "1"})
    tag_object = repo.tag("v1.0.0", annotated=True)
    assert tag_object != commit
    cfg = config_for(repo, git_server)
    assert mirrors.fetch_commit(cfg, sha=tag_object, ref="refs/tags/v1.0.0", log=lambda _: None) == commit


def test_a_commit_the_server_does_not_have_is_a_clear_error(repo, git_server, mirrors):
    """A SHA that is not on the remote fails with a GitError."""
    repo.commit({"a": "1"})
    with pytest.raises(GitError):
        mirrors.fetch_commit(config_for(repo, git_server), sha="1" * 40, ref="refs/heads/main", log=lambda _: None)


def test_resolving_a_branch_name(repo, git_server, mirrors):
    """`pushbuild build REPO main` resolves main to its head commit."""
    repo.commit({"a": "1"})
    head = repo.commit({"a": "2"}, branch="dev")
    assert mirrors.resolve(config_for(repo, git_server), "dev", log=lambda _: None) == head


def test_archive_streams_the_tree_of_a_subdirectory(repo, git_server, mirrors):
    """git archive of a context subdirectory has paths relative to it."""
    sha = repo.commit({"services/api/Dockerfile": "FROM scratch\n", "services/api/app.py": "x", "README": "r"})
    cfg = config_for(repo, git_server)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    with mirrors.archive(cfg, sha, "services/api") as stream:
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(m.name for m in tar.getmembers()) == ["Dockerfile", "app.py"]


def test_a_symlinked_file_is_refused(repo, git_server, mirrors):
    """A Dockerfile that is a symlink could point anywhere; reading it is refused."""
    sha = repo.commit({}, symlinks={"Dockerfile": "/etc/passwd"})
    cfg = config_for(repo, git_server)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    with pytest.raises(ContextError, match="symbolic link"):
        mirrors.read_file(cfg, sha, "Dockerfile")


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/pwned", "file:///etc", "-uhttps://x"])
def test_unsafe_clone_urls_are_never_fetched(tmp_path, url):
    """Even a configured URL is refused when it is ext::, file:// or option-like."""
    cfg = RepoConfig(name="a/b", forge="github", clone_url=url, image="x")
    with pytest.raises(GitError, match="refusing"):
        Mirrors(tmp_path).fetch_commit(cfg, sha="1" * 40, ref="refs/heads/main", log=lambda _: None)
    assert not (tmp_path / "pwned").exists()


def test_mirror_names_are_derived_not_taken_raw(tmp_path):
    """A repository name cannot place its mirror outside the mirror directory."""
    cfg = RepoConfig(name="../../etc", forge="github", clone_url="https://x/y.git", image="x")
    path = Mirrors(tmp_path).path(cfg)
    assert path.parent == tmp_path and ".." not in path.name.split("-")[0].strip("._")


@pytest.fixture
def private_server(tmp_path):
    server = GitHttpServer(tmp_path / "private", token="glpat-private-token-xyz").start()
    yield server
    server.stop()


def private_config(repo, server, token):
    from webhook.config import Secret

    return config_for(repo, server, git_token=Secret("GIT_TOKEN", token) if token else None)


def test_a_private_repository_is_fetched_with_the_token(private_server, mirrors, tmp_path):
    """The token authenticates the fetch and is written nowhere: not the mirror, not the log."""
    repo = Repo(private_server.root, tmp_path / "work", "acme/private")
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    cfg = private_config(repo, private_server, "glpat-private-token-xyz")
    lines = []
    assert mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lines.append) == sha
    path = mirrors.path(cfg)
    stored = "".join(p.read_text(errors="replace") for p in path.rglob("*") if p.is_file() and p.stat().st_size < 100_000)
    assert "glpat-private-token-xyz" not in stored + "".join(lines)


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_wrong_or_missing_token_fails_clearly_without_the_secret(private_server, mirrors, tmp_path, token):
    """Authentication failures are a GitError saying so, never echoing the token."""
    repo = Repo(private_server.root, tmp_path / "work", "acme/private")
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    with pytest.raises(GitError, match="Authentication failed|could not read Username") as raised:
        mirrors.fetch_commit(private_config(repo, private_server, token), sha=sha, ref="refs/heads/main",
                             log=lambda _: None)
    assert "wrong-token" not in raised.value.message


def test_the_token_is_offered_to_the_clone_urls_host_only(mirrors):
    """git's credential requests get the token for the clone URL's host and port, and for nothing else."""
    from webhook.config import Secret

    cfg = RepoConfig(name="a/b", forge="gitlab", clone_url="https://git.example.com:8443/a/b.git", image="x",
                     git_token=Secret("T", "glpat-host-bound"))
    options, env = mirrors.git_access(cfg)

    def fill(host):
        return subprocess.run(["git", *sum((["-c", o] for o in options), []), "credential", "fill"],
                              input=f"protocol=https\nhost={host}\n\n", env={**os.environ, **env},
                              capture_output=True, text=True, check=False).stdout

    assert "password=glpat-host-bound" in fill("git.example.com:8443")
    assert "glpat-host-bound" not in fill("evil.example.com") + fill("git.example.com")
    assert all("glpat-host-bound" not in option for option in options), "never on the command line"


@pytest.fixture
def ssh_server(tmp_path):
    if not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("openssh-server is not installed (./dev test installs it)")
    server = SshGitServer(tmp_path / "ssh")
    yield server
    server.stop()


def ssh_config(repo, server, **extra):
    return RepoConfig(name=repo.name, forge="gitlab", clone_url=server.url(repo.bare), image="x",
                      ssh_key_file=str(server.deploy_key), **extra)


def test_ssh_with_a_deploy_key_and_a_pinned_host_key(ssh_server, mirrors, tmp_path):
    """A deploy key fetches over ssh when the server's host key is the pinned one."""
    repo = Repo(tmp_path / "served", tmp_path / "work", "acme/over-ssh")
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    cfg = ssh_config(repo, ssh_server, known_hosts=(ssh_server.known_hosts_line,))
    assert mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None) == sha


def test_ssh_refuses_a_host_key_that_is_not_pinned(ssh_server, mirrors, tmp_path):
    """Another host key than the pinned one is refused: no trust on first use."""
    repo = Repo(tmp_path / "served", tmp_path / "work", "acme/over-ssh")
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[:2]
    cfg = ssh_config(repo, ssh_server, known_hosts=(f"[127.0.0.1]:{ssh_server.port} {' '.join(other)}",))
    with pytest.raises(GitError, match="Host key verification failed"):
        mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)


def test_ssh_may_accept_a_new_host_key_when_asked_to(ssh_server, mirrors, tmp_path):
    """With accept_new_host_keys, the first key seen is pinned for next time."""
    repo = Repo(tmp_path / "served", tmp_path / "work", "acme/over-ssh")
    sha = repo.commit({"Dockerfile": "FROM scratch\n"})
    cfg = ssh_config(repo, ssh_server, accept_new_host_keys=True)
    assert mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None) == sha
    assert f"[127.0.0.1]:{ssh_server.port}" in Path(f"{mirrors.path(cfg)}.known_hosts").read_text()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MiB tmpfs for mirrors, so a full disk is real."""
    where = tmp_path / "shm"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_least_recently_used_mirrors_are_evicted_beyond_the_budget(repo_factory, git_server, tmp_path):
    """With room for about two mirrors, fetching a third evicts the one used longest ago."""
    mirrors = Mirrors(tmp_path / "budgeted", budget_bytes=2_500_000)
    repos = [repo_factory(f"acme/big-{i}") for i in range(3)]
    configs = []
    for repo in repos:
        sha = repo.commit({"blob.bin": os.urandom(1_000_000)})
        configs.append(config_for(repo, git_server))
        mirrors.fetch_commit(configs[-1], sha=sha, ref="refs/heads/main", log=lambda _: None)
        time.sleep(0.05)  # distinct last-used times
    assert not mirrors.path(configs[0]).exists(), "the least recently used mirror was evicted"
    assert mirrors.path(configs[1]).exists() and mirrors.path(configs[2]).exists()


def test_a_full_tmpfs_evicts_the_others_and_then_fails_clearly(repo_factory, git_server, small_tmpfs):
    """A full mirror directory first costs the other mirrors; a commit that cannot fit at all fails with the reason."""
    mirrors = Mirrors(small_tmpfs / "mirrors")
    small = repo_factory("acme/small")
    first = small.commit({"blob.bin": os.urandom(1_800_000)})
    mirrors.fetch_commit(config_for(small, git_server), sha=first, ref="refs/heads/main", log=lambda _: None)
    medium = repo_factory("acme/medium")
    fits_alone = medium.commit({"blob.bin": os.urandom(1_500_000)})
    lines = []
    mirrors.fetch_commit(config_for(medium, git_server), sha=fits_alone, ref="refs/heads/main", log=lines.append)
    assert any("evicting every other mirror" in line for line in lines)
    assert not mirrors.path(config_for(small, git_server)).exists()
    huge = repo_factory("acme/huge")
    too_big = huge.commit({"blob.bin": os.urandom(4_000_000)})
    with pytest.raises(GitError, match="is full, even with every other mirror evicted"):
        mirrors.fetch_commit(config_for(huge, git_server), sha=too_big, ref="refs/heads/main", log=lambda _: None)
    again = small.commit({"note": "small again"})
    assert mirrors.fetch_commit(config_for(small, git_server), sha=again, ref="refs/heads/main", log=lambda _: None) == again


def test_files_over_the_read_limit_are_refused(repo, git_server, mirrors):
    """A Dockerfile or .dockerignore over max_bytes fails with its name and the limit; one at the limit is read."""
    sha = repo.commit({"Dockerfile": "x" * 1000, "big/.dockerignore": "y" * 1001})
    cfg = config_for(repo, git_server)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    assert mirrors.read_file(cfg, sha, "Dockerfile", max_bytes=1000) == b"x" * 1000
    with pytest.raises(ContextError, match=r"^big/\.dockerignore is 1001 bytes, over the 1000-byte limit"):
        mirrors.read_file(cfg, sha, "big/.dockerignore", max_bytes=1000)


@pytest.fixture
def hostile_home(tmp_path, monkeypatch):
    """A HOME whose ~/.gitconfig would change what git does, were the worker's git to read it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def test_fetching_reads_no_global_git_config(repo, git_server, mirrors, hostile_home):
    """A url.insteadOf in the worker's ~/.gitconfig does not redirect fetches or ls-remote."""
    sha = repo.commit({"a": "1"})
    (hostile_home / ".gitconfig").write_text(f'[url "http://127.0.0.1:9/"]\n\tinsteadOf = {git_server.base_url}/\n')
    cfg = config_for(repo, git_server)
    assert mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None) == sha
    assert mirrors.remote_heads(cfg)["refs/heads/main"] == sha


def test_archive_runs_no_filter_from_the_global_git_config(repo, git_server, mirrors, hostile_home):
    """A commit's .gitattributes naming a filter of the worker's ~/.gitconfig gets the committed bytes; the filter never runs."""
    marker = hostile_home / "filter-ran"
    (hostile_home / ".gitconfig").write_text(f'[filter "evil"]\n\tsmudge = "touch {marker}; tr a-z A-Z"\n')
    sha = repo.commit({".gitattributes": "* filter=evil\n", "hello.txt": "hello\n"})
    cfg = config_for(repo, git_server)
    mirrors.fetch_commit(cfg, sha=sha, ref="refs/heads/main", log=lambda _: None)
    with mirrors.archive(cfg, sha, ".") as stream:
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("hello.txt").read() == b"hello\n"
    assert not marker.exists()
