"""Sessions cannot be hoarded: a share of live sessions and of their creation rate per client address,
and at the server's cap a newcomer never waits for another address's sessions. Blocking store calls
run on their own threads, apart from long work."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import threading
import uuid
import zipfile

import pytest
from websockets.sync.client import connect

from core import data_service, workspace
from core.admission import SessionLedger
from core.clients import address_of, client_address, client_scope, current_client, parse_proxies
from core.errors import ServiceBusy
from core.sessions import current_session_id, session_scope
from tests.helpers import listed, make_jpeg, new_session, upload, upload_zip

PROXY = "127.0.0.1/32"  # the tests' own peer, trusted so that X-Forwarded-For names other clients


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def start_session(api, address: str):
    return api.post("/api/sessions", headers=from_address(address))


def test_an_address_past_its_share_of_sessions_gets_503_and_another_address_still_gets_one(api, configure):
    configure(trusted_proxies=PROXY, client_sessions=3)
    for _ in range(3):
        assert start_session(api, "198.51.100.7").status_code == 201
    refused = start_session(api, "198.51.100.7")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert "holds 3 workspaces" in refused.json()["detail"]
    assert start_session(api, "198.51.100.8").status_code == 201


def test_an_address_starting_sessions_too_fast_gets_503_with_retry_after(api, configure):
    configure(trusted_proxies=PROXY, client_sessions_per_minute=4)
    statuses = [start_session(api, "198.51.100.9").status_code for _ in range(4)]
    assert statuses == [201] * 4
    refused = start_session(api, "198.51.100.9")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "faster than 4 a minute" in refused.json()["detail"]
    assert start_session(api, "198.51.100.10").status_code == 201


def test_without_a_trusted_proxy_a_forwarded_header_cannot_buy_more_sessions(api, configure):
    configure(client_sessions=2)  # no trusted proxies: the peer (127.0.0.1) is the client, whatever it claims
    assert [start_session(api, f"198.51.100.{n}").status_code for n in range(2)] == [201, 201]
    assert start_session(api, "198.51.100.99").status_code == 503


def test_at_the_server_cap_the_hoarders_oldest_session_gives_way_to_a_newcomer(api, configure):
    configure(trusted_proxies=PROXY, max_sessions=4)
    hoarder = "203.0.113.5"
    sessions = []
    for index in range(4):  # each holds an image: none is an empty session that gives way first
        session = str(uuid.uuid4())  # ids a script invents work as the seed's API promises
        response = api.post(
            "/api/images",
            params={"session_id": session},
            headers=from_address(hoarder),
            files=[("files", (f"{index}.jpg", make_jpeg(seed=index)))],
        )
        assert response.status_code == 200
        sessions.append(session)
    assert start_session(api, hoarder).status_code == 503  # the hoarder itself waits for its own

    newcomer = start_session(api, "203.0.113.77")
    assert newcomer.status_code == 201
    assert listed(api, sessions[0]) == []  # the oldest gave way
    assert [image["filename"] for image in listed(api, sessions[1])] == ["1.jpg"]
    assert api.get("/api/health").json()["sessions"] == 4


def test_the_upload_path_keeps_retry_after_of_the_session_cap(api, configure):
    configure(max_sessions=1)
    first = str(uuid.uuid4())
    assert upload(api, first, ("a.jpg", make_jpeg(seed=1))).status_code == 200
    refused = upload(api, str(uuid.uuid4()), ("b.jpg", make_jpeg(seed=2)))
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == str(workspace.SESSION_CAP_RETRY_SECONDS)


def test_a_cleared_or_expired_session_no_longer_counts_against_its_address(configure):
    configure(client_sessions=1)
    with client_scope("192.0.2.1"):
        first = str(uuid.uuid4())
        with session_scope(first):
            workspace.touch_session()
        with session_scope(str(uuid.uuid4())), pytest.raises(ServiceBusy):
            workspace.touch_session()
        with session_scope(first):
            workspace.clear_session()
        second = str(uuid.uuid4())
        with session_scope(second):
            workspace.touch_session()
        assert workspace.expire_idle_sessions(now=float("inf")) == 1
        with session_scope(str(uuid.uuid4())):
            workspace.touch_session()


def test_the_ledger_forgets_idle_rate_buckets_and_bounds_what_it_keeps():
    now = [0.0]
    ledger = SessionLedger(per_client=2, per_minute=60, clock=lambda: now[0])
    ledger.check("a")
    ledger.record("s1", "a")
    ledger.record("s1", "a")  # recorded twice: still one session
    assert ledger.held("a") == 1
    ledger.forget("s1")
    ledger.forget("s1")
    assert ledger.held("a") == 0 and ledger.give_way("b") is None


@pytest.mark.parametrize(
    "peer, forwarded, proxies, expected",
    [
        ("10.1.1.1", ["198.51.100.1"], "", "10.1.1.1"),  # no proxy trusted: the header is ignored
        ("10.1.1.1", ["198.51.100.1"], "10.0.0.0/8", "198.51.100.1"),
        ("10.1.1.1", ["6.6.6.6, 198.51.100.1, 10.2.2.2"], "10.0.0.0/8", "198.51.100.1"),  # the client forged 6.6.6.6
        ("10.1.1.1", ["garbage, 198.51.100.1"], "10.0.0.0/8", "198.51.100.1"),
        ("10.1.1.1", ["198.51.100.1, garbage"], "10.0.0.0/8", "10.1.1.1"),
        ("192.0.2.9", ["198.51.100.1"], "10.0.0.0/8", "192.0.2.9"),  # an untrusted peer
        (None, [], "", "unknown"),
    ],
)
def test_the_client_address_believes_x_forwarded_for_only_from_trusted_proxies(peer, forwarded, proxies, expected):
    assert client_address(peer, forwarded, parse_proxies(proxies)) == expected


def test_a_request_scope_names_its_client_the_same_whether_or_not_the_answer_was_remembered():
    def scope(peer: str, *forwarded: bytes) -> dict:
        headers = [(b"host", b"darkroom")] + [(b"x-forwarded-for", value) for value in forwarded]
        return {"type": "http", "client": (peer, 50000), "headers": headers}

    hops = b"6.6.6.6, 198.51.100.1"
    for _ in range(2):  # the second answer comes from the cache
        assert address_of(scope("10.1.1.1", hops, b"10.2.2.2"), "10.0.0.0/8") == "198.51.100.1"
        assert address_of(scope("10.1.1.1", hops), "") == "10.1.1.1"  # no proxy trusted
        assert address_of(scope("192.0.2.9", hops), "10.0.0.0/8") == "192.0.2.9"
    long_header = b", ".join(b"10.9.%d.%d" % (i // 256, i % 256) for i in range(100)) + b", 198.51.100.7"
    assert len(long_header) > 256  # too long to be remembered, resolved all the same
    assert address_of(scope("10.1.1.1", long_header), "10.0.0.0/8") == "198.51.100.7"
    assert address_of({"type": "http", "client": None, "headers": []}, "") == "unknown"


def test_a_bad_trusted_proxy_setting_is_refused_with_its_variable_named():
    from core.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="DARKROOM_TRUSTED_PROXIES: 'not-an-ip'"):
        load_settings({"DARKROOM_TRUSTED_PROXIES": "10.0.0.0/8, not-an-ip"})


async def test_store_calls_run_on_their_own_threads_while_long_work_holds_every_default_thread(configure, tmp_path):
    configure(storage="disk", storage_dir=tmp_path / "store")
    session = str(uuid.uuid4())
    loop = asyncio.get_running_loop()
    release = threading.Event()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    blocked = loop.run_in_executor(None, release.wait)  # long work holding the only default thread
    try:
        with session_scope(session), client_scope("192.0.2.44"):
            seen = await data_service.in_store_thread(
                lambda: (current_session_id(), current_client(), threading.current_thread().name)
            )
            await data_service.run_store(workspace.touch_session)
            records = await asyncio.wait_for(data_service.run_store(workspace.list_images), timeout=30)
        assert seen[:2] == (session, "192.0.2.44")
        assert seen[2].startswith("darkroom-store")
        assert records == [] and not blocked.done()
    finally:
        release.set()
        await blocked


def zip_of(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_larger_than_the_sessions_decode_share_waits_for_its_own_decodes(api, configure):
    configure(decode_session_tasks=1, decode_client_tasks=1)  # every member must wait for the one before
    session_id = new_session(api)
    archive = zip_of(*((f"{n}.jpg", make_jpeg(seed=n)) for n in range(6)))
    response = upload_zip(api, session_id, archive)
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) == 6 and response.json()["rejected"] == []
    assert data_service.sandbox().queued(session_id) == 0


def test_a_feature_run_stays_inside_its_sessions_decode_share(api, configure):
    configure(decode_session_tasks=1, decode_client_tasks=1)
    session_id = new_session(api)
    for n in range(4):
        assert upload(api, session_id, (f"{n}.jpg", make_jpeg(seed=n))).status_code == 200
    table = api.get("/api/features", params={"session_id": session_id, "groups": "hashes"})
    assert table.status_code == 200, table.text
    assert len(table.json()["rows"]) == 4


def test_a_multipart_upload_larger_than_the_sessions_decode_share_waits_for_its_own_decodes(api, configure):
    configure(decode_session_tasks=1, decode_client_tasks=1)
    session_id = new_session(api)
    response = upload(api, session_id, *((f"{n}.jpg", make_jpeg(seed=n)) for n in range(4)))
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) == 4 and response.json()["rejected"] == []


def test_an_upload_socket_larger_than_the_sessions_decode_share_waits_for_its_own_decodes(api, live_server, configure):
    configure(decode_session_tasks=1, decode_client_tasks=1)
    session_id = new_session(api)
    with connect(f"{live_server.ws_url}/api/ws/upload?session_id={session_id}", compression=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        for n in range(4):  # sent back to back: the server reads the next file once one is decoded
            data = make_jpeg(seed=n)
            ws.send(json.dumps({"filename": f"{n}.jpg", "size": len(data)}))
            ws.send(data)
        ws.send(json.dumps({"type": "done"}))
        results = []
        while (message := json.loads(ws.recv(timeout=30)))["type"] != "summary":
            if message["type"] == "result":
                results.append(message)
    assert [r["status"] for r in results] == [200] * 4, results
    assert message["accepted"] == 4
