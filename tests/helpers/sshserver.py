"""An OpenSSH server on loopback serving git over ssh, with a deploy key the tests hold."""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from pathlib import Path


def _keypair(path: Path) -> str:
    """Generate an Ed25519 key pair at ``path``; return the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class SshGitServer:
    """``sshd`` on 127.0.0.1 accepting one deploy key; repositories are addressed by absolute path."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.deploy_key = workdir / "deploy_key"
        host_public = _keypair(workdir / "host_key")
        (workdir / "authorized_keys").write_text(_keypair(self.deploy_key) + "\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {' '.join(host_public.split()[:2])}"
        config = workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {workdir / 'host_key'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}", "StrictModes no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", f"PidFile {workdir / 'sshd.pid'}",
            "PermitRootLogin prohibit-password", "LogLevel ERROR", "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self._log = open(workdir / "sshd.log", "wb")
        self.process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"sshd did not start: {(workdir / 'sshd.log').read_text()}")

    def url(self, bare_repo: Path) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{bare_repo}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()
