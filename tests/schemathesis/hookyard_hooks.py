"""schemathesis hooks for hookyard's own tests.

gridX requests must carry an X-Signature over the exact body bytes: serialise the generated
body here, send those bytes, and sign them with the test server's secret. gridX refuses
events whose `time` is outside its freshness window, so a generated event's time is now.

The management API's path ids are drawn half of the time from the rows the test seeded
(`HOOKYARD_*_IDS`), a log-in or a reveal carries the right admin token half of the time, the
session's own calls carry a fresh session's cookie and CSRF token, and the live log's stream
is read for a moment only. Every management answer is recorded as `METHOD path status` in
`HOOKYARD_ANSWERS`, so the test can tell which real rows were reached.
"""

import datetime
import hashlib
import hmac
import json
import os

import requests
import schemathesis
from hypothesis import strategies as st

# Which seeded values a path parameter takes, by the operation's path prefix and its name.
SEEDED = [
    ("/api/series/", "id", "HOOKYARD_SERIES_IDS", str),
    ("/api/rejected/", "id", "HOOKYARD_REJECTED_IDS", int),
    ("/api/events/", "id", "HOOKYARD_EVENT_IDS", int),
    ("/api/setup/", "protocol", "HOOKYARD_PROTOCOLS", str),
]


def _path(context):
    return context.operation.path if context.operation is not None else ""


def _seeded(path, name):
    for prefix, param, variable, kind in SEEDED:
        if path.startswith(prefix) and param == name and os.environ.get(variable):
            return [kind(v) for v in os.environ[variable].split(",")]
    return None


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    path, drawn = _path(context), st.just(path_parameters)
    for name in list(path_parameters or {}):
        values = _seeded(path, name)
        if values:
            real = st.sampled_from(values).map(lambda v, n=name: {**path_parameters, n: v})
            drawn = st.one_of(drawn, real)
    return drawn


@schemathesis.hook
def flatmap_body(context, body):
    token = os.environ.get("HOOKYARD_ADMIN_TOKEN")
    path = _path(context)
    if token and isinstance(body, dict) and "token" in body and (path == "/api/session" or path.endswith("/reveal")):
        return st.one_of(st.just(body), st.just({**body, "token": token}))
    return st.just(body)


def _log_in():
    """A fresh session: its cookie and CSRF token."""
    base = os.environ["HOOKYARD_BASE_URL"]
    answer = requests.post(base + "/api/session", json={"token": os.environ["HOOKYARD_ADMIN_TOKEN"]}, timeout=5)
    return answer.cookies.get("hookyard_session"), answer.json()["csrf_token"]


def _sign_gridx(case):
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


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if path.startswith("/gridx/"):
        _sign_gridx(case)
    elif path == "/api/session" and case.method.upper() in ("GET", "DELETE"):
        cookie, csrf = _log_in()
        case.cookies = {**(case.cookies or {}), "hookyard_session": cookie}
        case.headers = {**(case.headers or {}), "X-CSRF-Token": csrf}
    elif path == "/api/log/stream":
        kwargs["timeout"] = 1  # an event stream never ends: read it for a second


@schemathesis.hook
def after_call(context, case, response):
    answers = os.environ.get("HOOKYARD_ANSWERS")
    if answers and case.operation.path.startswith("/api/"):
        with open(answers, "a", encoding="utf-8") as out:
            out.write(f"{case.method.upper()} {case.operation.path} {response.status_code}\n")
