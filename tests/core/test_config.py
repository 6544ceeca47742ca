"""Configuration: precedence, when the environment is read, key and URL validation, redaction."""

from __future__ import annotations

import pytest

import labric
from labric import AsyncLabric, ClientConfig, RetryPolicy, Timeout, TransferConfig
from labric._core.config import DEFAULT_BASE_URL, redact_key
from labric.errors import ConfigurationError

from ._support import KEY, SECRET

OTHER_KEY = "lbk_envkey_AnotherSecretFromTheEnvironment"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABRIC_API_KEY", raising=False)
    monkeypatch.delenv("LABRIC_API_BASE_URL", raising=False)


def test_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABRIC_API_KEY", OTHER_KEY)
    monkeypatch.setenv("LABRIC_API_BASE_URL", "https://env.example.com/api")
    client = AsyncLabric(KEY, base_url="https://arg.example.com/api")
    assert client.config.api_key == KEY
    assert client.base_url == "https://arg.example.com/api"


def test_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABRIC_API_KEY", OTHER_KEY)
    monkeypatch.setenv("LABRIC_API_BASE_URL", "https://env.example.com/api/")
    client = AsyncLabric()
    assert client.config.api_key == OTHER_KEY
    assert client.base_url == "https://env.example.com/api"  # trailing slash dropped


def test_default_base_url() -> None:
    client = AsyncLabric(KEY)
    assert client.base_url == DEFAULT_BASE_URL == "https://platform.labric.co/api"


def test_environment_is_read_at_construction_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    assert labric.AsyncLabric is AsyncLabric  # imported long before the variable is set
    with pytest.raises(ConfigurationError):
        AsyncLabric()
    monkeypatch.setenv("LABRIC_API_KEY", OTHER_KEY)
    assert AsyncLabric().config.api_key == OTHER_KEY
    monkeypatch.setenv("LABRIC_API_KEY", KEY)
    assert AsyncLabric().config.api_key == KEY


def test_empty_environment_base_url_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABRIC_API_BASE_URL", "")
    assert AsyncLabric(KEY).base_url == DEFAULT_BASE_URL


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="LABRIC_API_KEY"):
        AsyncLabric()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "abc",
        "lbk_",
        "lbk__" + SECRET,
        "lbk_prefix_",
        "lbk_" + SECRET,
        "LBK_prefix_" + SECRET,
        "lbk_pre-fix_" + SECRET,
        "lbk_prefix_" + SECRET + " extra",
        "lbk_prefix_" + SECRET + "!",
        "sk-" + SECRET,
        "Bearer lbk_prefix_" + SECRET,
    ],
)
@pytest.mark.parametrize("via", ["argument", "environment"])
def test_malformed_keys_are_refused(bad: str, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if via == "environment":
        monkeypatch.setenv("LABRIC_API_KEY", bad)
        args: tuple[str, ...] = ()
    else:
        args = (bad,)
    with pytest.raises(ConfigurationError) as info:
        AsyncLabric(*args)
    message = str(info.value)
    assert "LABRIC_API_KEY" in message
    assert SECRET not in message
    assert SECRET not in repr(info.value)


def test_non_string_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="LABRIC_API_KEY"):
        AsyncLabric(SECRET.encode())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "good",
    [
        "lbk_abc_def",
        "lbk_ABC123_xyz789",
        "lbk_p_secret-with_dashes-and_underscores",
        f"  {KEY}\n",
    ],
)
def test_wellformed_keys_are_accepted(good: str) -> None:
    assert AsyncLabric(good).config.api_key == good.strip()


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (KEY, "lbk_test1234_…"),
        ("lbk_p_a_b_c", "lbk_p_…"),
        ("garbage " + SECRET, "lbk_…"),
    ],
)
def test_redact_key(key: str, shown: str) -> None:
    assert redact_key(key) == shown


def test_repr_hides_the_secret() -> None:
    client = AsyncLabric(KEY)
    for text in (
        repr(client),
        str(client),
        repr(client.config),
        str(client.config),
        repr(client._transport),
        repr(client.files),
    ):
        assert SECRET not in text
    assert "lbk_test1234_…" in repr(client)
    assert "lbk_test1234_…" in repr(client.config)


