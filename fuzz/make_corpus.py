#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/<target>/ (run from anywhere).

Seeds mirror what the crates' own tests build: the golden queue messages
(proto/vectors), JWS and JWKs as `api::jws` tests sign them, CSRs as
`api::csr` tests build them, the CAA table of `dns::caa` tests, SCT lists
and certificates as `ct` builds them, and the knob strings of
`kiln::knobs` and `api::finalize_policy` tests. Needs python3 with
`cryptography`. Keys that the targets also know (the account key of
keyChange, the log key) are derived from fixed scalars so the constants in
src/lib.rs stay valid; everything else is fresh on every run.
"""
import base64, hashlib, ipaddress, json, os, shutil, struct, sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID, ObjectIdentifier
import datetime

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"

URL = "https://ca.test/acme/new-order"
KEY_CHANGE_URL = "https://ca.test/acme/key-change"
ACCOUNT = "https://ca.test/acme/acct/1"
NONCE = "bm9uY2Utb25l"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def fixed_p256(label: str) -> ec.EllipticCurvePrivateKey:
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % n
    return ec.derive_private_key(scalar, ec.SECP256R1())


OLD_KEY = fixed_p256("kiln-fuzz account key")
LOG_KEY = fixed_p256("kiln-fuzz ct log key")


def jwk(key) -> dict:
    pub = key.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[pub.curve.name]
        return {"crv": crv, "kty": "EC", "x": b64u(nums.x.to_bytes(size, "big")),
                "y": b64u(nums.y.to_bytes(size, "big"))}
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        to = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")
        return {"e": b64u(to(nums.e)), "kty": "RSA", "n": b64u(to(nums.n))}
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64u(raw)}


def alg_of(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "ES256" if key.curve.key_size == 256 else "ES384"


def sign(key, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    size = (key.curve.key_size + 7) // 8
    digest = hashes.SHA256() if size == 32 else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def flattened(key, header: dict, payload: bytes) -> bytes:
    header = {"alg": alg_of(key), **header}
    protected = b64u(json.dumps(header, separators=(",", ":")).encode())
    body = b64u(payload)
    sig = sign(key, f"{protected}.{body}".encode())
    return json.dumps({"protected": protected, "payload": body,
                       "signature": b64u(sig)}).encode()


def spki(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


class Seeds:
    def __init__(self, target: str):
        self.dir = CORPUS / target
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def add(self, name: str, data):
        if isinstance(data, str):
            data = data.encode()
        (self.dir / name).write_bytes(data)


def proto_seeds():
    s = Seeds("proto")
    for f in sorted((ROOT / "proto" / "vectors").glob("*.msgpack")):
        s.add(f.name, f.read_bytes())


def key_set():
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "rsa2048": rsa.generate_private_key(65537, 2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def jws_seeds(keys):
    s = Seeds("jws")
    for name, key in keys.items():
        hdr = {"nonce": NONCE, "url": URL, "jwk": jwk(key)}
        s.add(f"new-account-{name}.json", flattened(key, hdr, b'{"termsOfServiceAgreed":true}'))
    kid = {"nonce": NONCE, "url": URL, "kid": ACCOUNT}
    s.add("kid-order.json", flattened(OLD_KEY, kid, b'{"identifiers":[{"type":"dns","value":"a.example"}]}'))
    s.add("kid-post-as-get.json", flattened(OLD_KEY, {**kid, "url": ACCOUNT}, b""))
    # keyChange: outer signed by the account's key (src/lib.rs OLD_KEY_JWK),
    # inner by the new key over {account, oldKey}.
    new = keys["p256"]
    inner_payload = json.dumps({"account": ACCOUNT, "oldKey": jwk(OLD_KEY)}).encode()
    inner = flattened(new, {"url": KEY_CHANGE_URL, "jwk": jwk(new)}, inner_payload)
    s.add("key-change-inner.json", inner)
    s.add("key-change-outer.json",
          flattened(OLD_KEY, {"nonce": NONCE, "url": KEY_CHANGE_URL, "kid": ACCOUNT}, inner))
    # Refused shapes from crates/api/src/jws/tests.rs.
    good = json.loads(flattened(keys["p256"], {"nonce": NONCE, "url": URL, "jwk": jwk(keys["p256"])}, b"{}"))
    s.add("with-header.json", json.dumps({**good, "header": {"kid": "x"}}))
    s.add("general.json", json.dumps({"payload": good["payload"], "signatures": []}))
    hdr = lambda h: b64u(json.dumps(h).encode())
    s.add("both-jwk-kid.json", json.dumps({**good, "protected": hdr({"alg": "ES256", "nonce": NONCE, "url": URL, "jwk": jwk(keys["p256"]), "kid": "k"})}))
    s.add("crit.json", json.dumps({**good, "protected": hdr({"alg": "ES256", "nonce": NONCE, "url": URL, "kid": ACCOUNT, "crit": ["b64"]})}))
    s.add("alg-none.json", json.dumps({**good, "protected": hdr({"alg": "none", "nonce": NONCE, "url": URL, "kid": ACCOUNT})}))
    s.add("private-jwk.json", json.dumps({**good, "protected": hdr({"alg": "ES256", "nonce": NONCE, "url": URL, "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}})}))


RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
             "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQM"
             "icAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr"
             "3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")


def jwk_seeds(keys):
    s = Seeds("jwk")
    for name, key in keys.items():
        s.add(f"{name}.json", json.dumps(jwk(key)))
        s.add(f"{name}.spki.der", spki(key))
    # The same key with its point compressed: pkix accepts both encodings.
    point = keys["p256"].public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.CompressedPoint)
    s.add("p256-compressed.spki.der",
          bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + point)
    s.add("p521.spki.der", spki(ec.generate_private_key(ec.SECP521R1())))
    s.add("rfc7638.json", json.dumps({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}))
    s.add("rfc7638-padded.json", json.dumps({"kty": "RSA", "n": b64u(b"\0" + base64.urlsafe_b64decode(RFC7638_N + "==")), "e": "AAEAAQ"}))
    for i, bad in enumerate([
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"},
        {"kty": "oct", "k": "AAAA"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"},
        {"kty": "RSA", "n": RFC7638_N, "e": "Aw"},
        {"kty": "EC", "crv": "P-256", "x": b64u(b"\1" * 32), "y": b64u(b"\1" * 32)},
    ]):
        s.add(f"refused-{i}.json", json.dumps(bad))


def csr(key, cn=None, dns=(), ips=(), extra=None, digest=hashes.SHA256()) -> bytes:
    b = x509.CertificateSigningRequestBuilder()
    b = b.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += extra or []
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        digest = None
    return b.sign(key, digest).public_bytes(serialization.Encoding.DER)


def csr_seeds(keys):
    # The csr target's orders: {a.example, b.example} and {a.example, 192.0.2.1}.
    s = Seeds("csr")
    for name in ("p256", "p384", "rsa2048"):
        s.add(f"{name}.der", csr(keys[name], "a.example", ["b.example", "a.example"]))
    s.add("p256-ip.der", csr(keys["p256"], None, ["a.example"], ["192.0.2.1"]))
    s.add("p256-sha384.der", csr(keys["p256"], "A.Example", ["b.example"], digest=hashes.SHA384()))
    s.add("ed25519.der", csr(keys["ed25519"], "a.example", ["b.example"]))
    s.add("p521.der", csr(ec.generate_private_key(ec.SECP521R1()), "a.example", ["b.example"]))
    s.add("email-san.der", csr(keys["p256"], "a.example", ["b.example"], extra=[x509.RFC822Name("x@a.example")]))
    s.add("uri-san.der", csr(keys["p256"], None, ["a.example", "b.example"], extra=[x509.UniformResourceIdentifier("https://a.example/")]))
    s.add("no-names.der", csr(keys["p256"]))
    s.add("account-key.der", csr(OLD_KEY, "a.example", ["b.example"]))
    s.add("ipv6.der", csr(keys["p256"], None, ["a.example"], ["2001:db8::1"]))


def caa_seeds():
    # Format (see fuzz_targets/caa.rs): identifier, account URI, validation
    # method, issuer domains, then one record a line: [!]tag value.
    s = Seeds("caa")
    acct = "https://kiln.test/acme/acct/1"
    head = lambda ident="a.com", a=acct, m="http-01": f"{ident}\n{a}\n{m}\nkiln.test\n"
    cases = {
        "issue-us": head() + "issue kiln.test\n",
        "issue-other": head() + "issue other.ca\n",
        "several": head() + "issue other.ca\nissue kiln.test\n",
        "iodef": head() + "iodef mailto:x@a.com\n",
        "wild": head("*.a.com", m="dns-01") + "issuewild kiln.test\nissue other.ca\n",
        "wild-forbid": head("*.a.com") + "issuewild ;\nissue kiln.test\n",
        "critical": head() + "!tbs x\nissue kiln.test\n",
        "accounturi": head() + f"issue kiln.test; accounturi={acct}\n",
        "accounturi-repeat": head() + f"issue kiln.test; accounturi={acct}; accounturi={acct}\n",
        "methods": head() + "issue kiln.test; validationmethods=dns-01,http-01\n",
        "methods-none": head(m="") + "issue kiln.test; validationmethods=dns-01\n",
        "both": head() + f"issue kiln.test;accounturi={acct};validationmethods=http-01\n",
        "whitespace": head() + " issue  kiln.test ;  accounturi = https://kiln.test/acme/acct/1 \n",
        "malformed": head() + "issue kiln..test\nissue kiln.test extra\nissue kiln.test; accounturi\n",
        "non-ascii": head().encode() + b"issue kiln.test\xff\n",
        "case": head() + "!IODEF mailto:x@a.com\nIssueWild kiln.test\nISSUE KILN.Test\n",
        "empty": head() + "issue \nissue ;\n",
    }
    for name, text in cases.items():
        s.add(name, text)


def tls16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def sct_bytes(log_id: bytes, ts: int, ext: bytes, sig: bytes, hash_alg=4, sig_alg=3) -> bytes:
    return b"\0" + log_id + struct.pack(">Q", ts) + tls16(ext) + bytes([hash_alg, sig_alg]) + tls16(sig)


def der_octets(b: bytes) -> bytes:
    n = len(b)
    if n < 0x80:
        return b"\x04" + bytes([n]) + b
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(ln)]) + ln + b


def sct_seeds():
    s = Seeds("sct_list")
    log_id = hashlib.sha256(spki(LOG_KEY)).digest()
    ts = 1_700_000_000_000
    # Signed over x509_signed_data(ts, b"", ext), which the target checks.
    def signed(ext: bytes) -> bytes:
        data = b"\0\0" + struct.pack(">Q", ts) + b"\0\0" + b"\0\0\0" + tls16(ext)
        return LOG_KEY.sign(data, ec.ECDSA(hashes.SHA256()))
    one = sct_bytes(log_id, ts, b"", signed(b""))
    two = sct_bytes(hashlib.sha256(b"other log").digest(), ts + 1, b"\1\2", signed(b"\1\2"))
    lst = der_octets(tls16(tls16(one) + tls16(two)))
    s.add("list-two.der", lst)
    s.add("list-one.der", der_octets(tls16(tls16(one))))
    s.add("list-empty.der", der_octets(tls16(b"")))
    s.add("sct.tls", one)
    s.add("add-chain-response.json", json.dumps({
        "sct_version": 0, "id": base64.b64encode(log_id).decode(), "timestamp": ts,
        "extensions": "", "signature": base64.b64encode(bytes([4, 3]) + tls16(signed(b""))).decode()}))
    # Certificates as the signer issues them: a precertificate (poison) and
    # a final one with the SCT list embedded.
    ca = ec.generate_private_key(ec.SECP256R1())
    leaf = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    def cert(ext):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kiln Fuzz CA")]))
             .public_key(leaf.public_key()).serial_number(7)
             .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=7))
             .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False))
        b = b.add_extension(*ext)
        return b.sign(ca, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    s.add("precert.der", cert((x509.PrecertPoison(), True)))
    sct_oid = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
    s.add("final.der", cert((x509.UnrecognizedExtension(sct_oid, lst), False)))


def knob_seeds():
    s = Seeds("knobs")
    texts = ["none", "250ms", "5s", "2m", "0.5", "uniform:1000ms..5000ms", "exp:2000ms", "polls:3",
             "new-order:bad-nonce:next=1", "*:503:rate=0.1", "finalize:slow=3000ms", "order:429",
             "cert:500", "seconds", "http-date", "random", "absent", "past", "caa", "stall",
             "async", "sync", "hybrid", "/acme/new-order", "arin-1@ARIN=127.0.0.1:8054"]
    for i, t in enumerate(texts):
        s.add(f"text-{i:02}", t)
    s.add("doc.json", json.dumps({"finalize_delay": "uniform:1s..5s", "delay_pattern": "*.slow.test",
                                  "retry_after": "http-date", "retry_after_seconds": 7, "fail": "ct",
                                  "http_faults": ["new-order:bad-nonce:next=1", "*:503:rate=0.1"],
                                  "seed": 42}))
    s.add("doc-none.json", json.dumps({"fail": "none", "delay_pattern": ""}))
    s.add("schedule.toml", """environment = "staging"
mode = "sync"
sync_timeout_secs = 30
hybrid_budget_min_ms = 100
hybrid_budget_max_ms = 3000

[[windows]]
start = "2023-03-15T00:00:00Z"
end = "2023-03-16T00:00:00Z"
mode = "async"

[[windows]]
environment = "prod"
start = "2023-04-05T17:07:00Z"
end = "2023-04-06T01:00:00Z"
mode = "hybrid"

[[accounts]]
id = "pinned"
mode = "sync"

[[user_agents]]
pattern = "OldClient/1.*"
mode = "sync"
""")


def main():
    keys = key_set()
    proto_seeds()
    jws_seeds(keys)
    jwk_seeds(keys)
    csr_seeds(keys)
    caa_seeds()
    sct_seeds()
    knob_seeds()
    print("OLD_KEY_JWK:", json.dumps(jwk(OLD_KEY), separators=(",", ":")))
    print("ACCOUNT_SPKI (base64):", base64.b64encode(spki(OLD_KEY)).decode())
    print("LOG_SPKI (base64):", base64.b64encode(spki(LOG_KEY)).decode())
    for d in sorted(CORPUS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    sys.exit(main())
