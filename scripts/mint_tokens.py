"""Prints N distinct, valid AuthStack access tokens (one per line), signed with the active key
of a local key ring (kubelet layout, as `authstack-dev keygen` writes it) by PyJWT — an
independent signer. `make bench` uses them to fill the gateway's token cache and measure its
memory per entry without N password logins.

usage: mint_tokens.py KEY_DIR ISSUER AUDIENCE N
"""
import base64
import json
import os
import sys
import time
import uuid

import jwt


def signing_key(key):
    """The ring key as a `cryptography` key. Ed25519 keys are PKCS#8 v2 (with the public key),
    which `cryptography` does not parse: their 32-byte seed is taken from the DER."""
    if key["algorithm"] != "EdDSA":
        return key["private_key_pem"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    body = "".join(line for line in key["private_key_pem"].splitlines() if not line.startswith("-----"))
    der = base64.b64decode(body)
    at = der.index(bytes([0x04, 0x22, 0x04, 0x20])) + 4  # OCTET STRING { OCTET STRING (32) }
    return Ed25519PrivateKey.from_private_bytes(der[at:at + 32])


def main(key_dir, issuer, audience, n):
    with open(os.path.join(key_dir, "keyring.json")) as f:
        ring = json.load(f)
    key = next(k for k in ring["keys"] if k["state"] == "active")
    private = signing_key(key)
    now = int(time.time())
    for _ in range(int(n)):
        claims = {"iss": issuer, "aud": audience, "sub": str(uuid.uuid4()), "exp": now + 900, "iat": now,
                  "nbf": now, "jti": str(uuid.uuid4()), "roles": ["user"], "sid": str(uuid.uuid4())}
        print(jwt.encode(claims, private, algorithm=key["algorithm"],
                         headers={"kid": key["kid"], "typ": "at+jwt"}))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
