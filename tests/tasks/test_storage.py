"""The storage resource: one store, read from either library's spelling, gives s3fs and
delta-rs each their own options, and never shows a credential."""

from __future__ import annotations

import fsspec
import pytest

from tasks.storage import StorageConfigError, Store

S3 = "s3://bucket/lake"
DELTA_SPELLING = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5555",
    "AWS_REGION": "eu-west-1",
}
S3FS_SPELLING = {
    "key": "AKIDEXAMPLE",
    "secret": "wJalrXUtnFEMI",
    "endpoint_url": "http://127.0.0.1:5555",
    "client_kwargs": {"region_name": "eu-west-1"},
}


@pytest.mark.parametrize("options", [DELTA_SPELLING, S3FS_SPELLING], ids=["delta-rs", "s3fs"])
def test_either_spelling_gives_each_library_its_own(options):
    store = Store.from_options(options, environ={})
    assert store.delta_options(S3) == DELTA_SPELLING | {"AWS_ALLOW_HTTP": "true"}
    assert store.fsspec_options(S3) == S3FS_SPELLING


def test_s3fs_accepts_its_options_and_delta_keys_never_reach_it():
    filesystem, _ = fsspec.core.url_to_fs(
        S3, **Store.from_options(DELTA_SPELLING, environ={}).fsspec_options(S3)
    )
    assert filesystem.key == "AKIDEXAMPLE"
    assert filesystem.client_kwargs == {"region_name": "eu-west-1"}


def test_a_local_path_gets_no_options():
    store = Store.from_options(DELTA_SPELLING, environ={})
    assert store.fsspec_options("/tmp/lake") == {} == store.delta_options("file:///tmp/lake")


def test_unset_options_come_from_the_standard_aws_environment():
    environ = {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_DEFAULT_REGION": "r"}
    store = Store.from_options({"endpoint_url": "https://s3.example"}, environ=environ)
    assert store.delta_options(S3) == {
        "AWS_ACCESS_KEY_ID": "A",
        "AWS_SECRET_ACCESS_KEY": "S",
        "AWS_ENDPOINT_URL": "https://s3.example",
        "AWS_REGION": "r",
    }


def test_given_options_win_over_the_environment():
    store = Store.from_options({"key": "given"}, environ={"AWS_ACCESS_KEY_ID": "env"})
    assert store.fsspec_options(S3)["key"] == "given"


@pytest.mark.parametrize("where", ["options", "environment"])
def test_unsafe_rename_is_refused_wherever_it_is_set(where):
    options = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"} if where == "options" else {}
    environ = {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"} if where == "environment" else {}
    with pytest.raises(StorageConfigError, match="AWS_S3_ALLOW_UNSAFE_RENAME.*conditional"):
        Store.from_options(options, environ=environ)


def test_unknown_and_contradicting_options_are_refused():
    with pytest.raises(StorageConfigError, match="unknown storage option.*AWS_SECRET_KEY"):
        Store.from_options({"AWS_SECRET_KEY": "typo"}, environ={})
    with pytest.raises(StorageConfigError, match="AWS_ACCESS_KEY_ID and key disagree"):
        Store.from_options({"AWS_ACCESS_KEY_ID": "a", "key": "b"}, environ={})


def test_credentials_never_show():
    store = Store.from_options(DELTA_SPELLING | {"AWS_SESSION_TOKEN": "tok3n"}, environ={})
    shown = f"{store!r} {store} {store.describe(S3)}"
    for secret in ("AKIDEXAMPLE", "wJalrXUtnFEMI", "tok3n"):
        assert secret not in shown
    assert sorted(store.secret_values()) == ["AKIDEXAMPLE", "tok3n", "wJalrXUtnFEMI"]
    assert store.describe(S3) == "s3://bucket/lake (S3 at http://127.0.0.1:5555, region eu-west-1)"


def test_an_https_endpoint_does_not_allow_http():
    store = Store.from_options({"endpoint_url": "https://s3.example"}, environ={})
    assert "AWS_ALLOW_HTTP" not in store.delta_options(S3)


def test_settings_refuse_unsafe_rename_at_start(monkeypatch, tmp_path):
    from pydantic import ValidationError

    from flows.settings import Settings

    monkeypatch.setenv("AWS_S3_ALLOW_UNSAFE_RENAME", "true")
    with pytest.raises(ValidationError, match="AWS_S3_ALLOW_UNSAFE_RENAME"):
        Settings(home=tmp_path)


def _raised_from(cause: Exception, error: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as inner:
            raise error from inner
    except Exception as raised:
        return raised


@pytest.mark.parametrize(
    "error",
    [
        OSError("Kernel error -> ... 403 Forbidden <Code>SignatureDoesNotMatch</Code> ..."),
        _raised_from(  # s3fs: a PermissionError with botocore's message, from its error
            RuntimeError("An error occurred (InvalidAccessKeyId) when calling ListObjectsV2"),
            PermissionError("The AWS Access Key Id you provided does not exist in our records."),
        ),
    ],
)
def test_a_refusal_of_the_credentials_becomes_one_error_naming_the_store(error):
    store = Store.from_options(
        {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}, environ={}
    )
    denied = store.refused("s3://bucket/lake", error)
    assert str(denied).startswith("s3://bucket/lake (S3 at http://minio:9000) refused the ")
    assert "s3cr3t" not in str(denied)
    assert store.refused("/local/lake", error) is None  # a local path has no credentials


def test_other_errors_are_not_taken_for_a_refusal():
    store = Store.from_options({"AWS_ENDPOINT_URL": "http://minio:9000"}, environ={})
    assert store.refused("s3://bucket/lake", OSError("503 Service Unavailable SlowDown")) is None
    assert store.refused("s3://bucket/lake", PermissionError("EACCES")) is None


def test_a_storage_block_is_named_by_its_type_and_name(tmp_path):
    from pydantic import ValidationError

    from flows.settings import Settings

    assert Settings(home=tmp_path, storage_block="aws-credentials/prod").storage_block
    with pytest.raises(ValidationError, match="storage_block"):
        Settings(home=tmp_path, storage_block="prod")
