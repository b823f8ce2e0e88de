"""The Python bindings against a real Baton server: sign in, worklist, acknowledge while
disconnected, reconnect, see another device's change, complete a step with its required fields,
a refused action as a typed error, an escalation received, and remote wipe."""

import asyncio
import time

import pytest

import baton
from baton import (
    BatonClient, BatonError, Connection, FieldInput, FieldValue, NewTask, Scope, Settings,
    WorklistFilter,
)

KEY = bytes(range(32))
WAIT = 30.0
ALL = WorklistFilter(scope=Scope.ALL, unit=None, role=None)


def device(server, store, user, device_id, roles, units):
    """A client on a fresh store, signed in and online."""
    client = BatonClient.open(Settings(sync_url=server.sync_url, store_path=store(), store_key=KEY))
    me = asyncio.run(client.sign_in(server.token(user, device_id, roles, units)))
    assert me.user == user
    with baton.status_updates(client) as updates:
        updates.until(lambda s: s.connection == Connection.ONLINE, WAIT)
    return client


def wait_until(check, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


def find(items, template):
    return next(i for i in items if i.template == template)


def test_sign_in_and_worklist_by_risk(server, store):
    nurse = device(server, store, "rn.evans", "py-nurse-1", ["nurse"], ["4W"])
    me = nurse.me()
    assert [(u.id, u.roles) for u in me.units] == [("4W", ["nurse"])]
    items = asyncio.run(nurse.worklist(ALL))
    assert {i.template for i in items} >= {"consult", "discharge", "nonformulary_med"}
    assert all(i.unit == "4W" for i in items)
    # Overdue work is never listed after work that is not.
    overdue = [i.overdue for i in items]
    assert overdue == sorted(overdue, reverse=True)
    asyncio.run(nurse.shutdown())


def test_acknowledge_offline_then_another_device_sees_it(server, store):
    fox = device(server, store, "dr.fox", "py-fox-1", ["physician"], ["4W"])
    nurse = device(server, store, "rn.evans", "py-nurse-2", ["nurse"], ["4W"])
    opened = nurse.open_task(NewTask(template="consult", unit="4W", subject_ref="enc-py-1",
                                     subject_label="Bed 21 · P.Y.", acuity="routine", note=None))
    with baton.status_updates(nurse) as updates:
        updates.until(lambda s: s.synced, WAIT)
    task = opened.task_id
    wait_until(lambda: any(i.id == task for i in asyncio.run(fox.worklist(ALL))))

    # The physician's phone loses its connection and acknowledges anyway.
    fox.set_sync_url("ws://127.0.0.1:9/sync")
    with baton.status_updates(fox) as updates:
        updates.until(lambda s: s.connection != Connection.ONLINE, WAIT)
    asyncio.run(fox.acknowledge(task))
    assert fox.status().unacknowledged >= 1
    assert asyncio.run(fox.task(task)).acknowledged_by == "dr.fox"

    with baton.task_changes(nurse, task) as changes:
        # Back online: the change reaches the server and the nurse's phone.
        fox.set_sync_url(server.sync_url)
        with baton.status_updates(fox) as updates:
            updates.until(lambda s: s.synced, WAIT)
        changes.until(lambda c: c.origin == baton.Origin.REMOTE, WAIT)
    view = asyncio.run(nurse.task(task))
    assert view.acknowledged_by == "dr.fox"
    assert view.owner == "dr.fox"
    asyncio.run(fox.shutdown())
    asyncio.run(nurse.shutdown())


def test_a_step_needs_its_fields_and_a_refusal_is_typed(server, store):
    nurse = device(server, store, "rn.evans", "py-nurse-3", ["nurse"], ["4W"])
    fox = device(server, store, "dr.fox", "py-fox-2", ["physician"], ["4W"])
    task = nurse.open_task(NewTask(template="consult", unit="4W", subject_ref="enc-py-2",
                                   subject_label="Bed 22 · Q.R.", acuity=None, note=None)).task_id
    wait_until(lambda: any(i.id == task for i in asyncio.run(fox.worklist(ALL))))
    asyncio.run(fox.acknowledge(task))

    # The nurse may not acknowledge a physician's consult: refused, naming the rule.
    with pytest.raises(BatonError.Refused) as refused:
        asyncio.run(nurse.acknowledge(task))
    assert refused.value.code == "not_permitted", refused.value.reason

    view = asyncio.run(fox.task(task))
    request = view.steps[0]
    assert request.id == "request"
    assert {f.name for f in request.fields} == {"question", "urgency"}
    assert any(m.action == "complete_step" and m.step == "request" for m in view.may)
    with pytest.raises(BatonError.Refused) as refused:
        asyncio.run(fox.complete_step(task, "request", []))
    assert refused.value.code == "missing_field"
    assert refused.value.step == "request"
    assert refused.value.field in {"question", "urgency"}
    fields = [
        FieldInput(name="question", value=FieldValue.TEXT(value="Chest pain on exertion?")),
        FieldInput(name="urgency", value=FieldValue.TEXT(value="urgent")),
    ]
    asyncio.run(fox.complete_step(task, "request", fields))
    with baton.status_updates(fox) as updates:
        updates.until(lambda s: s.synced, WAIT)
    done = wait_until(lambda: asyncio.run(nurse.task(task)).steps[0].completed_by)
    assert done == "dr.fox"
    asyncio.run(fox.shutdown())
    asyncio.run(nurse.shutdown())


def test_an_escalation_reaches_the_phone(server, store):
    nurse = device(server, store, "rn.evans", "py-nurse-4", ["nurse"], ["4W"])
    task = nurse.open_task(NewTask(template="consult", unit="4W", subject_ref="enc-py-3",
                                   subject_label="Bed 23 · S.T.", acuity="stat", note=None)).task_id
    # Nobody acknowledges the stat consult: the server climbs its chain, and the nurse's phone
    # hears of it while it listens.
    with baton.task_changes(nurse, task) as changes:
        changes.until(
            lambda c: c.origin == baton.Origin.REMOTE
            and asyncio.run(nurse.task(task)).escalation_level >= 1,
            60,
        )
    view = asyncio.run(nurse.task(task))
    assert any(h.kind == "escalated" and h.user == "baton" for h in view.history)
    asyncio.run(nurse.shutdown())


def test_a_revoked_device_is_wiped(server, store):
    nurse = device(server, store, "rn.evans", "py-lost", ["nurse"], ["4W"])
    assert asyncio.run(nurse.worklist(ALL))
    admin = server.token("admin", "console", [], [], admin=True)
    with baton.status_updates(nurse) as updates:
        server.request("POST", "/api/v1/devices/py-lost/revoke", admin)
        updates.until(lambda s: s.connection == Connection.WIPED, WAIT)
    with pytest.raises(BatonError.Wiped):
        asyncio.run(nurse.worklist(ALL))
    assert nurse.me() is None
