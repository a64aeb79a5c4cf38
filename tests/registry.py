"""A real OCI registry on 127.0.0.1 (Debian's docker-registry, distribution 2.8) for tests,
with images pushed through its HTTP API, and optionally bearer-token auth from a
token service of the test's own (the registry verifies its signed tokens)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sovereign_hub.processes import stop_process
from sovereign_hub.sandbox.hubprocess import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class TokenService:
    """Issues registry tokens (ES256 JWTs with the signing certificate in x5c)."""

    def __init__(self, directory: Path, service: str = "test-registry") -> None:
        self.service = service
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.bundle = directory / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict[str, list[str]]] = []
        service_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                service_self.requests.append(query)
                body = json.dumps({"token": service_self.token(query.get("scope", [""])[0])})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        # shutdown() waits out one poll: 0.5 s by default, at every teardown
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def token(self, scope: str) -> str:
        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "test-issuer", "sub": "tester", "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()), "access": access}  # fmt: skip
        x5c = [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": x5c})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalRegistry:
    def __init__(self, directory: Path, token_service: TokenService | None = None) -> None:
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            raise FileNotFoundError(
                "docker-registry is not installed: apt-get install docker-registry"
            )
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tokens = token_service
        auth = ""
        if token_service:
            auth = (
                f"auth:\n  token:\n    realm: {token_service.realm}\n"
                f"    service: {token_service.service}\n    issuer: test-issuer\n"
                f"    rootcertbundle: {token_service.bundle}\n"
            )
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            f"http:\n  addr: {self.host}\n" + auth
        )
        self.log = open(directory / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://{self.host}/v2/", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError((directory / "registry.log").read_text()) from None
                time.sleep(0.1)

    def _headers(self, repository: str) -> dict[str, str]:
        if not self.tokens:
            return {}
        return {
            "Authorization": f"Bearer {self.tokens.token(f'repository:{repository}:pull,push')}"
        }

    def push_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        base = f"http://{self.host}/v2/{repository}/blobs/uploads/"
        start = requests.post(base, headers=self._headers(repository), timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        if location.startswith("/"):
            location = f"http://{self.host}{location}"
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest}", data=data,
                            headers={**self._headers(repository), "Content-Type": "application/octet-stream"},
                            timeout=30)  # fmt: skip
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def push_manifest(
        self, repository: str, tag: str, manifest: dict[str, Any], media_type: str
    ) -> str:
        body = json.dumps(manifest, separators=(",", ":")).encode()
        answer = requests.put(
            f"http://{self.host}/v2/{repository}/manifests/{tag}", data=body,
            headers={**self._headers(repository), "Content-Type": media_type}, timeout=30,
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def push_image(self, repository: str, tag: str, arch: str = "amd64", note: str = "") -> str:
        """A small single-platform image; returns its manifest digest."""
        config = self.push_blob(repository, json.dumps(
            {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
             "config": {"Labels": {"note": note}}}).encode())  # fmt: skip
        layer = self.push_blob(repository, f"layer {arch} {note}".encode())
        return self.push_manifest(repository, tag, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
        }, OCI_MANIFEST)  # fmt: skip

    def push_multiarch(self, repository: str, tag: str) -> str:
        """An index over amd64 and arm64 images; returns the index digest."""
        manifests = []
        for arch in ("amd64", "arm64"):
            digest = self.push_image(repository, f"{tag}-{arch}", arch)
            size = len(requests.get(
                f"http://{self.host}/v2/{repository}/manifests/{digest}",
                headers={**self._headers(repository), "Accept": OCI_MANIFEST}, timeout=30).content)  # fmt: skip
            manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                              "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
        return self.push_manifest(repository, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                    "manifests": manifests}, OCI_INDEX)  # fmt: skip

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self.log.close()
