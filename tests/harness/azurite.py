"""Real Azurite (npm) on the lab network, and container SAS URLs made by the real Azure SDK."""

from __future__ import annotations

import contextlib
import datetime
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from lab.paths import REPO_ROOT
from lab.process_group import stop_group
from lab.tls import CA_CERT

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key (public, documented by Microsoft).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE = REPO_ROOT / "node_modules/.bin/azurite-blob"
# What Azurite prints once its SIGTERM shutdown has saved its blob list; it may keep running
# after that (a client's open connection holds it), so stop() kills it then.
CLOSED = b"Azurite Blob service successfully closed"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Azurite:
    """azurite-blob over HTTPS (lab CA certificate) on ``host``; start() and stop() may repeat
    on the same port and data folder, so a test can take the service down and back up."""

    def __init__(self, host: str, data_dir: Path, tls: tuple[str, str], port: int = 0) -> None:
        if not AZURITE.exists():
            raise FileNotFoundError(f"{AZURITE} is missing: run scripts/bootstrap (npm install)")
        self.host, self.data_dir, self.tls = host, data_dir, tls
        self.port = port or _free_port(host)  # 0: any free port
        self.url = f"https://{host}:{self.port}/{ACCOUNT}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Its own messages, beside its data: stop() reads there when its data is saved.
        self.log = self.data_dir.with_name(f"{self.data_dir.name}.log")
        with open(self.log, "wb") as log:
            # A process group of its own: stop() stops it and whatever it started, at once.
            self.process = subprocess.Popen(
                [str(AZURITE), "--blobHost", self.host, "--blobPort", str(self.port),
                 "--location", str(self.data_dir), "--cert", self.tls[0], "--key", self.tls[1],
                 "--silent", "--loose", "--skipApiVersionCheck"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("azurite-blob exited at start") from None
                time.sleep(0.2)
        raise RuntimeError("azurite-blob did not listen within 30 s")

    def stop(self) -> None:
        """SIGTERM (Azurite saves its blob list, saved only every few seconds otherwise),
        then SIGKILL to its process group as soon as it says it closed, within a second."""
        process = self.process
        if process and process.poll() is None:
            stop_group(
                process.pid,
                lambda: process.poll() is None,
                done=lambda: CLOSED in self.log.read_bytes(),
            )
        self.process = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the service (SIGSTOP): clients connect and then wait for answers."""
        assert self.process and self.process.poll() is None, "azurite-blob is not running"
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def service(self) -> BlobServiceClient:
        return BlobServiceClient(
            self.url,
            credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
            connection_verify=str(CA_CERT),
        )

    def sas_url(
        self,
        container: str,
        permission: str,
        expires_in: datetime.timedelta | None = None,
        *,
        expiry: datetime.datetime | None = None,
    ) -> str:
        """A container SAS expiring ``expires_in`` from now, or at ``expiry``."""
        if expiry is None:
            expiry = datetime.datetime.now(datetime.timezone.utc) + (
                expires_in or datetime.timedelta(days=1)
            )
        token = generate_container_sas(
            ACCOUNT,
            container,
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=expiry,
        )
        return f"{self.url}/{container}?{token}"

    def blobs(self, container: str) -> dict[str, int]:
        """Blob name -> size in the container."""
        client = self.service().get_container_client(container)
        return {blob.name: blob.size for blob in client.list_blobs()}
