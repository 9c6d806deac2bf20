"""Where the files live and how each library reaches them: one storage resource.

fsspec (s3fs) and delta-rs take different options for the same S3 store: s3fs wants
`key`, `secret`, `token`, `endpoint_url` and `client_kwargs={"region_name": ...}`, delta-rs
wants `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`,
`AWS_REGION` and `AWS_ALLOW_HTTP`. Handing one dict to both breaks one of them (s3fs raises
`TypeError: unexpected keyword argument 'AWS_ACCESS_KEY_ID'`; delta-rs silently ignores
s3fs's keys and asks the instance metadata for credentials). A `Store` is read once from
either spelling, completed from the standard AWS environment, and gives each library its
own options. Its credentials are `SecretStr`s: they print as `**********`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem
from pydantic import SecretStr

UNSAFE_RENAME = "AWS_S3_ALLOW_UNSAFE_RENAME"

# the two spellings of each S3 setting: delta-rs's (the AWS environment's) and s3fs's
_SPELLINGS = {
    "access_key_id": ("AWS_ACCESS_KEY_ID", "key"),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY", "secret"),
    "session_token": ("AWS_SESSION_TOKEN", "token"),
    "endpoint_url": ("AWS_ENDPOINT_URL", "endpoint_url"),
    "region": ("AWS_REGION", "region_name"),
}
_SECRETS = ("access_key_id", "secret_access_key", "session_token")
_ENVIRONMENT_ALIASES = {"region": ("AWS_DEFAULT_REGION",), "endpoint_url": ("AWS_ENDPOINT_URL_S3",)}


# How S3 refuses credentials, as s3fs, botocore and delta-rs quote it in their errors (the
# error code, else the status): no retry mends it.
REFUSALS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
            "InvalidToken", "TokenRefreshRequired", "403 Forbidden")  # fmt: skip


class StorageConfigError(ValueError):
    """The storage settings cannot work: said before anything is read or written."""


class StorageAccessDenied(PermissionError):
    """The store refused the credentials: said once, naming the store."""


@dataclass(frozen=True)
class Store:
    """An S3-compatible store's settings (all optional: a local path needs none). Built by
    `Store.from_options`; `fsspec_options(uri)` and `delta_options(uri)` give each library
    its own spelling, and nothing for a local path."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = field(default=None, repr=False)
    secret_access_key: SecretStr | None = field(default=None, repr=False)
    session_token: SecretStr | None = field(default=None, repr=False)

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Store:
        """The store the options describe, in either library's spelling (s3fs's
        `client_kwargs.region_name` included), what they leave unset taken from the
        standard AWS environment variables. Refuses `AWS_S3_ALLOW_UNSAFE_RENAME` wherever
        it is set, and options it does not know (a typo would otherwise be ignored)."""
        environ = os.environ if environ is None else environ
        options = dict(options)
        if UNSAFE_RENAME in options or UNSAFE_RENAME in environ:
            raise StorageConfigError(
                f"{UNSAFE_RENAME} is set: it makes delta-rs commit to S3 by rename, without "
                "conflict detection, and two writers can then overwrite each other's commit. "
                "delta-rs >= 1.4 commits with S3's conditional writes: unset it."
            )
        client_kwargs = options.pop("client_kwargs", None) or {}
        if "region_name" in client_kwargs:
            options.setdefault("region_name", client_kwargs["region_name"])
        known = {spelling for pair in _SPELLINGS.values() for spelling in pair}
        unknown = sorted(set(options) - known - {"AWS_ALLOW_HTTP"})
        if unknown:
            raise StorageConfigError(
                f"unknown storage option(s) {', '.join(unknown)}: known are "
                + ", ".join(sorted(known))
            )
        values: dict[str, Any] = {}
        for name, (environment_name, fsspec_name) in _SPELLINGS.items():
            given = [options[key] for key in (environment_name, fsspec_name) if key in options]
            if len(set(given)) > 1:
                raise StorageConfigError(
                    f"storage options {environment_name} and {fsspec_name} disagree"
                )
            value = given[0] if given else _from_environment(name, environ)
            if value:
                values[name] = SecretStr(str(value)) if name in _SECRETS else str(value)
        return cls(**values)

    def fsspec_options(self, uri: str) -> dict[str, Any]:
        """Options for `fsspec.open(uri, ...)` / `fsspec.core.url_to_fs` (s3fs)."""
        if not is_s3(uri):
            return {}
        options: dict[str, Any] = {
            fsspec_name: self._value(name)
            for name, (_, fsspec_name) in _SPELLINGS.items()
            if name != "region" and self._value(name)
        }
        if self.region:
            options["client_kwargs"] = {"region_name": self.region}
        return options

    def delta_options(self, uri: str) -> dict[str, str]:
        """`storage_options` for delta-rs (`DeltaTable`, `write_deltalake`)."""
        if not is_s3(uri):
            return {}
        options = {
            environment_name: self._value(name)
            for name, (environment_name, _) in _SPELLINGS.items()
            if self._value(name)
        }
        if (self.endpoint_url or "").startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"  # a loopback or in-cluster endpoint
        return options

    def filesystem(self, uri: str) -> tuple[AbstractFileSystem, str]:
        """The fsspec filesystem `uri` is on, and its path there."""
        return fsspec.core.url_to_fs(uri, **self.fsspec_options(uri))

    def open(self, uri: str, mode: str = "rb"):
        """`fsspec.open` of `uri` with this store's options (a context manager)."""
        return fsspec.open(uri, mode, **self.fsspec_options(uri))

    def refused(self, uri: str, error: BaseException) -> StorageAccessDenied | None:
        """The clear error to raise instead of `error` when it says that the store at `uri`
        refused the credentials (None otherwise)."""
        code = refusal(error) if is_s3(uri) else None
        if code is None:
            return None
        return StorageAccessDenied(
            f"{self.describe(uri)} refused the credentials ({code}): check the access key "
            "and secret given by TIDEWATER_STORAGE_OPTIONS, TIDEWATER_STORAGE_BLOCK or the "
            "AWS_* environment, and that they may read and write there"
        )

    def check_access(self, uri: str) -> None:
        """One listing under `uri`: raises StorageAccessDenied when the store refuses the
        credentials, before anything is written or retried (nothing to do on local disk)."""
        if not is_s3(uri):
            return
        fs, path = self.filesystem(uri)
        try:
            fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            pass  # nothing written there yet
        except Exception as error:
            denied = self.refused(uri, error)
            if denied is not None:
                raise denied from None
            raise

    def secret_values(self) -> list[str]:
        """The credentials' values: to redact from text that might echo them."""
        secrets = (self.access_key_id, self.secret_access_key, self.session_token)
        return [secret.get_secret_value() for secret in secrets if secret]

    def describe(self, uri: str) -> str:
        """Where `uri` is, for errors and logs: never a credential."""
        if not is_s3(uri):
            return uri
        where = self.endpoint_url or "AWS"
        return f"{uri} (S3 at {where}{f', region {self.region}' if self.region else ''})"

    def _value(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value


LOCAL = Store()  # local paths need no settings


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def refusal(error: BaseException) -> str | None:
    """How S3 refused the credentials, if `error` (or an error it was raised from) says so:
    s3fs raises a PermissionError from botocore's error, which holds the code."""
    seen: BaseException | None = error
    while seen is not None:
        code = next((code for code in REFUSALS if code in str(seen)), None)
        if code:
            return code
        seen = seen.__cause__ or seen.__context__
    return None


def _from_environment(name: str, environ: Mapping[str, str]) -> str | None:
    environment_name = _SPELLINGS[name][0]
    for key in (environment_name, *_ENVIRONMENT_ALIASES.get(name, ())):
        if environ.get(key):
            return environ[key]
    return None
