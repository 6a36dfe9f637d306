"""Settings: the one TOML file, validated at the edge and passed down explicitly.

Only this module reads the environment, and only through the `environ` mapping it is given.
Any string value may be `${env:NAME}` or `${file:/path}` (also inside a longer string), so
secrets never sit in the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from auditor.errors import ConfigError, LayoutError, ScheduleError
from auditor.layout import Layout, parse_layout
from auditor.schedule import DEFAULT_GRACE, Schedule, parse_grace, parse_schedule

DEFAULT_CONFIG_PATH = Path("config/auditor.toml")
_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class CatalogSettings(_Model):
    """Where the catalog lives: any SQLAlchemy URL."""

    url: str = Field("sqlite:///auditor.db", description="SQLAlchemy URL of the catalog database")
    lock_lease: timedelta = Field(
        timedelta(minutes=2),
        description="how long a destination stays locked by an auditor process that stopped answering (frozen, cut off) before another "
        "process may audit it (PostgreSQL ends the frozen one's session; on SQLite its lease row is taken); a live holder renews it three times per lease",
    )

    @field_validator("lock_lease", mode="before")
    @classmethod
    def _lease(cls, value: Any) -> timedelta:
        lease = _duration(value)
        if not timedelta(seconds=2) <= lease <= timedelta(days=1):
            raise ValueError("must be at least 2s and at most 1d")
        return lease


class ValidationSettings(_Model):
    """How files are checked: isolation, bounds per file, concurrency."""

    isolate: bool = Field(True, description="check data files in worker processes, so a crashing reader cannot stop the audit (false: in the audit process, where some malformed Parquet metadata aborts pyarrow, and the audit with it)")
    workers: int = Field(0, ge=0, le=64, description="worker processes (0: one per CPU this process may use)")
    threads: int = Field(8, ge=1, le=256, description="files checked at the same time (I/O concurrency)")
    memory_mb: int = Field(4096, ge=256, description="memory one worker may use before a file counts as unverifiable")
    timeout_seconds: float = Field(60.0, gt=0, description="time allowed per file, plus size / min_throughput_mb")
    min_throughput_mb: float = Field(4.0, gt=0, description="MiB per second a check must sustain on a large file")
    cluster: str | None = Field(None, description="Dask scheduler for deep checks (tcp://HOST:PORT or tls://HOST:PORT); unset: this machine")
    serve_sample: float | None = Field(None, gt=0, le=100, description="`auditor serve` deep-checks a rotating share (percent) of files in each audit")

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z][a-z0-9+.-]*://\S+", value):
            raise ValueError("must be a Dask scheduler address such as tcp://HOST:8786 or tls://HOST:8786")
        return value


class FlowServiceSettings(_Model):
    """Adobe's Flow Service API: where it is and the server-to-server credential to call it with."""

    base_url: str = Field("https://platform.adobe.io/data/foundation/flowservice", description="Flow Service API base URL")
    ims_url: str = Field("https://ims-na1.adobelogin.com/ims/token/v3", description="IMS token endpoint")
    landing_zone_url: str = Field("https://platform.adobe.io/data/foundation/connectors/landingzone/credentials", description="Data Landing Zone credentials endpoint")
    adhoc_url: str = Field("https://platform.adobe.io/data/core/activation/disflowprovider/adhocrun", description="ad-hoc run endpoint (undocumented; `flows trigger`)")
    client_id: str = Field(description="Developer Console client ID (also sent as x-api-key)")
    client_secret: str = Field(description="client secret, by reference: ${env:…} or ${file:…}")
    org_id: str = Field(description="IMS organization, XXXX@AdobeOrg")
    sandbox: str = Field("prod", description="sandbox name")
    scopes: str = Field("openid,session,AdobeID,read_organizations,additional_info.projectedProductContext", description="OAuth scopes")
    dlz_destination: str | None = Field(None, description="name of the [[destinations]] entry that is the org's Data Landing Zone")
    retries: int = Field(4, ge=0, le=10, description="retries on 429 and 5xx, with backoff (Retry-After honoured)")
    allow_insecure_http: bool = Field(False, description="accept http:// URLs to hosts other than this machine (the client secret and tokens then cross the network in clear text)")

    @model_validator(mode="after")
    def _secure_urls(self) -> FlowServiceSettings:
        for name in ("base_url", "ims_url", "landing_zone_url", "adhoc_url"):
            problem = insecure_url_problem(getattr(self, name))
            if problem and (self.allow_insecure_http is False or not problem.startswith("http://")):
                advice = "use https://, or set allow_insecure_http = true in [flow_service]" if problem.startswith("http://") else "use https://"
                raise ValueError(f"flow_service.{name}: {problem}; {advice}")
        return self


