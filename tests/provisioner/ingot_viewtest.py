"""Helpers of the web view's tests (tests/provisioner/test_view.py, tests/browser, tests/bench/bench_webview.py):
a node driven through the real admin and agent routes, a logged-in HTTP client, an SSE reader."""

import contextlib
import json
import re
import threading
import time

import httpx

VIEW_TOKEN = "test-view-token-fedcba9876543210"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7fakefakefakefakefakefakefakefakefakefake user@host"
IMAGE_SIZE = 10 * 1024 * 1024


def api(srv, method, path, body=None, expect=(200, 201, 204)):
    status, out = srv.api(method, path, body)
    assert status in expect, f"{method} {path}: {status} {out}"
    return out


def add_image(srv, name="deb12", size=IMAGE_SIZE):
    return api(srv, "PUT", f"/api/v1/images/{name}",
               {"name": name, "url": f"{name}.tar", "sha256": "ab" * 32, "format": "tar", "size": size})


def add_node(srv, name, mac, pool="rack1", **extra):
    body = {"name": name, "macs": [mac], "pool": pool, "tags": ["ssd"],
            "facts": {"cpus": 8, "memory_mib": 16384, "disk_gib": 200},
            "bmc": {"address": "127.0.0.1", "port": 6230, "protocol": "ipmi"}}
    body.update(extra)
    return api(srv, "POST", "/api/v1/nodes", body)


def allocate(srv, pool, owner="me", name="builder1"):
    return api(srv, "POST", "/api/v1/allocations", {"owner": owner, "name": name, "pool": pool})


def deploy(srv, node, image="deb12", **extra):
    return api(srv, "POST", f"/api/v1/nodes/{node}/deploy", {"image": image, "ssh_keys": [KEY], **extra})


def release(srv, node):
    return api(srv, "POST", f"/api/v1/nodes/{node}/release", {"wipe": True})


def deploy_token(srv, mac):
    """The one-time token of the iPXE script the node would boot (what the deploy agent gets)."""
    with httpx.Client(timeout=30) as client:
        script = client.get(srv.url + "/boot/ipxe", params={"mac": mac}).text
    found = re.search(r"ingot\.token=(\S+)", script)
    assert found, f"no deploy token in the iPXE script for {mac}:\n{script}"
    return found.group(1)


def agent_report(srv, token, status, **body):
    with httpx.Client(timeout=30) as client:
        resp = client.post(srv.url + "/agent/report", json={"status": status, **body},
                           headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, f"agent report {status}: {resp.status_code} {resp.text}"
    return resp.json()


@contextlib.contextmanager
def logged_in(srv, token=VIEW_TOKEN):
    """An httpx client holding the view's session cookie (from the login form POST)."""
    with httpx.Client(base_url=srv.url, timeout=30, follow_redirects=False) as client:
        resp = client.post("/ui/login", content=f"token={token}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 303, f"login: {resp.status_code} {resp.text[:300]}"
        yield client


class SseReader:
    """Reads an event stream in a thread: ``raw`` (every byte), ``events`` (parsed ``(name, data)``)."""

    def __init__(self, client, path, timeout=60):
        self.client, self.path, self.timeout = client, path, timeout
        self.raw = bytearray()
        self.events = []
        self.status = None
        self.connected = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with self.client.stream("GET", self.path, timeout=httpx.Timeout(30, read=self.timeout)) as resp:
                self.status = resp.status_code
                self.connected.set()
                buf = b""
                for chunk in resp.iter_raw():
                    with self._lock:
                        self.raw += chunk
                    buf += chunk
                    while b"\n\n" in buf:
                        block, buf = buf.split(b"\n\n", 1)
                        name, data = "message", []
                        for line in block.decode("utf-8").split("\n"):
                            if line.startswith("event: "):
                                name = line[7:]
                            elif line.startswith("data: "):
                                data.append(line[6:])
                        if data:
                            with self._lock:
                                self.events.append((name, json.loads("\n".join(data))))
        except httpx.HTTPError:
            pass
        finally:
            self.connected.set()
            self.done.set()

    def wait_for(self, predicate, timeout=30, what="an event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for name, data in self.events:
                    if predicate(name, data):
                        return data
            if self.done.is_set():
                break
            time.sleep(0.05)
        with self._lock:
            seen = [(n, d.get("event", {}).get("kind"), d.get("node", {}).get("state")) for n, d in self.events]
        raise AssertionError(f"the stream {self.path} did not deliver {what} within {timeout} s; it gave {seen}")
