"""Schemathesis hook for scripts/fuzz_api.sh: every request carries a fresh access token.

The fuzzer signs in through the API itself (the original's form at /api/auth/sign-in),
at most once a second: a generated `POST /auth/sign-out-everywhere` revokes every token
issued before it, and without a new one the rest of the run would only test 401s.
"""

import json
import os
import urllib.parse
import urllib.request

import schemathesis

BASE = os.environ["FUZZ_BASE_URL"]
EMAIL = os.environ["FUZZ_EMAIL"]
PASSWORD = os.environ["FUZZ_PASSWORD"]


def sign_in() -> str:
    form = urllib.parse.urlencode(
        {"grant_type": "password", "username": EMAIL, "password": PASSWORD}
    ).encode()
    request = urllib.request.Request(f"{BASE}/api/auth/sign-in", data=form)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access_token"]


@schemathesis.auth(refresh_interval=1)
class SignedIn:
    def get(self, case, ctx):
        return sign_in()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
