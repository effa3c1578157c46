"""A local OpenID Connect provider standing in for huggingface.co in the Space login test.

It serves the discovery document, the signing keys and the token endpoint; the test plays the
browser (it follows the authorize redirect itself). The id_token is a real RS256 JWT, so the
app's OAuth client (authlib inside Gradio) checks signature, issuer, audience and nonce as it
would against Hugging Face.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "qwen3arena-test-client"
CLIENT_SECRET = "qwen3arena-test-secret"


class OIDCStub:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, dict[str, Any]] = {}  # code -> claims of the user it logs in
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue_code(self, username: str, nonce: str | None) -> str:
        code = f"code-{len(self.codes)}"
        self.codes[code] = {"preferred_username": username, "name": username.title(), "nonce": nonce}
        return code

    def close(self) -> None:
        self.server.shutdown()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _json(self, body: dict, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json({"issuer": stub.url, "authorization_endpoint": stub.url + "/oauth/authorize",
                                "token_endpoint": stub.url + "/oauth/token",
                                "userinfo_endpoint": stub.url + "/oauth/userinfo",
                                "jwks_uri": stub.url + "/oauth/jwks", "response_types_supported": ["code"],
                                "id_token_signing_alg_values_supported": ["RS256"]})
                elif self.path == "/oauth/jwks":
                    self._json({"keys": [stub.key.as_dict(private=False)]})
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                from urllib.parse import parse_qs

                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                claims = stub.codes.pop(form.get("code", [""])[0], None)
                if self.path != "/oauth/token" or claims is None:
                    self._json({"error": "invalid_grant"}, 400)
                    return
                now = int(time.time())
                id_claims = {"iss": stub.url, "aud": CLIENT_ID, "sub": "user-" + claims["preferred_username"],
                             "iat": now, "exp": now + 3600, **{k: v for k, v in claims.items() if v is not None}}
                token = jwt.encode({"alg": "RS256", "kid": "test-key"}, id_claims, stub.key)
                self._json({"access_token": "at-" + claims["preferred_username"], "token_type": "bearer",
                            "expires_in": 3600, "scope": "openid profile", "id_token": token})

        return Handler
