"""The deploy agent (agent.sh under /bin/sh) against the real service under uvicorn: images land byte for
byte, bad checksums fail cleanly and leave no OS, retries work, wipe and discovery modes, token reuse."""

import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess

import pytest
import yaml

from ingot_provtest import ADMIN_TOKEN, AGENT, Server, http

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7fakefakefakefakefakefakefakefakefakefake user@host"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("agent-server"), deploy_timeout=120)
    server.start()
    yield server
    server.stop()


def build_tree(root):
    """A small OS-like tree: dirs, executables, symlinks, a hard link, odd names, modes, owners."""
    os.makedirs(root)
    for d in ("etc", "usr/bin", "usr/lib/systemd", "var/empty", "var/log", "tmp", "root"):
        os.makedirs(os.path.join(root, d))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)
    files = {"etc/hostname": b"image\n", "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
             "usr/bin/hello": b"#!/bin/sh\necho hello\n", "usr/lib/systemd/systemd": b"\x7fELF fake init\n",
             "etc/shadow": b"root:*:19000:0:99999:7:::\n", "root/.profile": b"# profile\n",
             "etc/file with spaces": b"spaces\n", "var/log/empty.log": b"", ".hidden": b"dot\n",
             "usr/lib/blob.bin": os.urandom(3 * 1024 * 1024)}
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
    os.chmod(os.path.join(root, "usr/bin/hello"), 0o755)
    os.chmod(os.path.join(root, "usr/lib/systemd/systemd"), 0o755)
    os.chmod(os.path.join(root, "etc/shadow"), 0o640)
    os.chown(os.path.join(root, "etc/shadow"), 0, 42)
    os.chown(os.path.join(root, "var/log"), 1234, 5678)
    os.symlink("usr/bin", os.path.join(root, "bin"))
    os.symlink("usr/lib", os.path.join(root, "lib"))
    os.symlink("/etc/hostname", os.path.join(root, "etc/hostname-link"))
    os.link(os.path.join(root, "usr/bin/hello"), os.path.join(root, "usr/bin/hello-again"))


