"""`mask_url` and `url_secrets`: what cnnq prints or logs of a URL never holds its secrets."""

from __future__ import annotations

import pytest

from cnnq.settings import mask_url, url_secrets

MASKED = [
    ("redis://:opensesame@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    (
        "postgresql+psycopg://cnnq:s3cret@postgres:5432/cnnq",
        "postgresql+psycopg://cnnq:***@postgres:5432/cnnq",
    ),
    ("redis://default:pw@[::1]:6379/2", "redis://default:***@[::1]:6379/2"),
    # A password holding `@` or `/` (SQLAlchemy accepts both) is masked whole.
    ("redis://u:p@ss@host:1/0", "redis://u:***@host:1/0"),
    ("postgresql://u:p/w@host/db", "postgresql://u:***@host/db"),
    ("redis://u:p%40x@h/0", "redis://u:***@h/0"),
    # Query parameters that hold secrets, whatever their case or prefix.
    ("redis://127.0.0.1:6379/0?password=x&db=1", "redis://127.0.0.1:6379/0?password=***&db=1"),
    ("redis://h/0?passwd=S1&pwd=S2", "redis://h/0?passwd=***&pwd=***"),
    (
        "postgresql://h/db?sslpassword=S1&user=u&api_key=S2&Access_Token=S3#frag",
        "postgresql://h/db?sslpassword=***&user=u&api_key=***&Access_Token=***#frag",
    ),
    (
        "https://h/x?client_secret=S1&X-Amz-Signature=S2&page=2",
        "https://h/x?client_secret=***&X-Amz-Signature=***&page=2",
    ),
    ("redis://:S1@h/0?password=S2", "redis://:***@h/0?password=***"),
]

UNCHANGED = [
    "redis://127.0.0.1:6379/0",
    "redis://[::1]:6379/0",
    "redis://user@host:6379/0",
    "sqlite:////tmp/cnnq.db",
    "sqlite:///relative.db?timeout=5",
    "redis://h/0?db=1&ssl_cert_reqs=none&password=",
    "not a url",
    "",
]


@pytest.mark.parametrize(("url", "masked"), MASKED)
def test_mask_url_hides_every_secret(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    for secret in url_secrets(url):
        assert secret not in mask_url(url).replace("***", "")


@pytest.mark.parametrize("url", UNCHANGED)
def test_mask_url_leaves_urls_without_secrets_as_they_are(url: str) -> None:
    assert mask_url(url) == url
    assert url_secrets(url) == []


def test_url_secrets_gives_each_secret_as_written_and_decoded() -> None:
    assert url_secrets("redis://u:p%40x@h/0?pwd=a%20b&token=t") == ["p%40x", "p@x", "a%20b", "a b", "t"]
