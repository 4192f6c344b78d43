"""Loading and validating the TOML configuration."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from webhook.cli import main
from webhook.config import load_config, parse_config
from webhook.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "deploy" / "pushbuild.example.toml"
EXAMPLE_ENV = {"REGISTRY_USER": "bot", "REGISTRY_PASSWORD": "registry-pass-123",
               "ACME_APP_WEBHOOK_SECRET": "s3cret-app", "ACME_API_GITLAB_TOKEN": "s3cret-api",
               "ACME_API_SIGNING_TOKEN": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "ACME_WEB_WEBHOOK_SECRET": "s3cret-web", "ACME_NPM_TOKEN": "npm-tok", "ACME_WEB_RELEASE": "r1",
               "ACME_WEB_STATUS_TOKEN": "status-tok", "ACME_WEB_HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
               "ACME_WEB_HOOK_KEY": "whsk_" + "A" * 43 + "=",
               "PUSHBUILD_DASHBOARD_TOKEN": "d" * 43, "PUSHBUILD_RELEASE_TOKEN": "r" * 43}
REPO = {"name": "acme/app", "forge": "github", "secret_env": "S", "clone_url": "https://h/acme/app.git",
        "image": "registry.example.com/acme/app"}


def test_example_config_is_valid():
    """The shipped example parses with its variables set, and keeps secrets out of repr."""
    config = load_config(EXAMPLE, EXAMPLE_ENV)
    assert [r.name for r in config.repos] == ["acme/app", "acme/api", "acme/web"]
    assert [(t.name, t.scope) for t in config.auth.tokens] == [("dashboard", "read"), ("release-bot", "operate")]
    web = config.repos[2]
    assert (web.forge, web.builder, len(web.rules), len(web.hooks), web.status.context) == ("gitea", "buildkit", 2, 3, "pushbuild")
    app = config.repos[0]
    sha = "a" * 40
    assert app.plan("refs/heads/main", sha, default_branch="main").tags[1:] == (
        "registry.example.com/acme/app:main", "registry.example.com/acme/app:latest")
    assert app.plan("refs/heads/release/2", sha) is not None and app.plan("refs/tags/v1", sha) is not None
    assert app.plan("refs/heads/feature", sha) is None and app.plan("refs/tags/nightly", sha) is None
    assert app.secret.reveal() == "s3cret-app"
    assert config.registry.auth() == {"username": "bot", "password": "registry-pass-123"}
    assert "s3cret" not in repr(config) and "registry-pass" not in repr(config)


def test_no_file_means_embedded_defaults(tmp_path):
    """Without a file, pushbuild runs on SQLite in ./.pushbuild with mirrors on /dev/shm."""
    config = load_config(None, {})
    assert config.repos == ()
    assert config.server.celery_broker_url.startswith("sqla+sqlite:///")
    assert config.server.state_url.endswith(".pushbuild/state.sqlite")
    assert str(config.server.mirror_dir) == "/dev/shm/pushbuild/mirrors"


def test_environment_overrides_broker_and_database():
    """PUSHBUILD_BROKER_URL and PUSHBUILD_DATABASE_URL win over the file."""
    config = parse_config({}, {"PUSHBUILD_BROKER_URL": "redis://127.0.0.1:6379/0",
                               "PUSHBUILD_DATABASE_URL": "postgresql://db/pb"})
    assert (config.server.celery_broker_url, config.server.state_url) == ("redis://127.0.0.1:6379/0", "postgresql://db/pb")


@pytest.mark.parametrize("change, env, problem", [
    ({"secret_env": "UNSET"}, {}, "repos[0].secret_env: environment variable UNSET is unset or empty"),
    ({}, {"S": ""}, "repos[0].secret_env: environment variable S is unset or empty"),
    ({}, {"S": "   "}, "repos[0].secret_env: environment variable S is unset or empty"),
    ({"secret_env": None}, {"S": "x"}, "repos[0].secret_env: is required"),
    ({"forge": "sourceforge"}, {"S": "x"}, "repos[0].forge: must be one of github, gitlab"),
    ({"clone_url": "ext::sh%S%20-c%20touch"}, {"S": "x"}, "repos[0].clone_url: must not use a git remote helper"),
    ({"clone_url": "-uhttps://h/x"}, {"S": "x"}, "repos[0].clone_url: must not start with '-'"),
    ({"clone_url": "file:///srv/x.git"}, {"S": "x"}, "repos[0].clone_url: scheme must be one of https, http, ssh"),
    ({"clone_url": "https://user:tok@h/x.git"}, {"S": "x"}, "repos[0].clone_url: must not contain a user name, password"),
    ({"clone_url": "https://ghp_xxx@github.com/acme/app.git"}, {"S": "x"},
     "repos[0].clone_url: must not contain a user name, password or token; give the token through git_token_env"),
    ({"clone_url": "http://oauth2@h/x.git"}, {"S": "x"}, "repos[0].clone_url: must not contain a user name"),
    ({"clone_url": "https://@h/x.git"}, {"S": "x"}, "repos[0].clone_url: must not contain a user name"),
    ({"image": "Registry/App:latest"}, {"S": "x"}, "repos[0].image: must be an image name"),
    ({"context": "../outside"}, {"S": "x"}, "repos[0].context: must be a path inside the repository"),
    ({"dockerfile": "/etc/passwd"}, {"S": "x"}, "repos[0].dockerfile: must be a path inside the repository"),
    ({"branches": "main"}, {"S": "x"}, "repos[0].branches: must be of type list"),
    ({"latest": "yes"}, {"S": "x"}, "repos[0].latest: must be of type bool"),
    ({"secert_env": "S"}, {"S": "x"}, "repos[0].secert_env: unknown key"),
    ({"name": None}, {"S": "x"}, "repos[0].name: is required"),
    ({"rules": [{"branch": "main", "tag": "v*"}]}, {"S": "x"}, "repos[0].rules[0]: needs exactly one of"),
    ({"rules": [{"tag": "v*", "tags": ["{version}"]}]}, {"S": "x"}, "repos[0].rules[0].tags: unknown field {version}"),
    ({"rules": [{"branch": "main", "semver": True}]}, {"S": "x"}, "repos[0].rules[0].semver: only applies to tag rules"),
    ({"rules": [{"tag_regex": "v(("}]}, {"S": "x"}, "repos[0].rules[0].tag_regex: is not a valid regular expression"),
    ({"rules": []}, {"S": "x"}, "repos[0].rules: must list at least one rule"),
    ({"rules": [{"branch": "main"}], "branches": ["main"]}, {"S": "x"}, "repos[0].branches: goes in each rule"),
    ({"build_args_env": {"TOKEN": "UNSET_VAR"}}, {"S": "x"}, "repos[0].build_args_env.TOKEN: environment variable UNSET_VAR"),
    ({"build_args": {"1BAD": "x"}}, {"S": "x"}, "repos[0].build_args.1BAD: must be a string"),
    ({"secrets_env": {"npm": "S"}}, {"S": "x"}, "repos[0].secrets_env: build secrets need builder"),
    ({"builder": "kaniko"}, {"S": "x"}, "repos[0].builder: must be one of classic, buildkit"),
    ({"platform": "amd64"}, {"S": "x"}, "repos[0].platform: must look like linux/amd64"),
    ({"cache_from": ["Not An Image"]}, {"S": "x"}, "repos[0].cache_from: must be a list of image references"),
    ({"cache_from": ["r.example.com/a:{brnch}"]}, {"S": "x"}, "repos[0].cache_from: unknown field {brnch}"),
    ({"rules": [{"branch": "main", "tags": ["feat/{branch}"]}]}, {"S": "x"},
     "repos[0].rules[0].tags: 'feat/{branch}' must make a valid Docker tag"),
    ({"rules": [{"branch": "main", "tags": ["-{branch}"]}]}, {"S": "x"}, "repos[0].rules[0].tags: '-{branch}' must make"),
    ({"git_token_env": "S", "clone_url": "git@github.com:acme/app.git"}, {"S": "x"}, "repos[0].git_token_env: a token authenticates https"),
    ({"ssh_key_file": "/etc/hostname"}, {"S": "x"}, "repos[0].ssh_key_file: needs an ssh clone_url"),
    ({"ssh_key_file": "/nonexistent/key", "clone_url": "git@github.com:acme/app.git"}, {"S": "x"},
     "repos[0].ssh_key_file: /nonexistent/key is not a readable file"),
    ({"ssh_key_file": "/etc/hostname", "clone_url": "git@github.com:acme/app.git"}, {"S": "x"},
     "repos[0].known_hosts: pin the server's host key"),
    ({"status": {"token_env": "S"}, "forge": "gitea"}, {"S": "x"}, "repos[0].status.api_url: is required for gitea"),
    ({"status": {}}, {"S": "x"}, "repos[0].status.token_env: is required"),
    ({"status": {"token_env": "S", "api": "bitbucket-datacenter"}}, {"S": "x"}, "repos[0].status.api: must be one of github"),
    ({"status": {"token_env": "S", "api": "bitbucket-datacenter"}, "forge": "bitbucket"}, {"S": "x"},
     "repos[0].status.api_url: is required for bitbucket-datacenter"),
    ({"hooks": [{"url": "https://d.example.com/h"}]}, {"S": "x"}, "repos[0].hooks[0].secret_env: a standard hook is signed"),
    ({"hooks": [{"kind": "command"}]}, {"S": "x"}, "repos[0].hooks[0].argv: a command hook needs argv"),
    ({"hooks": [{"kind": "keel", "url": "https://d.example.com/h", "url_env": "S"}]}, {"S": "https://d.example.com/h"},
     "repos[0].hooks[0].url_env: give url or url_env, not both"),
    ({"hooks": [{"kind": "keel", "url": "ftp://x"}]}, {"S": "x"}, "repos[0].hooks[0].url: a keel hook needs an http(s) URL"),
])
def test_invalid_repo_settings_are_reported_with_their_key(change, env, problem):
    """Each problem names the offending key."""
    table = {k: v for k, v in {**REPO, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as raised:
        parse_config({"repos": [table]}, env)
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


@pytest.mark.parametrize("url", ["ssh://git@gitea.example.com/acme/app.git", "git@github.com:acme/app.git",
                                 "ssh://git@gitea.example.com:2222/acme/app.git", "https://github.com/acme/app.git"])
def test_ssh_user_names_and_plain_https_urls_are_accepted(url):
    """ssh's git@ user part is no secret: ssh URLs with one, and https URLs without one, are valid."""
    [repo] = parse_config({"repos": [{**REPO, "clone_url": url}]}, {"S": "x"}).repos
    assert repo.clone_url == url


