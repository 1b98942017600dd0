#!/usr/bin/env python3
"""Attacks on a running AuthStack (the real gateway and auth-svc binaries), with clients we did
not write: tokens crafted with PyJWT, `cryptography` and raw base64; the broker reached with
pika using the gateway's own broker credentials.

  attack.py GATEWAY_URL KEY_DIR GATEWAY_AMQP_URL RPC_EXCHANGE RPC_QUEUE EVENTS_EXCHANGE ISSUER

Every forged token must be refused (401 `auth.invalid_token`, or `auth.token_expired` for a
genuinely signed but expired one) by the gateway (`/api/v1/auth/session`, `/api/v1/users/me`)
and by auth-svc's own verification (an RPC sent straight over the broker, as a gateway that
let it through would). The broker must refuse the gateway user everything but its own job.
Exits non-zero with a list of what got through.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import jwt
import pika
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

(GATEWAY, KEY_DIR, AMQP, RPC_EXCHANGE, RPC_QUEUE, EVENTS_EXCHANGE, ISSUER) = sys.argv[1:8]
AUDIENCE = "authstack"
failures = []


def b64(data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data, separators=(",", ":")).encode()
    elif isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def http(method, path, body=None, token=None):
    req = urllib.request.Request(GATEWAY + path, method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    if token is not None:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"null")
        except ValueError:
            return e.code, raw.decode(errors="replace")


# --- A real account, a real token, the real keys ------------------------------------------------
name = "atk" + uuid.uuid4().hex[:8]
password = "correct horse battery staple"
status, _ = http("POST", "/api/v1/auth/register", {"email": f"{name}@example.com", "username": name, "password": password})
assert status == 201, status
status, pair = http("POST", "/api/v1/auth/login", {"login": name, "password": password})
assert status == 200, (status, pair)
genuine = pair["access_token"]
# For the log scan: none of these may ever show up in a log line.
with open(os.path.join(os.environ.get("AUTHSTACK_TEST_LOGS", "."), "attacks.secrets"), "a") as f:
    f.write(f"{password}\n{pair['refresh_token']}\n")
claims = jwt.decode(genuine, options={"verify_signature": False})
header = jwt.get_unverified_header(genuine)
real_kid = header["kid"]
status, jwks = http("GET", "/.well-known/jwks.json")
assert status == 200 and any(k["kid"] == real_kid for k in jwks["keys"])
public_jwk = next(k for k in jwks["keys"] if k["kid"] == real_kid)
public_raw = base64.urlsafe_b64decode(public_jwk["x"] + "==")
public_pem = ed25519.Ed25519PublicKey.from_public_bytes(public_raw).public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
# The genuine signing key, to show that valid signatures do not rescue bad claims.
with open(os.path.join(KEY_DIR, "keyring.json")) as f:
    ring = json.load(f)
signing = next(k for k in ring["keys"] if k["kid"] == real_kid)
# The ring stores PKCS#8 v2 (with the public key attached), which `cryptography` does not
# parse: take the 32-byte Ed25519 seed out of the DER by hand.
der = base64.b64decode("".join(l for l in signing["private_key_pem"].splitlines() if "-----" not in l))
seed_at = der.index(b"\x04\x22\x04\x20") + 4
real_private = ed25519.Ed25519PrivateKey.from_private_bytes(der[seed_at:seed_at + 32])
attacker_private = ed25519.Ed25519PrivateKey.generate()
now = int(time.time())

# Sanity: the genuine token works, so refusals below are about the attacks.
assert http("GET", "/api/v1/auth/session", token=genuine)[0] == 200


def signed(payload, key, headers=None, algorithm="EdDSA"):
    h = {"typ": "at+jwt", "kid": real_kid}
    h.update(headers or {})
    return jwt.encode(payload, key, algorithm=algorithm, headers=h)


def with_claims(**changes):
    c = dict(claims)
    c.update(changes)
    return c


admin_claims = with_claims(roles=["user", "admin"])
h_none = {"alg": "none", "typ": "at+jwt", "kid": real_kid}
h_hs = {"alg": "HS256", "typ": "at+jwt", "kid": real_kid}
hs_input = f"{b64(h_hs)}.{b64(admin_claims)}".encode()
hs_sig = b64(hmac.new(public_pem, hs_input, hashlib.sha256).digest())
hs_sig_raw = b64(hmac.new(public_raw, hs_input, hashlib.sha256).digest())
g_head, g_body, g_sig = genuine.split(".")
signing_input_dup = lambda head, body: f"{head}.{body}"
dup_body = b64(json.dumps(claims, separators=(",", ":"))[:-1] + ',"sub":"' + str(uuid.uuid4()) + '","roles":["admin"]}')
dup_head = b64('{"alg":"EdDSA","typ":"at+jwt","kid":"' + real_kid + '","alg":"none"}')
es_key = ec.generate_private_key(ec.SECP256R1())


def sign_raw(head_b64, body_b64, key):
    return f"{head_b64}.{body_b64}.{b64(key.sign(f'{head_b64}.{body_b64}'.encode()))}"


corpus = {
    "alg none": f"{b64(h_none)}.{b64(admin_claims)}.",
    "alg none, genuine signature kept": f"{b64(h_none)}.{g_body}.{g_sig}",
    "HS256 keyed with the public key (PEM)": f"{hs_input.decode()}.{hs_sig}",
    "HS256 keyed with the public key (raw)": f"{hs_input.decode()}.{hs_sig_raw}",
    "attacker key, real kid": signed(admin_claims, attacker_private),
    "attacker key, own kid": signed(admin_claims, attacker_private, {"kid": "attacker"}),
    "attacker key, no kid": jwt.encode(admin_claims, attacker_private, algorithm="EdDSA", headers={"typ": "at+jwt"}),
    "ES256 under the EdDSA kid": signed(admin_claims, es_key, algorithm="ES256"),
    "tampered payload": f"{g_head}.{b64(admin_claims)}.{g_sig}",
    "tampered header (kid)": f"{b64(dict(header, kid='other'))}.{g_body}.{g_sig}",
    "signature stripped": f"{g_head}.{g_body}.",
    "wrong audience": signed(with_claims(aud="someone-else"), real_private),
    "audience list without ours": signed(with_claims(aud=["x", "y"]), real_private),
    "wrong issuer": signed(with_claims(iss="https://evil.example"), real_private),
    "wrong typ (JWT)": signed(claims, real_private, {"typ": "JWT"}),
    "no typ": jwt.encode(claims, real_private, algorithm="EdDSA", headers={"kid": real_kid, "typ": None}),
    "expired": signed(with_claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200), real_private),
    "not yet valid": signed(with_claims(nbf=now + 3600, iat=now + 3600, exp=now + 7200), real_private),
    "no exp": signed({k: v for k, v in claims.items() if k != "exp"}, real_private),
    "sub not an account id": signed(with_claims(sub="admin"), real_private),
    "huge header": signed(claims, attacker_private, {"pad": "A" * 200_000}),
    "huge header, genuine signature": signed(claims, real_private, {"pad": "A" * 200_000}),
    "duplicate keys in the payload": sign_raw(g_head, dup_body, attacker_private),
    "duplicate keys in the payload, genuine signature": sign_raw(g_head, dup_body, real_private),
    "duplicate alg in the header, genuine signature": sign_raw(dup_head, g_body, real_private),
    "garbage": "not.a.jwt",
    "two segments": f"{g_head}.{g_body}",
}
expired_ok = {"expired"}


def expected(name, code):
    allowed = {"auth.invalid_token"} | ({"auth.token_expired"} if name in expired_ok else set())
    return code in allowed


# --- The gateway ---------------------------------------------------------------------------------
for attack, token in corpus.items():
    for path in ("/api/v1/auth/session", "/api/v1/users/me"):
        status, body = http("GET", path, token=token)
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        # A header too large for HTTP itself (431) is a refusal too.
        if not (status == 431 or (status == 401 and expected(attack, code))):
            failures.append(f"gateway {path}: {attack}: {status} {str(body)[:200]}")

# --- auth-svc's own verification, over the broker with the gateway's credentials -----------------
params = pika.URLParameters(AMQP)
conn = pika.BlockingConnection(params)
channel = conn.channel()
reply_queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
replies = {}


def on_reply(ch, method, props, body):
    replies[props.correlation_id] = json.loads(body)


channel.basic_consume(queue=reply_queue, on_message_callback=on_reply, auto_ack=True)


def rpc(method, token, params=None):
    cid = uuid.uuid4().hex
    body = {"method": method, "params": params, "context": {"request_id": cid, "access_token": token}}
    channel.basic_publish(
        exchange=RPC_EXCHANGE,
        routing_key=RPC_QUEUE,
        body=json.dumps(body).encode(),
        properties=pika.BasicProperties(reply_to=reply_queue, correlation_id=cid, message_id=cid),
    )
    deadline = time.time() + 10
    while cid not in replies and time.time() < deadline:
        conn.process_data_events(time_limit=0.1)
    return replies.pop(cid, None)


assert "result" in (rpc("users.get_me", genuine) or {}), "a genuine token must work over RPC"
for attack, token in corpus.items():
    for method in ("users.get_me", "users.list"):
        reply = rpc(method, token, {} if method == "users.list" else None)
        code = (reply or {}).get("error", {}).get("code")
        if not expected(attack, code):
            failures.append(f"auth-svc {method}: {attack}: {reply}")
conn.close()

# --- The broker refuses the gateway user what is not its job ------------------------------------


def refused(action):
    c = pika.BlockingConnection(params)
    ch = c.channel()
    ch.confirm_delivery()
    try:
        action(ch)
        return False
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code == 403
    except pika.exceptions.AMQPError:
        return False
    finally:
        if c.is_open:
            c.close()


forged_rotation = {
    "id": str(uuid.uuid4()), "kind": "keys.rotated", "account_id": None,
    "occurred_at": "2030-01-01T00:00:00Z",
    "data": {"generation": 999999, "key_set": {"generation": 999999, "algorithm": "EdDSA", "active_kid": "attacker", "keys": []}},
}
for what, action in {
    "publish keys.rotated": lambda ch: ch.basic_publish(EVENTS_EXCHANGE, "keys.rotated", json.dumps(forged_rotation).encode()),
    "publish through the default exchange (a forged reply)": lambda ch: ch.basic_publish("", RPC_QUEUE, b"{}"),
    "consume the RPC queue": lambda ch: ch.basic_consume(RPC_QUEUE, lambda *a: None),
    "purge the RPC queue": lambda ch: ch.queue_purge(RPC_QUEUE),
    "delete the RPC queue": lambda ch: ch.queue_delete(RPC_QUEUE),
    "redeclare the events exchange": lambda ch: ch.exchange_declare(EVENTS_EXCHANGE, "fanout"),
}.items():
    if not refused(action):
        failures.append(f"broker: the gateway user could {what}")

# The forged rotation changed nothing: an attacker-signed token is still refused.
status, _ = http("GET", "/api/v1/auth/session", token=corpus["attacker key, own kid"])
if status != 401:
    failures.append(f"after a forged keys.rotated, an attacker token got {status}")

print(f"[attacks] {len(corpus)} forged tokens x (2 gateway endpoints + 2 RPC methods), 6 broker actions")
if failures:
    print("[attacks] NOT REFUSED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("[attacks] everything refused")
