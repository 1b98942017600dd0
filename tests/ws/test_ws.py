"""The gateway's WebSocket /api/v1/ws judged by an independent client (Python `websockets`).

Usage: test_ws.py GATEWAY_URL KEY_DIR DATABASE_URL BIN_DIR GATEWAY_METRICS_URL GATEWAY2_URL
Needs the platform started with AUTH_ACCESS_TOKEN_TTL=15, clock skews 0,
GATEWAY_WS_AUTH_TIMEOUT_MS=1000, GATEWAY_WS_SEND_BUFFER=64, AUTH_REFRESH_REUSE_GRACE=0 (see
scripts/ws-test.sh). Each check prints one line; the exit status is the number of failures.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

BASE, KEYS, DATABASE_URL, BIN, METRICS, BASE2 = sys.argv[1:7]
WS = BASE.replace("http://", "ws://") + "/api/v1/ws"
TTL = int(os.environ.get("AUTH_ACCESS_TOKEN_TTL", "15"))
PASSWORD = "correct horse battery"


def http(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def user(prefix="u"):
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    status, account = http("POST", "/api/v1/auth/register",
                           {"email": f"{name}@example.com", "username": name, "password": PASSWORD})
    assert status == 201, (status, account)
    return name, account["id"]


def login(name):
    status, pair = http("POST", "/api/v1/auth/login", {"login": name, "password": PASSWORD})
    assert status == 200, (status, pair)
    return pair


async def open_socket(token=None, how="header", base=BASE, **kwargs):
    headers = {"authorization": f"Bearer {token}"} if token and how == "header" else {}
    url = base.replace("http://", "ws://") + "/api/v1/ws"
    url += f"?access_token={token}" if token and how == "query" else ""
    ws = await connect(url, additional_headers=headers, **kwargs)
    if token and how == "frame":
        await ws.send(json.dumps({"type": "auth", "access_token": token}))
    return ws


async def signed_in(name):
    """A fresh login of `name` and a ready socket on its access token."""
    pair = login(name)
    ws = await open_socket(pair["access_token"])
    await ready(ws)
    return ws, pair


async def next_of(ws, kind):
    """The next frame of `kind`, skipping events (they may come first)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] != "event":
            assert frame["type"] == kind, frame
            return frame


async def ready(ws):
    return await next_of(ws, "ready")


async def reply(ws):
    return await next_of(ws, "reply")


async def close_code(ws, within):
    """Reads until the gateway closes the socket; returns (code, reason, frames read)."""
    frames = []
    try:
        async with asyncio.timeout(within):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as e:
        assert e.rcvd is not None, f"no close frame received ({e})"
        return e.rcvd.code, e.rcvd.reason, frames
    except TimeoutError:
        raise AssertionError(f"still open after {within} s ({len(frames)} frames read)")


async def events(ws, quiet=1.5):
    """Event frames until nothing arrives for `quiet` seconds."""
    out = []
    while True:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), quiet))
        except TimeoutError:
            return out
        if frame["type"] == "event":
            out.append(frame["event"])


def admin():
    name, account = user("admin")
    subprocess.run([f"{BIN}/auth-svc", "grant-role", "--login", name], check=True,
                   env={**os.environ, "DATABASE_URL": DATABASE_URL}, capture_output=True)
    return name, account, login(name)["access_token"]


async def test_no_auth():
    ws = await open_socket()
    code, _, _ = await close_code(ws, 5)
    assert code == 4002, code
    ws = await open_socket()
    await ws.send(json.dumps({"type": "subscribe", "topics": ["#"]}))
    code, reason, _ = await close_code(ws, 5)
    assert code == 4002 and "auth" in reason, (code, reason)
    ws = await open_socket("not.a.jwt")
    code, _, _ = await close_code(ws, 5)
    assert code == 4002, code
    ws = await connect(WS, additional_headers={"authorization": "Basic eDp5"})
    code, _, _ = await close_code(ws, 5)
    assert code == 4002, code


async def test_auth_by_header_query_and_frame():
    name, account = user()
    token = login(name)["access_token"]
    for how in ("header", "query", "frame"):
        ws = await open_socket(token, how)
        frame = await ready(ws)
        assert frame["account_id"] == account and frame["topics"] == ["#"], frame
        await ws.close()