def test_config_errors_never_show_the_secret() -> None:
    failing = [
        lambda: AsyncLabric(KEY + "!"),
        lambda: AsyncLabric(KEY, base_url="http://example.com/api"),
        lambda: AsyncLabric(KEY, base_url="ftp://example.com"),
        lambda: AsyncLabric(KEY, timeout=-1),
        lambda: AsyncLabric(KEY, max_connections=0),
    ]
    for make in failing:
        with pytest.raises(ConfigurationError) as info:
            make()
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/api",
        "http://10.0.0.1/api",
        "http://192.168.1.10:8080",
        "http://localhost.evil.example/api",
        "http://127.0.0.1.nip.io/api",
        "http://[2001:db8::1]/api",
    ],
)
def test_plain_http_refused_for_non_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        AsyncLabric(KEY, base_url=url)
    assert AsyncLabric(KEY, base_url=url, allow_insecure=True).base_url == url


def test_plain_http_refused_from_the_environment_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABRIC_API_BASE_URL", "http://example.com/api")
    with pytest.raises(ConfigurationError, match="LABRIC_API_BASE_URL"):
        AsyncLabric(KEY)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/api",
        "http://127.9.9.9/api",
        "http://localhost:3000",
        "http://LOCALHOST:3000/api",
        "http://api.localhost/api",
        "http://[::1]:8080/api",
        "https://example.com/api",
        "https://example.com:8443/proxy/api",
    ],
)
def test_loopback_and_https_allowed(url: str) -> None:
    assert AsyncLabric(KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://example.com/api", "http"),
        ("example.com/api", "http"),
        ("https://", "http"),
        ("https://example.com/api?x=1", "query"),
        ("https://example.com/api#frag", "fragment"),
        ("https://user:hunter2pass@example.com/api", "credentials"),
        ("https://example.com:notaport/api", "parse"),
        ("http://[::1/api", "parse"),
    ],
)
def test_invalid_base_urls(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        AsyncLabric(KEY, base_url=url)
    assert "hunter2pass" not in str(info.value)


def test_timeout_number_and_object() -> None:
    assert AsyncLabric(KEY).config.timeout == Timeout(connect=10.0, read=60.0, total=None)
    assert AsyncLabric(KEY, timeout=5).config.timeout == Timeout(connect=5.0, read=5.0)
    assert AsyncLabric(KEY, timeout=120).config.timeout == Timeout(connect=10.0, read=120.0)
    custom = Timeout(connect=1, read=2, total=None)
    assert AsyncLabric(KEY, timeout=custom).config.timeout is custom


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True])
def test_bad_timeouts(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        AsyncLabric(KEY, timeout=bad)  # type: ignore[arg-type]


def test_max_retries_default_override_and_policy() -> None:
    assert AsyncLabric(KEY).config.retry.max_retries == 2
    assert AsyncLabric(KEY, max_retries=0).config.retry.max_retries == 0
    policy = RetryPolicy(max_retries=5, initial_delay=0.1)
    assert AsyncLabric(KEY, retry=policy).config.retry == policy
    assert AsyncLabric(KEY, retry=policy, max_retries=1).config.retry.max_retries == 1
    assert AsyncLabric(KEY, retry=policy, max_retries=1).config.retry.initial_delay == 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"initial_delay": -0.1},
        {"max_delay": float("nan")},
        {"max_server_delay": -1},
    ],
)
def test_bad_retry_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_pool_sizes(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        AsyncLabric(KEY, max_connections=bad)  # type: ignore[arg-type]


def test_pool_size_and_transfer_config_kept() -> None:
    transfer = TransferConfig(concurrency=4)
    client = AsyncLabric(KEY, max_connections=8, transfer=transfer)
    assert client.config.max_connections == 8
    assert client.config.transfer is transfer


def test_resolve_takes_an_explicit_environment() -> None:
    config = ClientConfig.resolve(env={"LABRIC_API_KEY": KEY})
    assert config.api_key == KEY
    with pytest.raises(ConfigurationError):
        ClientConfig.resolve(env={})