def snapshot(root, skip_seed=False):
    """{relative path: (type, mode, uid, gid, content sha256 | link target)} of a tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", None)
            else:
                with open(full, "rb") as fh:
                    what = ("file", hashlib.sha256(fh.read()).hexdigest(), int(st.st_mtime))
            out[rel] = (what, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if skip_seed:
        out = {k: v for k, v in out.items() if not k.startswith("var/lib")}
    return out


def make_image(srv, tmp_path, name, fmt="tar", sha256=None, register=True):
    src = tmp_path / f"{name}-src"
    build_tree(str(src))
    image_file = os.path.join(srv.workdir, "images", f"{name}.{fmt}")
    subprocess.run(["tar", "-C", str(src), "--numeric-owner", "-cf", image_file.replace(".tar.gz", ".tar"), "."],
                   check=True)
    if fmt == "tar.gz":
        with open(image_file.replace(".tar.gz", ".tar"), "rb") as fh, gzip.open(image_file, "wb", 1) as gz:
            shutil.copyfileobj(fh, gz)
        os.unlink(image_file.replace(".tar.gz", ".tar"))
    with open(image_file, "rb") as fh:
        real = hashlib.sha256(fh.read()).hexdigest()
    if register:
        status, body = srv.api("POST", "/api/v1/images", {"name": name, "url": os.path.basename(image_file),
                                                          "sha256": sha256 or real, "format": fmt,
                                                          "size": os.path.getsize(image_file)})
        assert status == 201, body
    return str(src), real


def new_node(srv, name, mac, image=None, user_data=None):
    status, body = srv.api("POST", "/api/v1/nodes", {"name": name, "macs": [mac], "pool": name})
    assert status == 201, body
    status, body = srv.api("POST", "/api/v1/allocations", {"owner": "tester", "name": f"{name}-host", "pool": name})
    assert status == 201, body
    if image:
        deploy(srv, name, image, user_data)


def deploy(srv, name, image, user_data=None):
    body = {"image": image, "ssh_keys": [KEY]}
    if user_data:
        body["user_data"] = user_data
    status, out = srv.api("POST", f"/api/v1/nodes/{name}/deploy", body)
    assert status == 200, out
    return out


def boot_params(srv, mac):
    status, script = http("GET", f"{srv.url}/boot/ipxe?mac={mac}")
    assert status == 200 and script.startswith("#!ipxe")
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    return [w for w in kernel.split() if w.startswith("ingot.")]


def run_agent(tmp_path, params, target, **env):
    marker = tmp_path / "rebooted"
    if marker.exists():
        marker.unlink()
    params = [p for p in params if not p.startswith("ingot.target=")] + [f"ingot.target={target}"]
    full_env = {"PATH": os.environ["PATH"], "INGOT_CMDLINE": "/dev/null", "INGOT_PROGRESS_INTERVAL": "0.2",
                "INGOT_REBOOT_CMD": f"touch {marker}", "TMPDIR": str(tmp_path)}
    full_env.update(env)
    res = subprocess.run(["sh", AGENT] + params, env=full_env, capture_output=True, text=True, timeout=180,
                         check=False)
    return res, marker.exists()


def events(srv, name):
    return srv.api("GET", f"/api/v1/nodes/{name}/events")[1]["items"]


def node(srv, name):
    return srv.api("GET", f"/api/v1/nodes/{name}")[1]


def test_good_image_lands_byte_for_byte(srv, tmp_path):
    src, real = make_image(srv, tmp_path, "good")
    user_data = "#cloud-config\nruncmd:\n  - [touch, /ran]\n"
    new_node(srv, "g1", "02:00:00:00:20:01", image="good", user_data=user_data)
    target = tmp_path / "disk"
    target.mkdir()
    params = boot_params(srv, "02:00:00:00:20:01")
    token = next(p.split("=", 1)[1] for p in params if p.startswith("ingot.token="))
    assert "ingot.mode=deploy" in params
    res, rebooted = run_agent(tmp_path, params, target)
    assert res.returncode == 0, res.stderr
    assert rebooted, "the reboot hook did not run"
    assert snapshot(str(target), skip_seed=True) == snapshot(src)
    assert not (target / ".ingot-staging").exists()

    seed = target / "var/lib/cloud/seed/nocloud"
    assert stat.S_IMODE(os.stat(seed / "user-data").st_mode) == 0o600
    cfg = yaml.safe_load((seed / "user-data").read_text())
    meta = yaml.safe_load((seed / "meta-data").read_text())
    n = node(srv, "g1")
    assert n["state"] == "deployed" and n["last_error"] is None
    assert meta["local-hostname"] == "g1-host" and cfg["hostname"] == "g1-host"
    assert cfg["ssh_keys"]["ed25519_public"] == n["ssh_host_keys"]["ed25519"]
    assert cfg["ssh_authorized_keys"] == [KEY] and cfg["runcmd"] == [["touch", "/ran"]]
    assert n["ip_address"] == "127.0.0.1"

    evs = events(srv, "g1")
    final = [e for e in evs if e["kind"] == "agent_report" and e["data"]["status"] == "succeeded"]
    assert len(final) == 1 and final[0]["data"]["sha256"] == real and "good" in final[0]["message"]
    assert any(e["kind"] == "agent_progress" for e in evs)

    # the token is spent: a second manifest fetch with it is refused, and so is the agent
    status, body = http("GET", f"{srv.url}/agent/manifest", token=token)
    assert status == 403 and body["code"] == "token_revoked"
    before = snapshot(str(target))
    res, rebooted = run_agent(tmp_path, params, target)
    assert res.returncode != 0 and not rebooted and "refused (HTTP 403)" in res.stderr
    assert snapshot(str(target)) == before and node(srv, "g1")["state"] == "deployed"
    # and no token ever reached the service log
    assert token not in srv.log() and token[4:20] not in srv.log()
    assert ADMIN_TOKEN not in srv.log()


def test_bad_checksum_then_retry(srv, tmp_path):
    wrong = "0" * 64
    src, real = make_image(srv, tmp_path, "corrupt", sha256=wrong)
    new_node(srv, "b1", "02:00:00:00:21:01", image="corrupt")
    target = tmp_path / "disk"
    target.mkdir()
    res, rebooted = run_agent(tmp_path, boot_params(srv, "02:00:00:00:21:01"), target)
    assert res.returncode == 1 and not rebooted
    n = node(srv, "b1")
    assert n["state"] == "deploy_failed"
    report = [e for e in events(srv, "b1") if e["kind"] == "agent_report"][-1]
    assert report["data"]["status"] == "failed"
    for part in ("checksum mismatch", "'corrupt'", wrong, real):
        assert part in report["message"], report["message"]
    assert wrong in n["last_error"] and real in n["last_error"]
    assert os.listdir(target) == [], "a failed deploy left files behind"

    # retry with the right image: deploy_failed -> deploying -> deployed
    make_image(srv, tmp_path, "fixed")
    deploy(srv, "b1", "fixed")
    res, rebooted = run_agent(tmp_path, boot_params(srv, "02:00:00:00:21:01"), target)
    assert res.returncode == 0 and rebooted, res.stderr
    assert node(srv, "b1")["state"] == "deployed"
    assert snapshot(str(target), skip_seed=True) == snapshot(str(tmp_path / "fixed-src"))


def test_tar_gz_deploy_then_wipe(srv, tmp_path):
    src = make_image(srv, tmp_path, "gz", fmt="tar.gz")[0]
    new_node(srv, "z1", "02:00:00:00:22:01", image="gz")
    target = tmp_path / "disk"
    target.mkdir()
    res = run_agent(tmp_path, boot_params(srv, "02:00:00:00:22:01"), target)[0]
    assert res.returncode == 0, res.stderr
    assert snapshot(str(target), skip_seed=True) == snapshot(src)

    status, body = srv.api("POST", "/api/v1/nodes/z1/release", {"wipe": True})
    assert status == 200 and body["state"] == "releasing"
    params = boot_params(srv, "02:00:00:00:22:01")
    assert "ingot.mode=wipe" in params
    res, rebooted = run_agent(tmp_path, params, target)
    assert res.returncode == 0 and rebooted, res.stderr
    assert os.listdir(target) == []
    n = node(srv, "z1")
    assert n["state"] == "ready" and n["owner"] is None and n["ssh_host_keys"] == {} and n["image"] is None
    assert any(e["kind"] == "agent_report" and "wipe done" in e["message"] for e in events(srv, "z1"))


def test_download_failure(srv, tmp_path):
    srv.api("POST", "/api/v1/images", {"name": "gone", "url": "gone.tar", "sha256": "1" * 64, "format": "tar"})
    new_node(srv, "d1", "02:00:00:00:23:01", image="gone")
    target = tmp_path / "disk"
    target.mkdir()
    res, rebooted = run_agent(tmp_path, boot_params(srv, "02:00:00:00:23:01"), target)
    assert res.returncode == 1 and not rebooted
    assert node(srv, "d1")["state"] == "deploy_failed"
    assert "download of image 'gone'" in node(srv, "d1")["last_error"]
    assert os.listdir(target) == []


def test_raw_image_to_a_device_file(srv, tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 123)
    with open(os.path.join(srv.workdir, "images", "disk.raw"), "wb") as fh:
        fh.write(data)
    real = hashlib.sha256(data).hexdigest()
    srv.api("POST", "/api/v1/images", {"name": "rawimg", "url": "disk.raw", "sha256": real, "format": "raw"})
    srv.api("POST", "/api/v1/images", {"name": "rawbad", "url": "disk.raw", "sha256": "2" * 64, "format": "raw"})
    new_node(srv, "w1", "02:00:00:00:24:01", image="rawbad")
    target = tmp_path / "disk.img"
    target.write_bytes(b"old OS" * 1000)
    res = run_agent(tmp_path, boot_params(srv, "02:00:00:00:24:01"), target)[0]
    assert res.returncode == 1 and node(srv, "w1")["state"] == "deploy_failed"
    assert target.read_bytes() == b"", "a raw image with a bad checksum must not stay on the target"
    deploy(srv, "w1", "rawimg")
    res = run_agent(tmp_path, boot_params(srv, "02:00:00:00:24:01"), target)[0]
    assert res.returncode == 0, res.stderr
    assert target.read_bytes() == data and node(srv, "w1")["state"] == "deployed"


def test_discovery_mode(srv, tmp_path):
    net = tmp_path / "net"
    for iface, mac in (("lo", "00:00:00:00:00:00"), ("eth0", "02:00:00:aa:bb:cc"), ("eth1", "02:00:00:aa:bb:cd"),
                       ("ib0", "80:00:00:48:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01")):
        (net / iface).mkdir(parents=True)
        (net / iface / "address").write_text(mac + "\n")
    disk = tmp_path / "disk"
    disk.mkdir()
    res, done = run_agent(tmp_path, [f"ingot.url={srv.url}", "ingot.mode=discover"], disk,
                          INGOT_SYSFS_NET=str(net), INGOT_DISCOVER_DONE_CMD=f"touch {tmp_path}/rebooted")
    assert res.returncode == 0 and done, res.stderr
    n = node(srv, "node-020000aabbcc")
    assert n["state"] == "discovered" and n["macs"] == ["02:00:00:aa:bb:cc", "02:00:00:aa:bb:cd"]
    assert n["facts"]["cpus"] == os.cpu_count()
    assert n["facts"]["memory_mib"] > 100 and n["facts"]["disk_gib"] >= 1
    assert n["facts"]["arch"] == os.uname().machine
    # the iPXE script of a discovered node that has reported its hardware boots the local disk
    status, script = http("GET", f"{srv.url}/boot/ipxe?mac=02:00:00:aa:bb:cc")
    assert "sanboot" in script


def test_agent_usage_errors(tmp_path):
    env = {"PATH": os.environ["PATH"], "INGOT_CMDLINE": "/dev/null"}
    res = subprocess.run(["sh", AGENT], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 2 and "no provisioner URL" in res.stderr
    res = subprocess.run(["sh", AGENT, "ingot.url=http://127.0.0.1:9"], env=env, capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode == 2 and "no deploy token" in res.stderr
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=/vmlinuz ingot.url=http://127.0.0.1:9 ingot.mode=bogus quiet\n")
    res = subprocess.run(["sh", AGENT], env=dict(env, INGOT_CMDLINE=str(cmdline)), capture_output=True, text=True,
                         timeout=30, check=False)
    assert res.returncode == 2 and "unknown mode 'bogus'" in res.stderr
    helped = subprocess.run(["sh", AGENT, "--help"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert re.search(r"deploy agent", helped.stdout)


def test_agent_script_is_served(srv):
    status, text = http("GET", f"{srv.url}/agent/agent.sh")
    with open(AGENT, encoding="utf-8") as fh:
        assert status == 200 and text == fh.read()
