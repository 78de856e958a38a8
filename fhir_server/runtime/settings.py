"""Settings: ``HEARTH_*`` environment variables, typed and checked when the app starts.

CLI flags override the environment. Nothing here runs at import time: ``Settings()`` is built in
the CLI or the app factory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting Hearth reads. Documented in README.md ("Configuration")."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    database_url: str = Field(
        "sqlite:///var/hearth.db",
        description="SQLAlchemy URL: sqlite:///path.db (embedded) or postgresql://user@host/db",
    )
    database_replica_url: str | None = Field(
        None,
        description="A PostgreSQL streaming replica for reads and searches, with read-your-writes "
        "(docs/deployment.md)",
    )
    data_dir: Path = Field(Path("var"), description="Where files live (DICOM, binaries, keys)")
    blob_store: str = Field(
        "files",
        pattern="^(files|database)$",
        description="Where DICOM instances and export files live: files (under data_dir) or "
        "database (shared by every node)",
    )
    base_url: str = Field(
        "http://127.0.0.1:8080",
        description="Public URL of the server root; the FHIR base is {base_url}/fhir",
    )
    host: str = Field("127.0.0.1", description="Address `hearth serve` binds")
    port: int = Field(8080, ge=1, le=65535, description="Port `hearth serve` binds")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    # The connection budget (README "Connection budget"): a process holds at most
    # db_pool_size + db_max_overflow + 3 * db_lookup_pool_size PostgreSQL connections.
    db_pool_size: int = Field(
        16, ge=1, le=100, description="PostgreSQL connections a process keeps in its main pool"
    )
    db_max_overflow: int = Field(
        0, ge=0, le=100, description="main-pool connections opened beyond it at peak, then closed"
    )
    db_pool_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="seconds a request waits for a free connection, then 503 with Retry-After",
    )
    db_lookup_pool_size: int = Field(
        4,
        ge=1,
        le=64,
        description="raw PostgreSQL connections for token checks, as many for reads by id in "
        "threads and as many for reads by id in the event loop",
    )
    audit_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="ms the audit writer waits for more read records to batch with the first",
    )
    request_threads: int = Field(
        40, ge=1, le=1000, description="interactions a process runs at once (its thread pool)"
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)"
    )
    default_page_size: int = Field(20, ge=1, le=1000, description="Search/history _count default")
    max_page_size: int = Field(1000, ge=1, description="Largest _count honoured")
    slow_query_ms: float = Field(500.0, ge=0, description="Searches slower than this are logged")
    max_expansion_size: int = Field(
        10_000, ge=1, description="Most codes in a ValueSet expansion ($expand, token :in)"
    )
    enforce_profiles: bool = Field(
        False,
        description="Refuse (422) a create or update whose resource breaks a profile its "
        "meta.profile declares, or declares one this server does not know",
    )
    dicom_port: int = Field(11112, ge=1, le=65535, description="DICOM C-STORE listener port")
    dicom_ae_title: str = Field("HEARTH", max_length=16, description="DICOM AE title")
    dicom_enabled: bool = Field(True, description="`hearth serve` also runs the DICOM listener")
    dicom_allowed_aes: str = Field("", description="Calling AE titles allowed (comma list; all)")
    dicom_qr_aes: str = Field(
        "",
        description="Calling AE titles allowed to query/retrieve (C-FIND/C-MOVE/C-GET): comma "
        "list, * for any; empty: no Query/Retrieve SCP",
    )
    dicom_destinations: str = Field(
        "", description="C-MOVE destinations: AE@host:port, comma-separated"
    )
    dicom_ai_objects: bool = Field(
        True,
        description="Store an AI result about an ImagingStudy as DICOM (SR and heatmap Secondary "
        "Capture) in its study",
    )
    dicom_ai_destinations: str = Field(
        "",
        description="AE titles (of HEARTH_DICOM_DESTINATIONS) the AI's DICOM objects are "
        "pushed to by C-STORE, comma-separated",
    )
    dicom_ai_max_attempts: int = Field(
        6, ge=1, le=100, description="Attempts to push an AI result before it is dead-lettered"
    )
    dicom_quiet_seconds: float = Field(
        30.0, ge=0, description="A study is complete after this long with no new instance"
    )
    dicom_complete_on_release: bool = Field(
        True, description="A study is also complete when the association that sent it is released"
    )
    dicom_max_upload_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="Largest STOW-RS request body (413 beyond)"
    )
    dicom_max_associations: int = Field(
        32,
        ge=1,
        le=1000,
        description="DICOM associations (and not yet associated connections) at once",
    )
    dicom_acse_timeout: float = Field(
        10.0, gt=0, description="Seconds a DICOM connection may take to associate (and release)"
    )
    dicom_dimse_timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for the next DIMSE message of an operation"
    )
    dicom_network_timeout: float = Field(
        60.0, gt=0, description="Seconds an association may stay silent (or stall mid-PDU)"
    )
    mllp_port: int | None = Field(
        None, ge=0, le=65535, description="HL7 v2 MLLP listener port (unset: no listener)"
    )
    mllp_max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest MLLP frame (answered AR beyond)"
    )
    mllp_frame_timeout: float = Field(
        60.0, gt=0, description="Seconds a started MLLP frame may take to arrive whole"
    )
    mllp_idle_timeout: float = Field(
        300.0, gt=0, description="Seconds an MLLP connection may stay silent between messages"
    )
    mllp_workers: int = Field(
        4, ge=1, le=64, description="Threads applying MLLP messages (one connection at a time each)"
    )
    hl7_out_host: str | None = Field(
        None, description="HL7 v2 outbound receiver (MLLP host); unset: nothing is sent"
    )
    hl7_out_port: int = Field(2575, ge=1, le=65535, description="HL7 v2 outbound receiver port")
    hl7_out_messages: str = Field(
        "ORU,SIU,ADT",
        description="What is sent out: ORU (final reports), SIU (appointments), ADT (patients)",
    )
    hl7_out_timeout: float = Field(
        30.0, gt=0, description="Seconds to connect, send and wait for the receiver's ACK"
    )
    hl7_out_max_attempts: int = Field(
        8, ge=1, le=100, description="Sends of one outbound message before it is dead-lettered"
    )
    hl7_out_backoff: float = Field(
        5.0, gt=0, description="Seconds before the first retry of an outbound message (doubling)"
    )
    hl7_out_poll: float = Field(
        1.0, gt=0, description="Seconds the outbound sender waits between looks at its queue"
    )
    smtp_host: str | None = Field(None, description="SMTP server for e-mail (reports, resets)")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (STARTTLS)")
    smtp_user: str | None = Field(None, description="SMTP user name")
    smtp_password: str | None = Field(None, description="SMTP password")
    smtp_from: str = Field("hearth@localhost", description="From address of Hearth's e-mail")
    smtp_starttls: bool = Field(True, description="Require STARTTLS before sending (RFC 3207)")
    smtp_ca_file: Path | None = Field(None, description="CA file trusted for the SMTP server")
    backup_recipients: str | None = Field(
        None,
        description="age public keys (age1…, comma-separated) that `hearth backup` encrypts to",
    )
    backup_identity_file: Path | None = Field(
        None,
        description="file with the age secret key(s) that `hearth restore` / `backup verify` use",
    )
    self_registration: bool = Field(
        False,
        description="Let people create a patient account at /auth/register (verified by an "
        "e-mailed link); off unless set (on under `make run`)",
    )
    dev_mailbox: Path | None = Field(
        None,
        description="Development only: run a local SMTP sink keeping all mail in this folder "
        "(used when HEARTH_SMTP_HOST is unset; admins read it at /dev/mailbox)",
    )
    dev_mailbox_port: int = Field(
        8025, ge=1, le=65535, description="Port of the development SMTP sink on 127.0.0.1"
    )
    facility_name: str = Field("Hearth", description="Facility name on reports (fallback)")
    report_signing_key: Path | None = Field(
        None, description="PEM private key that signs report PDFs (default: generated)"
    )
    report_signing_cert: Path | None = Field(
        None, description="PEM certificate (+ chain) of the report signing key"
    )
    default_timezone: str = Field(
        "UTC", description="IANA time zone of reminders when the patient's record names none"
    )
    assistant_emergency_numbers: str = Field(
        "112",
        description="Emergency numbers the assistant names in its fixed safety answers, as "
        "written (e.g. '112 (ambulance) or 1122 (rescue)')",
    )
    assistant_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="CPU threads of the assistant's embedding model (torch's, process-wide)",
    )
    log_level: str = Field("info", description="debug | info | warning | error")
    ai_triggers: bool = Field(
        True, description="Start AI analyses by themselves (skin photos, chest studies)"
    )
    worker_batch_size: int = Field(16, ge=1, le=512, description="Jobs a worker claims at once")
    worker_lease_seconds: float = Field(
        120.0, gt=0, description="How long a claimed job is a worker's before others retry it"
    )
    export_file_max_resources: int = Field(
        100_000, ge=1, description="Resources per Bulk Data NDJSON file before the next one"
    )
    export_page_size: int = Field(
        1000, ge=1, le=100_000, description="Resources a Bulk Data export reads per query"
    )
    api_docs: bool = Field(
        False, description="Serve /openapi.json and the Swagger UI page /docs (development)"
    )
    import_allowed_hosts: str = Field(
        "",
        description="Hosts $import may fetch NDJSON from: comma list of host or host:port "
        "(empty: $import is refused)",
    )
    import_allow_http: bool = Field(
        False, description="$import sources may be plain http (development only; else https)"
    )
    import_clients: str = Field(
        "", description="Client ids allowed to $import besides administrators (comma list)"
    )
    import_max_file_bytes: int = Field(
        1024 * 1024 * 1024, ge=1, description="Largest $import source file read (bytes)"
    )
    import_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Connect / read timeout of a $import source fetch"
    )
    import_batch_size: int = Field(
        100, ge=1, le=100, description="NDJSON lines $import writes per transaction"
    )
    import_max_errors: int = Field(
        1000, ge=0, description="Bad lines a $import job tolerates before it fails"
    )
    jwks_allowed_hosts: str = Field(
        "",
        description="Hosts a backend client's registered JWK Set URL may be on: comma list of "
        "host or host:port (empty: clients cannot register a JWKS URL)",
    )
    jwks_allow_http: bool = Field(
        False, description="Registered JWKS URLs may be plain http (development only; else https)"
    )
    subscription_allow_http: bool = Field(
        False, description="Rest-hook endpoints may be plain http (development only; else https)"
    )
    subscription_endpoints: str = Field(
        "", description="Subscription endpoint prefixes allowed, URLs and mailto: (comma list)"
    )
    subscription_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Timeout of each socket operation of a rest-hook attempt"
    )
    subscription_poll_seconds: float = Field(
        0.05, gt=0, le=60, description="How often the worker looks for events (SQLite; PG listens)"
    )
    subscription_error_after: int = Field(
        3, ge=1, description="Failed deliveries in a row before a Subscription's status is error"
    )
    subscription_max_backoff_seconds: float = Field(
        60.0, gt=0, description="Longest wait between retries to a failing endpoint"
    )
    subscription_threads: int = Field(
        8, ge=1, le=256, description="Subscriptions a worker delivers to at once"
    )
    subscription_retention_days: float = Field(
        7.0, gt=0, description="Days a delivered subscription event is kept for $events / $resend"
    )
    audit_checkpoint_seconds: float = Field(
        300.0, ge=0, description="Seconds between signed audit checkpoints (0: only at shutdown)"
    )
    audit_checkpoint_export: Path | None = Field(
        None, description="Another file each audit checkpoint is appended to (an auditor's copy)"
    )

    @field_validator("audit_checkpoint_export", mode="before")
    @classmethod
    def _export_path(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    def audit_checkpoint_files(self) -> list[Path]:
        """Where checkpoints go: the data directory's file, and the export file when set."""
        from fhir_server.runtime.audit_anchor import default_file

        files = [default_file(self.data_dir)]
        if self.audit_checkpoint_export is not None:
            files.append(self.audit_checkpoint_export)
        return files

    login_rate_per_ip: int = Field(
        30, ge=1, description="Password attempts a minute per client address (429 beyond)"
    )
    login_rate_per_account: int = Field(
        10, ge=1, description="Password attempts a minute per account (429 beyond)"
    )
    client_rate_per_ip: int = Field(
        300, ge=1, description="Token/revoke/introspect requests a minute per client address"
    )
    client_rate_per_client: int = Field(
        300, ge=1, description="Token/revoke/introspect requests a minute per client id"
    )
    password_check_concurrency: int = Field(
        2, ge=1, le=256, description="argon2 checks running at once per process (503 beyond)"
    )
    secret_keys: str | None = Field(
        None,
        description="Comma-separated Fernet keys encrypting stored TOTP secrets (first encrypts, "
        "all decrypt); unset: HEARTH_DATA_DIR/keys/secret-keys, generated at first start",
    )

    @field_validator("secret_keys")
    @classmethod
    def _secret_keys(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        from cryptography.fernet import Fernet

        for i, key in enumerate(k.strip() for k in v.split(",")):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"HEARTH_SECRET_KEYS: key {i + 1} is not a Fernet key (32 url-safe base64 "
                    "bytes, e.g. from `python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'`)"
                ) from None
        return v

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("HEARTH_BASE_URL must be an http(s) URL")
        return v.rstrip("/")

    @field_validator("mllp_port", mode="before")
    @classmethod
    def _mllp_port(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v  # empty: no listener

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.lower()
        if v not in ("debug", "info", "warning", "error"):
            raise ValueError("HEARTH_LOG_LEVEL must be debug, info, warning or error")
        return v

    @field_validator("dicom_ae_title")
    @classmethod
    def _ae_title(cls, v: str) -> str:
        v = v.strip()
        if not v or "\\" in v or not v.isascii() or not v.isprintable():
            raise ValueError("HEARTH_DICOM_AE_TITLE must be 1-16 printable ASCII characters")
        return v

    @field_validator("dicom_destinations")
    @classmethod
    def _destinations(cls, v: str) -> str:
        import re

        for item in (i.strip() for i in v.split(",")):
            m = re.fullmatch(
                r"([^@\\]{1,16})@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):([0-9]{1,5})", item
            )
            if item and (m is None or not 0 < int(m.group(3)) < 65536):
                raise ValueError(
                    f"HEARTH_DICOM_DESTINATIONS item {item!r} is not AE@host:port "
                    "(AE title of 1-16 characters)"
                )
        return v

    @field_validator("default_timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"HEARTH_DEFAULT_TIMEZONE {v!r} is not an IANA time zone") from None
        return v

    @model_validator(mode="after")
    def _replica_of_postgres(self) -> Settings:
        if self.database_replica_url and not (
            self.database_url.startswith("postgresql")
            and self.database_replica_url.startswith("postgresql")
        ):
            raise ValueError(
                "HEARTH_DATABASE_REPLICA_URL is a PostgreSQL streaming replica of a PostgreSQL "
                "HEARTH_DATABASE_URL"
            )
        return self

    @model_validator(mode="after")
    def _signing_pair(self) -> Settings:
        if (self.report_signing_key is None) != (self.report_signing_cert is None):
            raise ValueError(
                "HEARTH_REPORT_SIGNING_KEY and HEARTH_REPORT_SIGNING_CERT are set together"
            )
        return self

    def report_signing(self, keys=None):  # type: ignore[no-untyped-def]
        """The report signing key and certificate: the configured files, or Hearth's own,
        generated on first use (``workflow.signing``) and kept in the database when ``keys`` (a
        ``resources.auth.key_store.KeyStore``) is given, else under ``data_dir``."""
        from workflow import signing

        if self.report_signing_key is not None and self.report_signing_cert is not None:
            return signing.load(self.report_signing_key, self.report_signing_cert)
        if keys is not None:
            return signing.shared(keys, self.data_dir, self.facility_name)
        return signing.load_or_create(self.data_dir, self.facility_name)

    @property
    def subscription_prefixes(self) -> list[str]:
        return [p.strip() for p in self.subscription_endpoints.split(",") if p.strip()]

    @property
    def import_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.import_allowed_hosts.split(",") if h.strip()]

    @property
    def jwks_hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.jwks_allowed_hosts.split(",") if h.strip()]

    @property
    def import_client_ids(self) -> list[str]:
        return [c.strip() for c in self.import_clients.split(",") if c.strip()]

    @property
    def dicom_callers(self) -> list[str]:
        return [a.strip() for a in self.dicom_allowed_aes.split(",") if a.strip()]

    @property
    def dicom_qr_callers(self) -> list[str]:
        return [a.strip() for a in self.dicom_qr_aes.split(",") if a.strip()]

    @property
    def dicomweb_base(self) -> str:
        return f"{self.base_url}/dicomweb"

    def blobs(self, engine):  # type: ignore[no-untyped-def]
        """The blob store ``blob_store`` names (``resources/storage/blobs.py``)."""
        from resources.storage.blobs import blob_store

        return blob_store(self.blob_store, self.data_dir, engine)

    def instance_store(self, engine):  # type: ignore[no-untyped-def]
        """The DICOM instance store on the configured blob store."""
        from resources.storage.instances import InstanceStore

        return InstanceStore(self.data_dir, self.blobs(engine))

    def smtp(self):  # type: ignore[no-untyped-def]
        """The SMTP configuration of the workflow's mail, or None when no host is set."""
        from workflow.mail import SmtpConfig

        if not self.smtp_host:
            if self.dev_mailbox is None:
                return None
            from fhir_server.runtime import mailsink

            return SmtpConfig(  # the development sink (fhir_server/runtime/mailsink.py)
                host=mailsink.HOST,
                port=self.dev_mailbox_port,
                sender=self.smtp_from,
                starttls=True,
                ca_file=self.dev_mailbox / mailsink.CERT_NAME,
            )
        return SmtpConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_from,
            user=self.smtp_user,
            password=self.smtp_password,
            starttls=self.smtp_starttls,
            ca_file=self.smtp_ca_file,
        )

    @property
    def db_connections_per_process(self) -> int:
        """The most PostgreSQL connections one serving process opens: the main pool at its
        peak, the token-check pool and the two read-by-id pools (threads, event loop)."""
        return self.db_pool_size + self.db_max_overflow + 3 * self.db_lookup_pool_size

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url}/fhir"