def insecure_url_problem(url: str) -> str | None:
    """Why a Flow Service or IMS URL would expose the client secret or tokens, or None.

    https:// is fine; http:// only to this machine (localhost, 127.0.0.0/8, ::1: the emulator).
    """
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "is not a URL"
    scheme = parts.scheme.lower()
    if scheme == "https" and host:
        return None
    if scheme != "http" or not host:
        return "is not an https:// URL"
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return "http:// to a host other than this machine sends the client secret and tokens in clear text"


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration like 90m, 1h30m, 2d or PT1H")
    try:
        return parse_grace(value)
    except ScheduleError as e:
        raise ValueError(str(e).removeprefix("grace: ")) from None


AZURE_SCHEMES = ("az://", "abfs://", "abfss://")


class InventorySettings(_Model):
    """A cloud inventory report of the destination's bucket or storage account (S3 Inventory, Azure blob inventory):
    the source of its scheduled full sweeps instead of a listing."""

    url: str = Field(
        description="where the reports are written: s3://bucket/destination-prefix/source-bucket/config-ID (S3 Inventory), "
        "or az://container (an Azure blob inventory rule's destination container, abfs:// also taken)"
    )
    rule: str | None = Field(None, description="Azure: the name of the blob inventory rule whose reports to read")
    options: dict[str, Any] | None = Field(None, description="fsspec storage_options for the inventory's bucket or account (default: the destination's)")
    max_age: timedelta = Field(timedelta(days=2), description="an older newest report is not used: the sweep lists the destination instead")

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, value: Any) -> timedelta:
        return _duration(value)

    @field_validator("url")
    @classmethod
    def _where(cls, value: str) -> str:
        lower = value.lower()
        if lower.startswith(AZURE_SCHEMES):
            netloc, _, path = value.split("://", 1)[1].partition("/")
            if not netloc or path.strip("/"):
                raise ValueError("an Azure blob inventory writes its reports at the root of its destination container: az://container")
            return value
        if not lower.startswith("s3://") or not value[5:].strip("/"):
            raise ValueError("an S3 Inventory lives in an S3 bucket (s3://bucket/destination-prefix/source-bucket/config-ID), an Azure one in a container (az://container)")
        return value

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("an inventory rule's name is 1 to 256 letters, digits, - or _")
        return value

    @property
    def azure(self) -> bool:
        return self.url.lower().startswith(AZURE_SCHEMES)


class DestinationSettings(_Model):
    """One storage location: an fsspec URL and the storage options passed to fsspec unchanged."""

    name: str = Field(description="name that exports refer to")
    url: str = Field(description="fsspec URL of the folder path configured in AEP")
    options: dict[str, Any] = Field(default_factory=dict, description="fsspec storage_options (secrets by reference)")
    audit_every: timedelta = Field(timedelta(minutes=15), description="how often `auditor serve` audits this destination")
    full_sweep_every: timedelta = Field(
        timedelta(days=1), description="how often an audit lists the whole destination (a full sweep: catches files deleted or overwritten in settled windows)"
    )
    listing_horizon: timedelta = Field(
        timedelta(days=1), description="between full sweeps, audits list only windows that are not settled: not ok/late/empty, or within this long after their deadline"
    )

    inventory: InventorySettings | None = Field(
        None, description="an S3 Inventory of this s3:// destination's bucket, or an Azure blob inventory of this Azure destination's account, read by its scheduled full sweeps"
    )

    @field_validator("audit_every", "full_sweep_every", "listing_horizon", mode="before")
    @classmethod
    def _every(cls, value: Any) -> timedelta:
        return _duration(value)

    @model_validator(mode="after")
    def _inventory_of_s3_or_azure(self) -> DestinationSettings:
        inventory = self.inventory
        if inventory is None:
            return self
        if self.url.lower().startswith("s3://"):
            if inventory.azure or inventory.rule is not None:
                raise ValueError("inventory: an s3:// destination's inventory is an S3 Inventory (s3://…, no rule)")
        elif self.url.lower().startswith(AZURE_SCHEMES):
            if not inventory.azure:
                raise ValueError("inventory: an Azure destination's inventory is a blob inventory in a container of its account (az://container)")
            if inventory.rule is None:
                raise ValueError("inventory.rule: an Azure blob inventory is read by its rule's name")
        else:
            raise ValueError("inventory: only an s3:// or Azure (az://, abfs://) destination has an inventory")
        return self

    @field_validator("options")
    @classmethod
    def _limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        from auditor.storage.backends import limits_problem

        problem = limits_problem(value)
        if problem:
            raise ValueError(problem.removeprefix("options."))
        return value