async def test_exactly_own_events():
    ann, ann_id = user("ann")
    bob, bob_id = user("bob")
    ann_token = login(ann)["access_token"]
    bob_token = login(bob)["access_token"]
    ann_ws = await open_socket(ann_token)
    bob_ws = await open_socket(bob_token)
    await ready(ann_ws)
    await ready(bob_ws)
    # The logins' own events may still be on their way: let them pass.
    await events(ann_ws)
    await events(bob_ws, quiet=0.2)
    assert http("PATCH", "/api/v1/users/me", {"display_name": "Ann"}, ann_token)[0] == 200
    second = login(ann)
    assert http("POST", "/api/v1/auth/logout", {"refresh_token": second["refresh_token"]},
                second["access_token"])[0] == 204
    assert http("PATCH", "/api/v1/users/me", {"display_name": "Bob"}, bob_token)[0] == 200
    got = await events(ann_ws)
    kinds = sorted(e["kind"] for e in got)
    assert kinds == ["account.logged_in", "account.logged_out", "account.updated",
                     "session.revoked"], kinds
    assert all(e["account_id"] == ann_id for e in got), got
    bob_got = await events(bob_ws, quiet=0.5)
    assert [e["kind"] for e in bob_got] == ["account.updated"], bob_got
    assert all(e["account_id"] == bob_id for e in bob_got), bob_got
    # Topics narrow what arrives.
    await ann_ws.send(json.dumps({"type": "unsubscribe", "topics": ["#"]}))
    await ann_ws.send(json.dumps({"type": "subscribe", "topics": ["session.*"]}))
    frames = [json.loads(await ann_ws.recv()) for _ in range(2)]
    assert frames[-1] == {"type": "subscribed", "topics": ["session.*"], "all_accounts": False}
    assert http("PATCH", "/api/v1/users/me", {"display_name": "A2"}, ann_token)[0] == 200
    third = login(ann)
    http("POST", "/api/v1/auth/logout", {"refresh_token": third["refresh_token"]},
         third["access_token"])
    assert [e["kind"] for e in await events(ann_ws)] == ["session.revoked"]
    # Only admins may widen to every account.
    await bob_ws.send(json.dumps({"type": "subscribe", "topics": ["#"], "all_accounts": True}))
    frame = json.loads(await bob_ws.recv())
    assert frame["type"] == "error" and frame["error"]["code"] == "auth.forbidden", frame
    await ann_ws.close()
    await bob_ws.close()


async def test_each_gateway_replica_delivers_to_its_own_sockets():
    name, account = user()
    token = login(name)["access_token"]
    one = await open_socket(token)
    two = await open_socket(token, base=BASE2)
    for ws in (one, two):
        await ready(ws)
        await events(ws, quiet=1)
    assert http("PATCH", "/api/v1/users/me", {"display_name": "Both"}, token)[0] == 200
    for ws in (one, two):
        got = await events(ws)
        assert [(e["kind"], e["account_id"]) for e in got] == [("account.updated", account)], got
        await ws.close()


async def test_admin_sees_every_account():
    _, _, token = admin()
    bob, bob_id = user("bob")
    ws = await open_socket(token)
    await ready(ws)
    await ws.send(json.dumps({"type": "unsubscribe", "topics": ["#"]}))
    await ws.send(json.dumps({"type": "subscribe", "topics": ["account.updated"],
                              "all_accounts": True}))
    frames = [json.loads(await ws.recv()) for _ in range(2)]
    assert frames[-1] == {"type": "subscribed", "topics": ["account.updated"],
                          "all_accounts": True}, frames
    bob_token = login(bob)["access_token"]
    http("PATCH", "/api/v1/users/me", {"display_name": "Bob"}, bob_token)
    got = [e for e in await events(ws) if e["account_id"] == bob_id]
    assert [e["kind"] for e in got] == ["account.updated"], got
    await ws.close()


async def test_rpc_over_the_socket():
    name, account = user()
    ws = await open_socket(login(name)["access_token"])
    await ready(ws)
    calls = [
        {"id": 1, "method": "users.get_me"},
        {"id": "two", "method": "users.list"},
        {"id": 3, "method": "auth.login", "params": {"login": name, "password": PASSWORD}},
        {"id": 4, "method": "users.update_me", "params": {"email": "not-an-email"}},
        {"id": 5, "method": "no.such_method"},
        {"id": 6, "method": "access.check", "params": {"method": "GET", "path": "/api/v1/users"}},
    ]
    for c in calls:
        await ws.send(json.dumps(c))
    replies = {}
    while len(replies) < len(calls):
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] == "reply":
            replies[frame["id"]] = frame
    assert replies[1]["result"]["id"] == account, replies[1]
    assert replies[1]["result"]["username"] == name
    codes = {k: v.get("error", {}).get("code") for k, v in replies.items()}
    assert codes == {1: None, "two": "auth.forbidden", 3: "common.not_implemented",
                     4: "validation.failed", 5: "common.not_implemented", 6: None}, codes
    assert replies["two"]["error"]["request_id"], replies["two"]
    assert replies[6]["result"] == {"allowed": False}, replies[6]
    # A frame that is not JSON is an error frame; the socket stays open.
    await ws.send("{nope")
    frame = {"type": "event"}
    while frame["type"] == "event":
        frame = json.loads(await ws.recv())
    assert frame["type"] == "error" and frame["error"]["code"] == "validation.failed", frame
    await ws.close()


