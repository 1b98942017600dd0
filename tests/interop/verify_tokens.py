"""Verifies AuthStack access tokens with an independent JWT library (PyJWT), using only what
the gateway publishes: /.well-known/openid-configuration and the JWKS it points to."""
import json
import sys
import urllib.request
import uuid

import jwt  # PyJWT
from jwt import PyJWKClient

base = sys.argv[1]
expected_alg = sys.argv[2]


def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status, json.loads(res.read() or b"null")


name = "py" + uuid.uuid4().hex[:8]
status, account = call("POST", "/api/v1/auth/register",
                       {"email": f"{name}@example.com", "username": name, "password": "correct horse battery"})
assert status == 201, status
status, pair = call("POST", "/api/v1/auth/login", {"login": name, "password": "correct horse battery"})
assert status == 200, status
token = pair["access_token"]

_, discovery = call("GET", "/.well-known/openid-configuration")
issuer = discovery["issuer"]
jwks_client = PyJWKClient(discovery["jwks_uri"].replace(issuer, base, 1))
signing_key = jwks_client.get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert header["alg"] == expected_alg, header
assert header["typ"] == "at+jwt", header
claims = jwt.decode(
    token,
    signing_key.key,
    algorithms=[expected_alg],
    audience="authstack",
    issuer=issuer,
    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
)
assert claims["sub"] == account["id"], claims
assert "user" in claims["roles"], claims

# A tampered token must fail the independent verification too.
head, payload, sig = token.split(".")
forged = ".".join([head, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), sig])
try:
    jwt.decode(forged, signing_key.key, algorithms=[expected_alg], audience="authstack", issuer=issuer)
    raise SystemExit("tampered token verified")
except jwt.InvalidTokenError:
    pass
print(f"PyJWT {jwt.__version__} verified a {expected_alg} token (kid {header['kid']}) from the published JWKS")