def test_a_token_in_a_clone_url_is_never_repeated_in_the_problem():
    """The refusal of an https URL holding a token says where the token goes, without showing it."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"repos": [{**REPO, "clone_url": "https://ghp_s3cr3tvalue@github.com/acme/app.git"}]}, {"S": "x"})
    assert "git_token_env" in str(raised.value.problems) and "ghp_s3cr3tvalue" not in str(raised.value.problems)


def test_gitlab_repo_may_verify_with_a_signing_token_only():
    """A GitLab repository needs a secret token, a signing token, or both."""
    table = {**REPO, "forge": "gitlab", "signing_token_env": "T"}
    del table["secret_env"]
    config = parse_config({"repos": [table]}, {"T": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    assert config.repos[0].secret is None and config.repos[0].signing_token is not None


@pytest.mark.parametrize("forge", [None, "sourceforge"])
def test_a_status_table_of_a_repo_without_a_known_forge_is_not_checked_as_githubs(forge):
    """No forge, or an unknown one, is the one problem at repos[0].forge: the status table is not read as GitHub's."""
    table = {k: v for k, v in {**REPO, "forge": forge, "status": {"token_env": "S", "api": "bitbucket-datacenter"}}.items()
             if v is not None}
    with pytest.raises(ConfigError) as raised:
        parse_config({"repos": [table]}, {"S": "x"})
    assert [p for p in raised.value.problems if p.startswith("repos[0].status")] == []
    assert [p for p in raised.value.problems if p.startswith("repos[0].forge")] == [
        "repos[0].forge: is required" if forge is None else
        "repos[0].forge: must be one of github, gitlab, gitea, bitbucket, forgejo, gogs"]


