"""The todo binary itself (examples/todo/main.c): flags, --self-test, a request over HTTP,
SIGTERM exits 0, and the data is in the SQLite file for the next start. The API contract is
tested in-process by test_todo.c; this checks only what main.c adds.

    python3 test_todo_binary.py --todo build/examples/todo/todo
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request


def start(todo, db):
    p = subprocess.Popen([todo, "--port", "0", "--db", db, "--token", "a", "--token", "b"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+)/", line)
    assert m, "no start-up line: %r" % line
    return p, int(m.group(1))


def stop(p):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=15) == 0, "exit code %r" % p.returncode


def call(port, method, path, token=None, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--todo", required=True)
    args = ap.parse_args()
    usage = subprocess.run([args.todo, "--port", "1"], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and "usage" in usage.stderr, "no token must be refused"
    with tempfile.TemporaryDirectory() as tmp:
        st = subprocess.run([args.todo, "--self-test"], capture_output=True, text=True,
                            timeout=30, cwd=tmp)
        assert st.returncode == 0 and '"self-test"' in st.stdout, st
        assert os.listdir(tmp) == [], "the scratch database is removed: %r" % os.listdir(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "todo.db")
        p, port = start(args.todo, db)
        try:
            assert call(port, "GET", "/todos")[0] == 401
            status, doc = call(port, "POST", "/todos", "b", {"title": "t\u00e9 \U0001F600"})
            assert status == 201 and doc["title"] == "t\u00e9 \U0001F600", (status, doc)
        finally:
            stop(p)
        assert os.path.getsize(db) > 0
        p, port = start(args.todo, db)
        try:
            status, doc = call(port, "GET", "/todos", "a")
            assert status == 200 and [t["title"] for t in doc] == ["t\u00e9 \U0001F600"], doc
        finally:
            stop(p)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL:", e)
        print("0 passed, 1 failed")
        sys.exit(1)
