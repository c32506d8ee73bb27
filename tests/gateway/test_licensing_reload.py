"""Hot reload: licence changes and suspensions made anywhere reach a running gateway within a
second, and a reload reads only what changed, also with 10,000 operators."""

from __future__ import annotations

import datetime as dt

from credcore.clock import CST
from credcore.db import make_engine
from policies.licence import parse_licence
from policies.store import LicenceStore
from tests.conftest import wait_for
from tests.policies.support import admin_call, licence


async def test_admin_licence_change_applies_to_the_next_request(gateway, sample_code) -> None:
    """Narrowing a licence through the admin API refuses the very next request, with no restart."""
    await gateway.add_client("hot", licence=licence())
    token = await gateway.token("hot")
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 200
    status, _ = await admin_call(gateway, "PUT", "/admin/operators/hot/licences/hot-L1",
                                 licence(datasets={"penalties": "*"}))
    assert status == 200
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
    assert (await gateway.get(f"/v1/entities/{sample_code}/penalties", token)).status == 200


async def test_change_by_another_process_bites_within_a_second(make_gateway, tmp_path, sample_code) -> None:
    """A licence written to the shared database by someone else is in force here within 1 s."""
    gateway = await make_gateway()
    await gateway.add_client("other", licence=licence(datasets={"penalties": "*"}))
    token = await gateway.token("other")
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")  # the same file, another connection pool
    try:
        store = LicenceStore(engine)
        await store.start()
        widened = parse_licence(licence(), licence_id="other-L1", client_id="other")
        await store.put_licence(widened, dt.datetime.now(CST))

        async def allowed() -> bool:
            return (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 200

        assert await wait_for(allowed, timeout=1.0)
        await store.set_operator_status("other", "suspended", "from elsewhere", dt.datetime.now(CST))

        async def suspended() -> bool:
            resp = await gateway.get(f"/v1/entities/{sample_code}", token)
            return resp.status == 403 and (await resp.json())["error"] == "operator_suspended"

        assert await wait_for(suspended, timeout=1.0)
    finally:
        await engine.dispose()


async def test_reload_reads_only_what_changed_at_scale(gateway, sample_code) -> None:
    """With 10,000 operators and 50,000 rows loaded, one licence change re-reads one row and one operator."""
    now = gateway.gw.clock.now()
    body = licence(datasets={"penalties": "*", "entities": "*", "licences": "*", "disclosures": "*",
                             "recognitions": "*"})
    ops = [(f"bulk{n:05d}", f"Bulk {n}") for n in range(10_000)]
    lics = [parse_licence(body, licence_id=f"{cid}-L", client_id=cid) for cid, _ in ops]
    await gateway.gw.licence_store.bulk_load(ops, lics, now)
    licensing = gateway.gw.licensing
    await licensing.reload()  # (or the poll got there first)
    assert licensing.index.row_count >= 50_000
    admin_token = await gateway.token("admin")
    before = (licensing.stats.licences_read, licensing.stats.operators_recomputed)

    resp = await gateway.client.put("/admin/operators/bulk00042/licences/bulk00042-L",
                                    json=licence(datasets={"penalties": "*"}),
                                    headers={"Authorization": f"Bearer {admin_token}"})
    assert resp.status == 200
    after = (licensing.stats.licences_read, licensing.stats.operators_recomputed)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    assert licensing.index.rows("bulk00042") == (("bulk00042", "penalties", "credit_check", "*", "bulk00042-L"),)
    assert len(licensing.index.rows("bulk00043")) == 5
    token = await gateway.token("op")
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 200
