"""Under a flaky network, default retry settings lose nothing.

The local server fails about one request in five (10% 500/503, 3% 429 with ``Retry-After``,
5% connection resets, seeded); ``upload_many`` of 100 small files and one multi-part file, with
the client's default retry policy and transfer retry deadline, must confirm every file exactly
once and byte for byte.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from labric import AsyncLabric, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.server import FaultConfig, LocalServer

from .conftest import PART, admin_call

FLAKY = FaultConfig(error=0.1, throttle=0.03, reset=0.05, seed=11)


async def test_upload_many_through_a_flaky_network_at_default_settings_loses_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    tree = tmp_path / "src" / "batch"
    tree.mkdir(parents=True)
    made: dict[str, bytes] = {}
    for i in range(100):
        made[f"batch/well-{i:03d}.csv"] = rng.randbytes(rng.randint(100, 4096))
    made["batch/run.raw"] = rng.randbytes(6 * PART + 3)
    for name, data in made.items():
        (tmp_path / "src" / name).write_bytes(data)

    async with LocalServer(tmp_path / "server", part_size=PART) as server:
        # Defaults everywhere but where the journal lives and the size that goes in parts
        # (so a small file exercises the multipart path); retries are the defaults.
        transfer = TransferConfig(multipart_threshold=2 * PART, state_dir=str(tmp_path / "state"))
        async with AsyncLabric(
            server.admin_key, base_url=server.base_url, transfer=transfer
        ) as client:
            server.faults.update(FLAKY)
            outcomes = await client.files.upload_many([tree])
            server.faults.update(FaultConfig())
            injected = server.stats["faults"]
            assert client.stats.retries > 0

            failed = [(o.source, o.error) for o in outcomes if not o.ok]
            assert failed == []
            assert len(outcomes) == len(made)
            for outcome in outcomes:
                assert outcome.file is not None
                name = Path(str(outcome.source)).relative_to(tmp_path / "src").as_posix()
                assert outcome.file.crc32c_hash == crc32c_to_b64(crc32c(made[name]))
            big = next(o for o in outcomes if str(o.source).endswith("run.raw"))
            assert big.file is not None
            assert await client.files.read_bytes(big.file.file_id) == made["batch/run.raw"]

        status, listing = await admin_call(server, "GET", "/v1/files?limit=1000")
    assert status == 200
    assert isinstance(listing, list)
    # Every file once: no record lost, none duplicated by a retried write.
    assert Counter(f["original_path"] for f in listing) == Counter(dict.fromkeys(made, 1))
    assert injected["errors_500"] + injected["errors_503"] > 0
    assert injected["resets"] > 0
    assert injected["throttled"] > 0
