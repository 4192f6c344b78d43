"""A private Docker engine the tests can restart, with a busybox base image imported into it."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import docker

BASE_IMAGE = "pushbuild/busybox:latest"


def busybox_rootfs() -> bytes:
    """A tar of a root file system holding busybox and its applet links."""
    out = io.BytesIO()
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for directory in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    return out.getvalue()


class EngineProcess:
    """``dockerd`` on a private socket under ``workdir`` (no bridge, no iptables), stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = f"unix://{workdir}/docker.sock"
        self.process: subprocess.Popen | None = None
        self.start()
        client = self.client()
        if not client.images.list(name=BASE_IMAGE):
            client.api.import_image_from_data(busybox_rootfs(), repository=BASE_IMAGE.split(":")[0], tag="latest")
        client.close()

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.socket, version="auto")

    def start(self) -> None:
        log = open(self.workdir / "dockerd.log", "ab")
        self.process = subprocess.Popen(
            ["dockerd", "--host", self.socket, "--data-root", str(self.workdir / "data"),
             "--exec-root", str(self.workdir / "exec"), "--pidfile", str(self.workdir / "docker.pid"),
             "--bridge=none", "--iptables=false"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client = docker.DockerClient(base_url=self.socket, version="auto", timeout=2)
                client.ping()
                client.close()
                return
            except Exception:  # not up yet
                time.sleep(0.2)
        raise AssertionError(f"dockerd did not start: {(self.workdir / 'dockerd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the engine and unmount what it left mounted under its directory."""
        self.stop()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(f"{self.workdir}/")]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
