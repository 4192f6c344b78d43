"""Bare mirrors fetched over real git smart HTTP."""

import io
import tarfile

import pytest

from webhook.config import RepoConfig
from webhook.errors import ContextError, GitError
from webhook.mirror import Mirrors

from .gitrepo import Repo
from .gitserver import GitHttpServer


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
