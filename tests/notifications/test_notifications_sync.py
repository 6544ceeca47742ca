"""``Labric().notifications``: the sync twin, against a real server on its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric
from labric.errors import PermissionDeniedError, RateLimitError, UnprocessableEntityError
from labric.models import Notification, SentNotification, SentNotificationStatus
from labric.server import LocalServer, ThreadedServer

from .conftest import PER_HOUR


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path / "server", notifications_per_hour=PER_HOUR) as srv:
        yield srv


@pytest.fixture
def sync_client(threaded: ThreadedServer) -> Iterator[Labric]:
    with Labric(threaded.admin_key, base_url=threaded.base_url, max_retries=0) as c:
        yield c


def test_send_dedupe_list_and_the_cap(sync_client: Labric) -> None:
    sent = sync_client.notifications.send("Run done", dedupe_key="run-1", data={"n": 1})
    assert sent.status == SentNotificationStatus.DELIVERED
    assert sent.id
    again = sync_client.notifications.send("Run done", dedupe_key="run-1")
    assert again == SentNotification(id=None, status=SentNotificationStatus.DEDUPLICATED)
    with pytest.raises(UnprocessableEntityError):
        sync_client.notifications.send("x", dedupe_key="run-2", data={"sender": "me"})
    for n in range(2, PER_HOUR + 1):
        sync_client.notifications.send(f"Run {n}", dedupe_key=f"run-{n}")
    with pytest.raises(RateLimitError) as caught:
        sync_client.notifications.send("one too many", dedupe_key="over")
    assert int(caught.value.headers["Retry-After"]) > 0
    inbox = list(sync_client.notifications.list(page_size=2))
    assert all(isinstance(n, Notification) for n in inbox)
    assert [n.title for n in inbox] == [f"Run {n}" for n in range(PER_HOUR, 1, -1)] + ["Run done"]


def test_a_read_only_key_gets_403_on_send(threaded: ThreadedServer) -> None:
    with Labric(threaded.create_key(["read"]), base_url=threaded.base_url) as reader:
        with pytest.raises(PermissionDeniedError):
            reader.notifications.send("x", dedupe_key="k")
        assert list(reader.notifications.list()) == []