async def test_expiry_and_in_band_refresh():
    name, _ = user()
    first = login(name)
    expiring = await open_socket(first["access_token"])
    refreshed = await open_socket(first["access_token"])
    start = await ready(expiring)
    await ready(refreshed)
    await asyncio.sleep(TTL / 2)
    status, pair = http("POST", "/api/v1/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 200, pair
    await refreshed.send(json.dumps({"type": "auth", "access_token": pair["access_token"]}))
    again = await ready(refreshed)
    assert again["expires_at"] > start["expires_at"], again
    code, _, _ = await close_code(expiring, TTL)
    assert code == 4001, code
    assert time.time() >= start["expires_at"] - 1
    # The refreshed socket outlives the first token.
    await refreshed.send(json.dumps({"id": 1, "method": "users.get_me"}))
    answer = await reply(refreshed)
    assert "result" in answer, answer
    await refreshed.close()
    # An in-band token of another account closes the socket.
    other, _ = user()
    ws, _ = await signed_in(name)
    await ws.send(json.dumps({"type": "auth", "access_token": login(other)["access_token"]}))
    code, _, _ = await close_code(ws, 5)
    assert code == 4002, code


async def test_logout_closes_with_4003():
    name, _ = user()
    ws, pair = await signed_in(name)
    assert http("POST", "/api/v1/auth/logout", {"refresh_token": pair["refresh_token"]},
                pair["access_token"])[0] == 204
    code, reason, frames = await close_code(ws, 5)
    assert code == 4003 and "logout" in reason, (code, reason)
    assert [f["event"]["kind"] for f in frames if f["type"] == "event"][-1] == "session.revoked"
    # The revoked token cannot open a new socket.
    ws = await open_socket(pair["access_token"])
    code, _, _ = await close_code(ws, 5)
    assert code == 4002, code


async def test_revocations_close_with_4003():
    name, _ = user()
    # Refresh-token reuse revokes the session.
    ws, pair = await signed_in(name)
    assert http("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})[0] == 200
    await asyncio.sleep(1.1)
    assert http("POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})[0] == 401
    code, reason, _ = await close_code(ws, 5)
    assert code == 4003 and "refresh_token_reuse" in reason, (code, reason)
    # Logout-all and a password change revoke every (other) session.
    one, two = login(name), login(name)
    ws_one = await open_socket(one["access_token"])
    await ready(ws_one)
    ws_two = await open_socket(two["access_token"])
    await ready(ws_two)
    assert http("POST", "/api/v1/users/me/password",
                {"current_password": PASSWORD, "new_password": PASSWORD + "!"},
                two["access_token"])[0] == 204
    code, reason, _ = await close_code(ws_one, 5)
    assert code == 4003 and "password_changed" in reason, (code, reason)
    assert http("POST", "/api/v1/auth/logout-all", None, two["access_token"])[0] == 204
    code, reason, _ = await close_code(ws_two, 5)
    assert code == 4003 and "logout_all" in reason, (code, reason)


async def test_disabled_and_deleted_accounts_close_with_4004():
    _, _, admin_token = admin()
    name, account = user()
    ws = await open_socket(login(name)["access_token"])
    await ready(ws)
    status, body = http("PATCH", f"/api/v1/users/{account}", {"disabled": True}, admin_token)
    assert status == 200, body
    code, reason, _ = await close_code(ws, 5)
    assert code == 4004 and "account_disabled" in reason, (code, reason)
    name, _ = user()
    token = login(name)["access_token"]
    ws = await open_socket(token)
    await ready(ws)
    assert http("DELETE", "/api/v1/users/me", {"current_password": PASSWORD}, token)[0] == 204
    code, _, _ = await close_code(ws, 5)
    assert code == 4004, code


async def test_oversized_message_closes_with_1009():
    name, _ = user()
    ws = await open_socket(login(name)["access_token"], max_size=None)
    await ready(ws)
    await ws.send(json.dumps({"type": "subscribe", "topics": ["x" * 20000]}))
    code, _, _ = await close_code(ws, 5)
    assert code == 1009, code


async def test_slow_consumer_closes_with_4008():
    name, _ = user()
    token = login(name)["access_token"]
    # A client that stops reading: a tiny receive buffer and websockets' own flow control
    # (max_queue=1) close the TCP window; the gateway's send buffer is capped
    # (GATEWAY_SOCKET_SEND_BUFFER_BYTES), so its queue for this socket fills with events.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((BASE.split("//")[1].split(":")[0], int(BASE.rsplit(":", 1)[1])))
    ws = await connect(WS, sock=sock, max_queue=1,
                       additional_headers={"authorization": f"Bearer {token}"})
    await ready(ws)
    ws.transport.pause_reading()
    fast = await open_socket(token)
    await ready(fast)

    def patch(i):
        return http("PATCH", "/api/v1/users/me", {"display_name": f"n{i}"}, token)[0]

    def closed_too_slow():
        with urllib.request.urlopen(METRICS + "/metrics", timeout=10) as r:
            return 'gateway_ws_closed_total{code="4008"}' in r.read().decode()

    # Events until the gateway gave up on the socket (its metrics say when; the verdict is the
    # close code the client reads).
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while not await loop.run_in_executor(pool, closed_too_slow):
            assert sent < 3000, f"{sent} events and the socket is still not closed"
            statuses = await asyncio.gather(
                *[loop.run_in_executor(pool, patch, sent + i) for i in range(50)])
            assert set(statuses) == {200}, set(statuses)
            sent += 50
    print(f"      {sent} events in {time.monotonic() - t0:.1f} s", flush=True)
    ws.transport.resume_reading()
    code, reason, frames = await close_code(ws, 15)
    assert code == 4008, (code, reason)
    assert len(frames) < sent, len(frames)
    print(f"      the slow socket read {len(frames)} events before 4008", flush=True)
    # The socket reading at full speed got every event.
    got = await events(fast, quiet=2)
    assert len([e for e in got if e["kind"] == "account.updated"]) == sent, len(got)
    await fast.close()


async def test_revoked_key_closes_with_4005():
    name, _ = user()
    old = login(name)["access_token"]
    ws = await open_socket(old)
    await ready(ws)
    show = subprocess.run([f"{BIN}/authstack-dev", "show", "--dir", KEYS], check=True,
                          capture_output=True, text=True).stdout
    old_kid = json.loads(
        __import__("base64").urlsafe_b64decode(old.split(".")[0] + "==").decode())["kid"]
    assert old_kid in show, show
    rotate = [f"{BIN}/authstack-dev", "rotate", "--dir", KEYS, "--propagation-delay", "0"]
    subprocess.run(rotate + ["--start"], check=True, capture_output=True)
    subprocess.run(rotate, check=True, capture_output=True)
    # A token of the new key keeps its socket.
    deadline = time.time() + 15
    while True:
        new = login(name)["access_token"]
        kid = json.loads(
            __import__("base64").urlsafe_b64decode(new.split(".")[0] + "==").decode())["kid"]
        if kid != old_kid:
            break
        assert time.time() < deadline, "auth-svc never signed with the new key"
        await asyncio.sleep(0.5)
    survivor = await open_socket(new)
    await ready(survivor)
    subprocess.run(rotate + ["--revoke", old_kid], check=True, capture_output=True)
    code, _, frames = await close_code(ws, 15)
    assert code == 4005, code
    assert "keys.rotated" in [f["event"]["kind"] for f in frames if f["type"] == "event"]
    await survivor.send(json.dumps({"id": 1, "method": "users.get_me"}))
    answer = await reply(survivor)
    assert "result" in answer, answer
    await survivor.close()


async def main():
    tests = [
        test_no_auth,
        test_auth_by_header_query_and_frame,
        test_exactly_own_events,
        test_admin_sees_every_account,
        test_each_gateway_replica_delivers_to_its_own_sockets,
        test_rpc_over_the_socket,
        test_logout_closes_with_4003,
        test_revocations_close_with_4003,
        test_disabled_and_deleted_accounts_close_with_4004,
        test_oversized_message_closes_with_1009,
        test_slow_consumer_closes_with_4008,
        test_expiry_and_in_band_refresh,
        # Last: the other sockets would see its keys.rotated events.
        test_revoked_key_closes_with_4005,
    ]
    only = os.environ.get("WS_TEST_ONLY")
    failures = 0
    for t in tests:
        if only and only not in t.__name__:
            continue
        started = time.monotonic()
        try:
            await t()
            print(f"ok    {t.__name__} ({time.monotonic() - started:.1f} s)")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures += 1
            print(f"FAIL  {t.__name__}: {type(e).__name__}: {e}")
    return failures


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