class TokenSettings(_Model):
    """A bearer token for the HTTP API."""

    name: str = Field(description="who holds it (shown in logs, never the token)")
    token: str = Field(description="the token, by reference: ${env:…} or ${file:…}")
    role: Literal["read", "admin"] = Field("read", description="read: every GET; admin: also starting audits")


class ServiceSettings(_Model):
    """`auditor serve`: access to its HTTP API and dashboard."""

    tokens: list[TokenSettings] = Field(default_factory=list, description="bearer tokens; without any, every API route answers 401")
    open_health: bool = Field(True, description="serve /healthz without a token")
    open_metrics: bool = Field(False, description="serve /metrics without a token")
    public_docs: bool = Field(False, description="serve /docs, /redoc and /openapi.json without a token or a dashboard session")
    secure_cookies: bool = Field(False, description="always mark the dashboard's session cookie Secure (it is whenever the request came over HTTPS)")
    session_idle: timedelta = Field(timedelta(hours=12), description="a dashboard session ends this long after its last use")
    session_lifetime: timedelta = Field(timedelta(hours=24), description="and at the latest this long after sign-in")

    @field_validator("session_idle", "session_lifetime", mode="before")
    @classmethod
    def _session_times(cls, value: Any) -> timedelta:
        found = _duration(value)
        if found <= timedelta(0):
            raise ValueError("must be longer than nothing")
        return found


class ChannelSettings(_Model):
    """Where alerts go: a generic webhook (HMAC-signed body) or any Apprise URL."""

    name: str = Field(description="name rules refer to")
    kind: Literal["webhook", "apprise"] = Field(description="webhook or apprise")
    url: str = Field(description="webhook URL or Apprise URL (slack://…, mailto://…), by reference when it holds a secret")
    secret: str | None = Field(None, description="webhook: HMAC-SHA256 key for the X-Auditor-Signature header")
    retries: int = Field(3, ge=0, le=10, description="deprecated and ignored: failed deliveries are retried with backoff until give_up_after")
    give_up_after: timedelta = Field(timedelta(hours=24), description="a notice still undelivered this long after it was raised is given up and shown as failed")

    @field_validator("give_up_after", mode="before")
    @classmethod
    def _give_up(cls, value: Any) -> timedelta:
        return _duration(value)


