"""The three services a fleet model cache run talks to, on the lab network with TLS from the
lab CA: the origin (the model hub stand-in, "the internet"), the cache (a real Azurite) and
the site AzCopy's release is downloaded from. Shared by tests/integration/test_model_cache.py
and bench/bench_model_cache.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.tls import issue_server_cert
from tests.doubles.download_site import DownloadSite, build_azcopy_tarball
from tests.doubles.model_hub import ModelHub
from tests.harness.azurite import Azurite


@dataclass
class CacheServices:
    hub: ModelHub
    azurite: Azurite
    azcopy_url: str  # the pinned AzCopy tarball on the download site
    azcopy_sha256: str


@contextmanager
def cache_services(gateway: str, folder: Path) -> Iterator[CacheServices]:
    """Serve the three from ``folder`` (certificates, Azurite's data, the tarball) until the
    block ends."""
    cert, key = issue_server_cert([gateway], folder / "tls")
    tls = (str(cert), str(key))
    tarball, sha256 = build_azcopy_tarball(folder / "site")
    with (
        ModelHub(gateway, tls=tls) as hub,
        Azurite(gateway, folder / "azurite", tls) as azurite,
        DownloadSite(gateway, folder / "site", tls) as site,
    ):
        yield CacheServices(hub, azurite, f"{site.url}/{tarball.name}", sha256)
