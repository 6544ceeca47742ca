"""The notifications routes and ``client.notifications``: send, dedupe, mute, caps, the inbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from _clocked import FakeClock, Wire, at

from labric import AsyncLabric, RetryPolicy
from labric.errors import PermissionDeniedError, RateLimitError, UnprocessableEntityError
from labric.models import Notification, SentNotification, SentNotificationStatus
from labric.server import LocalServer

from .conftest import PER_DAY, PER_HOUR

ROUTE = "POST /api/v1/notifications"


async def test_delivered_then_deduplicated(client: AsyncLabric, clock: FakeClock) -> None:
    sent = await client.notifications.send(
        "Plate 42 is done",
        dedupe_key="plate-42",
        body="96 wells read",
        action_url="/experiments/42",
        data={"wells": 96},
    )
    assert isinstance(sent, SentNotification)
    assert sent.status == SentNotificationStatus.DELIVERED
    assert sent.delivered
    assert sent.id
    again = await client.notifications.send("Plate 42 is done (again)", dedupe_key="plate-42")
    assert again == SentNotification(id=None, status=SentNotificationStatus.DEDUPLICATED)
    assert not again.delivered
    inbox = [n async for n in client.notifications.list()]
    assert len(inbox) == 1
    (notification,) = inbox
    assert isinstance(notification, Notification)
    assert notification.id == sent.id
    assert notification.title == "Plate 42 is done"  # the repeat changed nothing
    assert (notification.body, notification.action_url) == ("96 wells read", "/experiments/42")
    assert notification.created_at == at(clock.now)
    assert notification.api_key_id is not None
    # Attributed to the sending key, in data too (under the key hosted reserves for it).
    assert notification.data == {"wells": 96, "api_key_id": notification.api_key_id}


async def test_sends_are_attributed_to_their_key(
    server: LocalServer, client: AsyncLabric, wire: Wire
) -> None:
    writer = server.create_key(["write"])
    async with AsyncLabric(writer, base_url=server.base_url, max_retries=0) as other:
        await other.notifications.send("from the writer", dedupe_key="w")
    await client.notifications.send("from the admin", dedupe_key="a")
    by_title = {n.title: n.api_key_id async for n in client.notifications.list()}
    assert by_title["from the writer"] != by_title["from the admin"]
    # The id is the key's record id, never the key or its secret.
    assert writer not in str(by_title)
    assert server.admin_key not in str(by_title)


@pytest.mark.parametrize("reserved", ["sender", "api_key_id"])
async def test_reserved_data_keys_are_422(client: AsyncLabric, reserved: str) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.notifications.send("x", dedupe_key="k", data={reserved: "me", "ok": 1})
    assert caught.value.detail == [
        {
            "loc": ["body", "data", reserved],
            "msg": f"'{reserved}' is reserved: the platform sets it to attribute the notification",
            "type": "reserved_key",
        }
    ]
    assert [n async for n in client.notifications.list()] == []
    # The refused send did not take its dedupe key.
    assert (await client.notifications.send("x", dedupe_key="k")).delivered


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dedupe_key": "k"}, "title"),
        ({"title": "  ", "dedupe_key": "k"}, "title"),
        ({"title": "x" * 256, "dedupe_key": "k"}, "title"),
        ({"title": "x"}, "dedupe_key"),
        ({"title": "x", "dedupe_key": ""}, "dedupe_key"),
        ({"title": "x", "dedupe_key": "k", "data": [1]}, "data"),
        ({"title": "x", "dedupe_key": "k", "body": 5}, "body"),
        ({"title": "x", "dedupe_key": "k", "action_url": "https://evil.example/x"}, "action_url"),
        ({"title": "x", "dedupe_key": "k", "action_url": "//evil.example/x"}, "action_url"),
        ({"title": "x", "dedupe_key": "k", "action_url": "/\\evil.example"}, "action_url"),
        ({"title": "x", "dedupe_key": "k", "action_url": "javascript:alert(1)"}, "action_url"),
        ({"title": "x", "dedupe_key": "k", "action_url": "jobs/1"}, "action_url"),
    ],
)
async def test_invalid_sends_are_422_in_the_hosted_shape(
    wire: Wire, body: dict[str, object], field: str
) -> None:
    reply = await wire.post("/v1/notifications", json=body)
    assert reply.status == 422, reply.body
    assert [p["loc"] for p in reply.detail] == [["body", field]]
    assert all(set(p) == {"loc", "msg", "type"} for p in reply.detail)
    assert await wire.ok("GET", "/v1/notifications") == []


async def test_an_absolute_url_to_this_server_is_kept_as_its_path(
    server: LocalServer, client: AsyncLabric
) -> None:
    await client.notifications.send(
        "x", dedupe_key="k", action_url=f"{server.origin}/jobs/7?tab=logs"
    )
    (notification,) = await client.notifications.list()
    assert notification.action_url == "/jobs/7?tab=logs"


async def test_muted_sends_store_nothing_until_unmuted(client: AsyncLabric, wire: Wire) -> None:
    assert await wire.ok("GET", "/v1/admin/notifications") == {"muted": False}
    assert await wire.ok("PUT", "/v1/admin/notifications", json={"muted": True}) == {"muted": True}
    muted = await client.notifications.send("quiet", dedupe_key="k")
    assert muted == SentNotification(id=None, status=SentNotificationStatus.MUTED)
    assert [n async for n in client.notifications.list()] == []
    await wire.ok("PUT", "/v1/admin/notifications", json={"muted": False})
    # A muted send did not take its key.
    assert (await client.notifications.send("heard", dedupe_key="k")).delivered
    reply = await wire.call("PUT", "/v1/admin/notifications", json={"muted": "yes"})
    assert reply.status == 422


async def test_the_hourly_cap_answers_429_with_retry_after(
    server: LocalServer, wire: Wire, clock: FakeClock
) -> None:
    for n in range(PER_HOUR):
        await wire.ok("POST", "/v1/notifications", json={"title": "x", "dedupe_key": f"k{n}"})
        clock.advance(60)
    # The first of the hour's sends is 3 minutes old: its slot frees in 57 minutes.
    reply = await wire.post("/v1/notifications", json={"title": "x", "dedupe_key": "over"})
    assert reply.status == 429
    assert reply.headers["Retry-After"] == str(3600 - PER_HOUR * 60)
    assert reply.json() == {
        "detail": f"Notification limit reached: at most {PER_HOUR} per hour for this "
        f"organisation; retry after {3600 - PER_HOUR * 60} seconds"
    }
    # Repeats and muted sends cost nothing, so they still answer at the cap.
    repeat = await wire.ok("POST", "/v1/notifications", json={"title": "x", "dedupe_key": "k0"})
    assert repeat["status"] == "deduplicated"
    clock.advance(3600 - PER_HOUR * 60)
    freed = await wire.ok("POST", "/v1/notifications", json={"title": "x", "dedupe_key": "over"})
    assert freed["status"] == "delivered"


async def test_the_daily_cap_holds_across_hours(wire: Wire, clock: FakeClock) -> None:
    for n in range(PER_DAY):
        await wire.ok("POST", "/v1/notifications", json={"title": "x", "dedupe_key": f"k{n}"})
        clock.advance(3600)  # each hour starts empty
    reply = await wire.post("/v1/notifications", json={"title": "x", "dedupe_key": "over"})
    assert reply.status == 429
    assert reply.headers["Retry-After"] == str(24 * 3600 - PER_DAY * 3600)
    assert "per day" in reply.detail


async def test_a_429_surfaces_as_rate_limit_error_after_the_retries(
    server: LocalServer, client: AsyncLabric
) -> None:
    for n in range(PER_HOUR):
        await client.notifications.send("x", dedupe_key=f"k{n}")
    # The server asks for most of an hour; the policy caps that wait at nothing, so the
    # retries run at once and the test shows they happened.
    policy = RetryPolicy(max_retries=2, max_server_delay=0)
    before = server.stats["requests"]["by_route"].get(ROUTE, 0)
    async with AsyncLabric(server.admin_key, base_url=server.base_url, retry=policy) as retrying:
        with pytest.raises(RateLimitError) as caught:
            await retrying.notifications.send("x", dedupe_key="over")
    assert server.stats["requests"]["by_route"][ROUTE] - before == 3
    err = caught.value
    assert err.status_code == 429
    assert int(err.headers["retry-after"]) > 0
    assert "per hour" in str(err.detail)


async def test_the_inbox_is_newest_first_and_paged(
    client: AsyncLabric, wire: Wire, clock: FakeClock
) -> None:
    for n in range(PER_HOUR):
        await client.notifications.send(f"n{n}", dedupe_key=f"k{n}")
        clock.advance(1)
    # Without paging parameters: the hosted answer, every notification in one array.
    whole = await wire.call("GET", "/v1/notifications")
    assert [n["title"] for n in whole.json()] == ["n2", "n1", "n0"]
    assert "Link" not in whole.headers
    first = await wire.call("GET", "/v1/notifications", params={"page_size": "2"})
    assert [n["title"] for n in first.json()] == ["n2", "n1"]
    assert 'rel="next"' in first.headers["Link"]
    titles = [n.title async for n in client.notifications.list(page_size=1)]
    assert titles == ["n2", "n1", "n0"]
    assert [n.title async for n in client.notifications.list(limit=2)] == ["n2", "n1"]
    page = await client.notifications.list(page_size=2)
    assert [n.title for n in page] == ["n2", "n1"]
    bad = await wire.call("GET", "/v1/notifications", params={"cursor": "nope"})
    assert bad.status == 400


async def test_a_read_only_key_cannot_send_but_reads_the_inbox(
    server: LocalServer, client: AsyncLabric
) -> None:
    await client.notifications.send("x", dedupe_key="k")
    async with AsyncLabric(
        server.create_key(["read"]), base_url=server.base_url, max_retries=0
    ) as reader:
        with pytest.raises(PermissionDeniedError) as caught:
            await reader.notifications.send("y", dedupe_key="k2")
        assert "lacks the 'write' scope" in str(caught.value.detail)
        assert [n.title async for n in reader.notifications.list()] == ["x"]


async def test_a_write_key_cannot_mute(server: LocalServer, wire: Wire) -> None:
    writer = server.create_key(["write"])
    reply = await wire.call("PUT", "/v1/admin/notifications", key=writer, json={"muted": True})
    assert reply.status == 403
    assert await wire.ok("GET", "/v1/admin/notifications") == {"muted": False}


@pytest.mark.parametrize("caps", [{"notifications_per_hour": 0}, {"notifications_per_day": -1}])
def test_the_caps_must_be_positive(caps: dict[str, int], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LocalServer(tmp_path / "server", **caps)