class AlertRuleSettings(_Model):
    """When to alert: a window missing or invalid, unknown too long, RPO too high, a flow about to stop."""

    name: str = Field(description="unique rule name")
    when: Literal["missing", "invalid", "unknown", "rpo", "ending"] = Field(description="the condition")
    channels: list[str] = Field(min_length=1, description="[[channels]] names")
    exports: list[str] = Field(default_factory=list, description="only these exports (default: all)")
    unknown_for: timedelta = Field(timedelta(hours=2), description="when = unknown: how long a window may stay unknown")
    rpo_above: timedelta = Field(timedelta(hours=24), description="when = rpo: the RPO that alerts")

    @field_validator("unknown_for", "rpo_above", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return _duration(value)


class ExportSettings(_Model):
    """One expected dataflow: datasets, destination, format and schedule."""

    name: str = Field(description="unique name of the export")
    destination: str = Field(description="name of a [[destinations]] entry")
    datasets: list[str] = Field(min_length=1, description="AEP dataset IDs")
    format: Literal["json", "parquet"] = Field(description="datasetFileType: json or parquet")
    compression: Literal["gzip", "none"] = Field("gzip", description="gzip or none")
    manifest: bool = Field(False, description="whether AEP writes a manifest file per export")
    grace: timedelta = Field(DEFAULT_GRACE, description="time after the slot before an export counts as missing")
    flow_id: str | None = Field(None, description="the AEP dataflow ID, when known")
    path: str = Field("", description="folder below the destination URL where this export lands")
    schedule: Schedule = Field(description="the Flow Service scheduleParams object")
    folder_template: str | None = Field(None, description="AEP folder-name template")

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> timedelta:
        return _duration(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Schedule:
        if isinstance(value, Schedule):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("expected a table of scheduleParams keys")
        try:
            return parse_schedule(value)
        except ScheduleError as e:
            raise ValueError(str(e).removeprefix("schedule.")) from None

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, value: list[str]) -> list[str]:
        for dataset in value:
            if not dataset or "/" in dataset or dataset != dataset.strip():
                raise ValueError(f"{dataset!r} is not a dataset ID")
        if len(set(value)) != len(value):
            raise ValueError("a dataset is listed twice")
        return value

    @property
    def template(self) -> str:
        from auditor.layout import DEFAULT_TEMPLATE

        template = (self.folder_template or self.schedule.folder_template or DEFAULT_TEMPLATE).strip("/")
        return f"{self.path.strip('/')}/{template}" if self.path.strip("/") else template

    @property
    def layout(self) -> Layout:
        return parse_layout(self.template, datasets=len(self.datasets))

    @property
    def data_suffix(self) -> str:
        """The file-name ending AEP gives data files of this format and compression (reference §5.3)."""
        from auditor.validate import suffix_for

        return suffix_for(self.format, self.compression)


class Settings(_Model):
    """Everything the auditor is configured with."""

    catalog: CatalogSettings = CatalogSettings()
    validation: ValidationSettings = ValidationSettings()
    flow_service: FlowServiceSettings | None = None
    service: ServiceSettings = ServiceSettings()
    channels: list[ChannelSettings] = Field(default_factory=list)
    alerts: list[AlertRuleSettings] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list, description="more TOML files whose destinations and exports are added (e.g. from `flows sync`)")
    destinations: list[DestinationSettings] = Field(default_factory=list)
    exports: list[ExportSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_check(self) -> Settings:
        names = [d.name for d in self.destinations]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(f"destinations[{i}].name: {name!r} is used twice")
        export_names = [e.name for e in self.exports]
        for i, export in enumerate(self.exports):
            if export_names.index(export.name) != i:
                raise ValueError(f"exports[{i}].name: {export.name!r} is used twice")
            if export.destination not in names:
                raise ValueError(f"exports[{i}].destination: {export.destination!r} names no [[destinations]] entry")
        channel_names = [c.name for c in self.channels]
        for i, rule in enumerate(self.alerts):
            for channel in rule.channels:
                if channel not in channel_names:
                    raise ValueError(f"alerts[{i}].channels: {channel!r} names no [[channels]] entry")
            for export_name in rule.exports:
                if export_name not in export_names:
                    raise ValueError(f"alerts[{i}].exports: {export_name!r} names no [[exports]] entry")
        if self.flow_service and self.flow_service.dlz_destination and self.flow_service.dlz_destination not in names:
            raise ValueError(f"flow_service.dlz_destination: {self.flow_service.dlz_destination!r} names no [[destinations]] entry")
        for i, export in enumerate(self.exports):
            try:
                export.layout  # noqa: B018 - compiles the template
            except LayoutError as e:
                raise ValueError(f"exports[{i}].folder_template: {e}") from None
        return self

    def destination(self, name: str) -> DestinationSettings:
        return next(d for d in self.destinations if d.name == name)


def resolve_config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path:
    """`--config`, else AUDITOR_CONFIG, else config/auditor.toml."""
    if explicit:
        return Path(explicit)
    if environ.get("AUDITOR_CONFIG"):
        return Path(environ["AUDITOR_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(path: str | Path, environ: Mapping[str, str]) -> Settings:
    """Read, resolve and validate one TOML file; raises ConfigError naming the bad key and value."""
    source = Path(path)
    try:
        data = _parse_toml(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {source} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {source} is not valid TOML: {e}") from None
    for extra in data.get("include", []) if isinstance(data.get("include"), list) else []:
        included = (source.parent / str(extra)) if not Path(str(extra)).is_absolute() else Path(str(extra))
        try:
            more = _parse_toml(included.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"include: {included} does not exist") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"include: {included} cannot be read: {e}") from None
        unknown = sorted(set(more) - {"destinations", "exports"})
        if unknown:
            raise ConfigError(f"include: {included}: only [[destinations]] and [[exports]] may be included, not {unknown[0]!r}")
        for key in ("destinations", "exports"):
            data[key] = [*data.get(key, []), *more.get(key, [])]
    return settings_from_mapping(data, environ, source=str(source))


def _parse_toml(text: str) -> dict[str, Any]:
    """tomllib, with arrays and tables nested too deeply for its recursive parser as a TOMLDecodeError."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError(f"arrays or tables are nested too deeply (at most {MAX_DEPTH} levels are accepted)") from None


def settings_from_mapping(data: Mapping[str, Any], environ: Mapping[str, str], *, source: str = "config") -> Settings:
    """Validate an already parsed configuration mapping.

    A value that came from a `${env:…}` or `${file:…}` reference is never echoed in an error:
    the key is named, the value is not.
    """
    resolved: _Resolved = _Resolved()
    try:
        data = resolved.resolve(data, environ, key="", depth=0)
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(resolved.hide(f"{source}: " + "; ".join(_describe(err, resolved.keys) for err in e.errors()))) from None
    except ConfigError as e:
        raise ConfigError(resolved.hide(str(e))) from None
    except RecursionError:
        raise ConfigError(f"{source}: values are nested too deeply (at most {MAX_DEPTH} levels are accepted)") from None
    from auditor.storage.base import remember_secret

    remember_secret(sorted(resolved.values))  # what references gave is kept out of every message scrubbed from now on
    return settings


MAX_DEPTH = 64  # levels of tables and arrays: far beyond any real configuration


def _describe(err: Any, referenced: set[str]) -> str:
    key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: required"
    if key.endswith(".options") or ".options." in key:
        return f"{key}: {message}"  # never echo storage options: they carry secrets
    if not key:
        return message
    if any(_related(key, ref) for ref in referenced):
        return f"{key}: {message} (the value comes from a ${{env:…}} or ${{file:…}} reference and is not shown)"
    return f"{key}: {message} (got {_bounded_repr(err.get('input'))})" if err["type"] != "value_error" else f"{key}: {message}"


def _related(key: str, ref: str) -> bool:
    """Whether the value at `key` holds (or is part of) the value at `ref`."""
    return key == ref or ref.startswith((key + ".", key + "[")) or key.startswith((ref + ".", ref + "["))


def _bounded_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - repr of a huge int raises
        return f"a {type(value).__name__}"
    return text if len(text) <= 200 else text[:180] + "…"


class _Resolved:
    """Resolves references and remembers where they were and what they gave, to keep those values out of messages."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.values: set[str] = set()

    def resolve(self, value: Any, environ: Mapping[str, str], *, key: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{key or 'config'}: values are nested too deeply (at most {MAX_DEPTH} levels are accepted)")
        if isinstance(value, Mapping):
            return {k: self.resolve(v, environ, key=f"{key}.{k}" if key else str(k), depth=depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, environ, key=f"{key}[{i}]", depth=depth + 1) for i, v in enumerate(value)]
        if isinstance(value, str) and _REFERENCE.search(value):
            self.keys.add(key)
            resolved = _REFERENCE.sub(lambda m: self._found(_lookup(m.group(1), m.group(2), environ, key=key)), value)
            self.values.add(resolved)
            return resolved
        return value

    def _found(self, value: str) -> str:
        self.values.add(value)
        return value

    def hide(self, message: str) -> str:
        """The message with every value a reference gave replaced (quoted anywhere; bare when 4+ characters)."""
        for value in sorted(self.values, key=len, reverse=True):
            if not value:
                continue
            for shown in {repr(value), f'"{value}"', f"'{value}'"}:
                message = message.replace(shown, "'<from a reference>'")
            if len(value) >= 4:
                message = message.replace(value, "<from a reference>")
        return message


def _lookup(kind: str, name: str, environ: Mapping[str, str], *, key: str) -> str:
    if kind == "env":
        if name not in environ:
            raise ConfigError(f"{key}: environment variable {name} (referenced as ${{env:{name}}}) is not set")
        return str(environ[name])
    try:
        return Path(name).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"{key}: file {name} (referenced as ${{file:{name}}}) cannot be read: {e.strerror}") from None


def load_from_environment(explicit: str | Path | None) -> Settings:
    """The CLI's entry: resolve the path and references against this process's environment."""
    import os

    environ = dict(os.environ)
    return load_settings(resolve_config_path(explicit, environ), environ)