@pytest.mark.parametrize("alias", ["forgejo", "gogs"])
def test_forge_aliases_are_configured_as_the_forge_they_name(alias):
    """A Forgejo or Gogs repository is a Gitea one, found under either name."""
    config = parse_config({"repos": [{**REPO, "forge": alias}]}, {"S": "x"})
    assert config.repos[0].forge == "gitea"
    assert config.repos_named(f"{alias}:acme/app") == config.repos_named("gitea:acme/app") == list(config.repos)


def test_signing_tokens_are_gitlabs_alone():
    """signing_token_env is a GitLab key; other forges call it unknown. GitLab without one is warned of."""
    with pytest.raises(ConfigError, match=r"repos\[0\].signing_token_env: unknown key"):
        parse_config({"repos": [{**REPO, "signing_token_env": "T"}]}, {"S": "x", "T": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    config = parse_config({"repos": [{**REPO, "forge": "gitlab"}, {**REPO, "name": "acme/other"}]}, {"S": "x"})
    assert [w.split(" is ")[0] for w in config.warnings()] == ["repos: gitlab:acme/app"]
    assert "secret token alone" in config.warnings()[0]


def test_rules_and_build_settings_are_read():
    """A rules table, build arguments from the environment and BuildKit secrets load as given."""
    table = {**REPO, "builder": "buildkit", "target": "prod", "platform": "linux/amd64",
             "build_args": {"MODE": "release"}, "build_args_env": {"NPM_TOKEN": "NPM"}, "secrets_env": {"npm": "NPM"},
             "cache_from": ["registry.example.com/acme/app:cache"],
             "rules": [{"tag_regex": r"^v(?P<v>.+)$", "tags": ["{v}"], "semver": True, "latest": True},
                       {"branch": ["main", "release/*"], "tags": ["{sha}", "{branch}"], "target": "debug"}]}
    config = parse_config({"repos": [table]}, {"S": "x", "NPM": "npm-token-value"})
    repo = config.repos[0]
    release = repo.plan("refs/tags/v1.4.2", "a" * 40)
    assert [t.rsplit(":", 1)[1] for t in release.tags] == ["a" * 40, "1.4.2", "1.4", "1", "latest"]
    assert (release.target, release.platform, release.cache_from) == ("prod", "linux/amd64", ("registry.example.com/acme/app:cache",))
    assert dict(release.build_args) == {"MODE": "release", "NPM_TOKEN": "npm-token-value"}
    assert repo.plan("refs/heads/main", "a" * 40).target == "debug"
    assert "npm-token-value" not in repr(config)
    assert "npm-token-value" in [s.reveal() for s in config.secrets()]


@pytest.mark.parametrize("rules", [
    None,  # the default rules: every branch, every tag
    {"branches": ["main", "release/*"], "tags": ["v*"]},
    {"rules": [{"tag_regex": r"^v(?P<v>\d+)\.", "tags": ["{v}"]}, {"branch": ["feature/*"], "tags": ["{branch}"]}]},
])
def test_whether_a_ref_builds_is_what_its_plan_says(rules):
    """Intake asks only whether a rule matches (RepoConfig.builds), without making the plan."""
    repo = parse_config({"repos": [{**REPO, **(rules or {})}]}, {"S": "x"}).repos[0]
    refs = ["", "refs/heads/main", "refs/heads/release/2", "refs/heads/feature/x", "refs/heads/dev",
            "refs/tags/v1.2.3", "refs/tags/v1", "refs/tags/nightly"]
    assert [repo.builds(ref) for ref in refs] == [repo.plan(ref, "a" * 40) is not None for ref in refs]
    assert len({repo.builds(ref) for ref in refs}) == (1 if rules is None else 2)


def test_duplicate_repository_is_refused():
    """The same repository twice on one forge is ambiguous."""
    with pytest.raises(ConfigError, match="configured twice"):
        parse_config({"repos": [REPO, REPO]}, {"S": "x"})


def test_unknown_sections_and_bad_server_values_are_reported():
    """Typos in section names and nonsense limits are caught at start-up."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"sever": {}, "server": {"lease_s": 0, "heartbeat_s": "5"}}, {})
    assert raised.value.problems == ["server.lease_s: must be greater than 0",
                                     "server.heartbeat_s: must be of type int or float", "sever: unknown key"]


def test_check_config_prints_the_problems_and_exits_2(tmp_path):
    """`pushbuild check-config` names each problem and fails."""
    path = tmp_path / "bad.toml"
    path.write_text('[[repos]]\nname = "acme/app"\nforge = "github"\nsecret_env = "NOPE_UNSET"\n')
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)], env={"NOPE_UNSET": ""})
    assert result.exit_code == 2
    assert "repos[0].secret_env: environment variable NOPE_UNSET is unset or empty" in result.output
    assert "repos[0].clone_url: is required" in result.output


def test_check_config_accepts_the_example():
    """`pushbuild check-config` on a valid file lists the repositories."""
    result = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert result.exit_code == 0, result.output
    assert "github:acme/app -> registry.example.com/acme/app" in result.output


def test_unreadable_and_invalid_toml_files_are_config_errors(tmp_path):
    """A missing file or broken TOML is a clear configuration error."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    for path in (tmp_path / "missing.toml", broken):
        with pytest.raises(ConfigError):
            load_config(path, {})


def test_running_builds_on_the_hosts_network_is_warned_about_at_start_up(tmp_path):
    """build_network = "host" is allowed, and every command that loads the configuration says what it exposes."""
    path = tmp_path / "host.toml"
    path.write_text('[engine]\nbuild_network = "host"\n')
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 0
    assert "warning: engine.build_network = \"host\": RUN steps of every pushed branch reach every service" in result.stderr
    quiet = CliRunner().invoke(main, ["check-config", "--config", str(EXAMPLE)], env=EXAMPLE_ENV)
    assert "warning" not in quiet.stderr
