"""schemathesis hooks for hookyard's own tests.

gridX requests must carry an X-Signature over the exact body bytes: serialise the generated
body here, send those bytes, and sign them with the test server's secret. gridX refuses
events whose `time` is outside its freshness window, so a generated event's time is now.
"""

import hashlib
import hmac
import datetime
import json
import os

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    if not case.operation.path.startswith("/gridx/"):
        return
    body = case.body
    if type(body).__name__ == "NotSet":
        body = b""  # no body is sent: sign the empty body
    elif not isinstance(body, bytes):
        if isinstance(body, dict) and "time" in body:
            body["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        body = json.dumps(body).encode("utf-8")
        case.body = body
    secret = os.environ["HOOKYARD_GRIDX_SECRET"].encode("utf-8")
    headers = dict(case.headers or {})
    headers["X-Signature"] = "sha512=" + hmac.new(secret, body, hashlib.sha512).hexdigest()
    case.headers = headers
