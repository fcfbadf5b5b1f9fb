"""Mutation fuzzing of raw HTTP requests against a running hookyard (used by tests/it/fuzz.rs).

Takes seed requests (exact bytes, one file each), mutates them with radamsa (pyradamsa),
sends each mutant on its own connection and reads the status line of the reply. Prints one
JSON summary: how many were sent, the statuses seen, the 2xx count, the replies that never
came, and every 5xx with the seed it came from and the mutant's first bytes.

    python mutate.py HOST PORT SECONDS SEED_DIR
"""

import json
import os
import random
import socket
import sys
import time

import pyradamsa


def send(host, port, data, timeout=3.0):
    """The reply's status code and body, or (None, b"") when none came in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(data)
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            reply = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        pass
    line = reply.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1]), reply.split(b"\r\n\r\n", 1)[-1]
    return None, b""


def main():
    host, port, seconds, seed_dir = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    seeds = {}
    for name in sorted(os.listdir(seed_dir)):
        with open(os.path.join(seed_dir, name), "rb") as f:
            seeds[name] = f.read()
    rng = random.Random(20261201)
    radamsa = pyradamsa.Radamsa()
    summary = {"sent": 0, "statuses": {}, "accepted": 0, "unanswered": 0, "server_errors": []}
    until = time.monotonic() + seconds
    n = 0
    while time.monotonic() < until:
        name = rng.choice(sorted(seeds))
        mutant = radamsa.fuzz(seeds[name], seed=n, max_mut=len(seeds[name]) + 4096)
        n += 1
        status, body = send(host, port, mutant)
        summary["sent"] += 1
        if status is None:
            summary["unanswered"] += 1
            continue
        summary["statuses"][str(status)] = summary["statuses"].get(str(status), 0) + 1
        # Wattmon answers 200 either way: its body says whether the block was taken.
        if 200 <= status < 300 and not body.startswith(b"ERROR"):
            summary["accepted"] += 1
        if status >= 500:
            summary["server_errors"].append({"seed": name, "status": status, "request": mutant[:300].hex()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
