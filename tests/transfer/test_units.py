"""Pure parts of the transfer engine: part plans, checksums, paths, limiter, memory budget."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labric._transfer.bulk import expand_sources
from labric._transfer.checksum import (
    crc32c,
    crc32c_combine,
    crc32c_extend,
    crc32c_from_b64,
    crc32c_to_b64,
)
from labric._transfer.naming import safe_relative_path
from labric._transfer.scheduling import AdaptiveLimiter, BufferPool, MemoryBudget, plan_parts
from labric._transfer.sources import SMALL_FILE, open_source
from labric.errors import TransferError


@given(size=st.integers(min_value=0, max_value=10**13), part=st.integers(1, 10**10))
def test_part_plan_covers_the_object_exactly(size: int, part: int) -> None:
    if size // part > 50_000:  # keep the property test fast; the shape is the same
        part = size // 50_000 + 1
    plan = plan_parts(size, part)
    position = 0
    for offset, length in plan:
        assert offset == position
        assert 0 < length <= part
        position += length
    assert position == size
    assert all(length == part for _, length in plan[:-1])


def test_part_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        plan_parts(10, 0)
    with pytest.raises(ValueError):
        plan_parts(-1, 10)
    assert plan_parts(0, 10) == []


def test_crc32c_known_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c_to_b64(crc32c(b"")) == "AAAAAA=="


@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
def test_crc32c_combine_matches_concatenation(a: bytes, b: bytes) -> None:
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == crc32c(a + b)
    assert crc32c_extend(crc32c(a), b) == crc32c(a + b)


@given(value=st.integers(0, 2**32 - 1))
def test_crc32c_b64_round_trip(value: int) -> None:
    assert crc32c_from_b64(crc32c_to_b64(value)) == value


@pytest.mark.parametrize("bad", ["", "!!!!", "AAAAAAAA", "AAA="])
def test_crc32c_b64_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        crc32c_from_b64(bad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "a.csv"),
        ("runs/7/a.csv", "runs/7/a.csv"),
        ("runs\\7\\a.csv", "runs/7/a.csv"),
        ("/abs/path.csv", "abs/path.csv"),
        ("C:\\data\\x.csv", "data/x.csv"),
        ("./a/./b.csv", "a/b.csv"),
    ],
)
def test_safe_relative_path_keeps_names_inside(name: str, expected: str) -> None:
    assert safe_relative_path(name).as_posix() == expected


@pytest.mark.parametrize("name", ["../x", "a/../../x", "..\\x", "a\x00b", "", "/", "."])
def test_safe_relative_path_refuses_escapes(name: str) -> None:
    with pytest.raises(TransferError):
        safe_relative_path(name)


async def test_limiter_bounds_in_flight_and_adapts() -> None:
    limiter = AdaptiveLimiter(4, increase_after=2)
    release = asyncio.Event()
    entered = 0

    async def worker() -> None:
        nonlocal entered
        async with limiter:
            entered += 1
            await release.wait()

    tasks = [asyncio.create_task(worker()) for _ in range(10)]
    while entered < 4:
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert limiter.in_flight == 4
    assert entered == 4
    limiter.on_throttle()
    assert limiter.limit == 2
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.limit == 1  # never below the floor
    for _ in range(4):
        await limiter.on_success()
    assert limiter.limit == 3
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.peak_in_flight == 4
    assert limiter.in_flight == 0


async def test_limiter_slot_returned_on_cancel() -> None:
    limiter = AdaptiveLimiter(1)
    started = asyncio.Event()

    async def hold() -> None:
        async with limiter:
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with limiter:
        assert limiter.in_flight == 1


async def test_memory_budget_never_exceeded() -> None:
    budget = MemoryBudget(100)

    async def use(n: int) -> None:
        async with budget.reserve(n):
            assert budget.used <= budget.budget
            await asyncio.sleep(0)

    await asyncio.gather(*(use(n) for n in [60, 60, 30, 30, 90, 10, 500]))
    assert budget.peak <= 100
    assert budget.used == 0


@given(st.binary(max_size=5000), st.integers(min_value=0, max_value=4999))
def test_crc32c_of_writable_buffers_matches_bytes(data: bytes, cut: int) -> None:
    """Buffers the C extension refuses (bytearray, memoryview) are checksummed the same."""
    expected = crc32c(data)
    assert crc32c(bytearray(data)) == expected
    assert crc32c(memoryview(data)) == expected
    head = crc32c_extend(0, memoryview(bytearray(data))[:cut])
    assert crc32c_extend(head, bytearray(data[cut:])) == expected


def test_buffer_pool_reuses_buffers_within_its_limit() -> None:
    pool = BufferPool(limit=100)
    first = pool.take(40)
    pool.give(first)
    assert pool.take(40) is first  # reused, not reallocated
    a, b, c = pool.take(40), pool.take(40), pool.take(40)
    for buf in (a, b, c):
        pool.give(buf)
    assert pool.idle == 80  # the third would pass the limit and is dropped
    assert pool.take(30) is not a  # another size gets a fresh buffer...
    pool.give(bytearray(30))
    assert pool.idle == 30  # ...and makes room by dropping the idle buffers of the old size


async def test_read_part_fills_the_buffer_and_checksums_it(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    data = os.urandom(SMALL_FILE + 10_000)  # too big to be read when measured
    path.write_bytes(data)
    src = await open_source(path, name=None, content_type=None, chunk_size=4)
    assert src.data is None
    buffer = bytearray(3000)
    view, crc = await src.read_part(5000, 3000, buffer)
    assert bytes(view) == data[5000:8000]
    assert crc == crc32c(data[5000:8000])
    assert view.obj is buffer  # read in place
    path.write_bytes(data[:6000])  # the file shrinks under us: a clear error, not short data
    with pytest.raises(TransferError, match="got shorter"):
        await src.read_part(5000, 3000, buffer)
    data = data[:10_000]

    src = await open_source(io.BytesIO(data), name="b.bin", content_type=None, chunk_size=4)
    view, crc = await src.read_part(100, 3000, buffer)
    assert (bytes(view), crc) == (data[100:3100], crc32c(data[100:3100]))

    src = await open_source(data, name="m.bin", content_type=None, chunk_size=4)
    view, crc = await src.read_part(9000, 1000, None)  # in memory: sliced, no buffer needed
    assert (bytes(view), crc) == (data[9000:], crc32c(data[9000:]))


async def test_small_files_are_read_with_their_measurement(tmp_path: Path) -> None:
    """A small file's bytes are read in the same trip as its size and mtime, so what is sent is
    what the identity describes, even if the file changes afterwards."""
    path = tmp_path / "plate.csv"
    path.write_bytes(b"well,od600\nA1,0.4\n")
    src = await open_source(path, name=None, content_type=None, chunk_size=4)
    st = path.stat()
    assert src.identity == (str(path.resolve()), st.st_size, st.st_mtime_ns)
    path.write_bytes(b"changed")
    assert await src.read(0, src.size) == b"well,od600\nA1,0.4\n"
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert (await open_source(empty, name=None, content_type=None, chunk_size=4)).data == b""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # refused at once, not a wait for a writer
    with pytest.raises(IsADirectoryError, match="Not a regular file"):
        await open_source(fifo, name=None, content_type=None, chunk_size=4)


def test_expand_sources_walks_directories_and_globs(tmp_path: Path) -> None:
    run = tmp_path / "run42"
    (run / "plates").mkdir(parents=True)
    (run / "b.csv").write_text("b")
    (run / "plates" / "a.csv").write_text("a")
    (run / "notes.txt").write_text("n")
    expanded = expand_sources([run])
    names = [name for _, _, name in expanded]
    assert names == ["run42/b.csv", "run42/notes.txt", "run42/plates/a.csv"]
    globbed = expand_sources([str(tmp_path / "run42" / "**" / "*.csv")])
    assert sorted(name for _, _, name in globbed) == ["b.csv", "plates/a.csv"]
    pairs = expand_sources([("x.bin", b"123")])
    assert pairs == [(("x.bin", b"123"), b"123", "x.bin")]


async def test_open_source_measures_each_kind(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    src = await open_source(path, name=None, content_type=None, chunk_size=4)
    assert (src.name, src.size, src.content_type) == ("data.csv", 8, "text/csv")
    assert await src.read(2, 3) == b"b\n1"

    src = await open_source(b"xyz", name="x.bin", content_type=None, chunk_size=4)
    assert (src.size, src.content_type) == (3, "application/octet-stream")

    with pytest.raises(ValueError, match="needs a name"):
        await open_source(b"xyz", name=None, content_type=None, chunk_size=4)

    buf = io.BytesIO(b"0123456789")
    buf.seek(4)
    src = await open_source(buf, name="tail.bin", content_type=None, chunk_size=4)
    assert src.size == 6
    assert await src.read(0, 2) == b"45"

    async def stream():  # type: ignore[no-untyped-def]
        for piece in (b"ab", b"cd", b"e"):
            yield piece

    src = await open_source(stream(), name="s.bin", content_type=None, chunk_size=2)
    try:
        assert src.size == 5
        assert await src.read(1, 3) == b"bcd"
        assert src.spooled
    finally:
        src.close()

    with pytest.raises(FileNotFoundError):
        await open_source(tmp_path / "missing.csv", name=None, content_type=None, chunk_size=4)
    with pytest.raises(IsADirectoryError):
        await open_source(tmp_path, name=None, content_type=None, chunk_size=4)
    with pytest.raises(ValueError, match="binary mode"):
        await open_source(io.StringIO("x"), name="x", content_type=None, chunk_size=4)
    with pytest.raises(TypeError):
        await open_source(42, name="x", content_type=None, chunk_size=4)  # type: ignore[arg-type]
    assert os.path.exists(path)
