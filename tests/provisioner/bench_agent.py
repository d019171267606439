"""Benchmark: the deploy agent's image write throughput against plain ``tar -x`` of the same image.

    python tests/provisioner/bench_agent.py [--size-mb 256] [--runs 3]

Builds an OS-like tar image (many small files and some large ones), starts the real provisioner under
uvicorn on loopback, and measures side by side, alternating, in one run:
  * baseline: ``tar -x -f image.tar -C dir && sync`` (local file, page cache warm);
  * reference: ``curl URL | tar -x`` (the same HTTP transport, no checksum, no staging);
  * agent: ``agent.sh`` deploying the image (manifest, HTTP stream, sha256 while streaming, staging + move
    into place, cloud-init seed, reports) to a directory target.
Prints the medians and the ratio agent/baseline throughput (target >= 0.80, DESIGN.md)."""

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ingot_provtest import AGENT, Server, http  # noqa: E402  pylint: disable=wrong-import-position


def build_image(workdir, size_mb):
    """~size_mb of files: 60% in 4-64 KiB files (an OS's /usr), the rest in a few large ones."""
    src = os.path.join(workdir, "src")
    rng = random.Random(42)
    chunk = os.urandom(1 << 20)
    small_budget = int(size_mb * 0.6) << 20
    written, i = 0, 0
    while written < small_budget:
        d = os.path.join(src, "usr", f"lib{i % 40}", f"pkg{i % 400}")
        os.makedirs(d, exist_ok=True)
        n = rng.randint(4, 64) << 10
        with open(os.path.join(d, f"f{i}.so"), "wb") as fh:
            off = rng.randint(0, len(chunk) - n)
            fh.write(chunk[off:off + n])
        written, i = written + n, i + 1
    big = os.path.join(src, "var", "cache")
    os.makedirs(big)
    remaining = (size_mb << 20) - written
    j = 0
    while remaining > 0:
        n = min(remaining, 32 << 20)
        with open(os.path.join(big, f"big{j}.bin"), "wb") as fh:
            for dummy in range(n >> 20):
                fh.write(chunk)
            fh.write(chunk[:n & ((1 << 20) - 1)])
        remaining, j = remaining - n, j + 1
    os.makedirs(os.path.join(src, "etc"))
    with open(os.path.join(src, "etc", "hostname"), "w", encoding="ascii") as fh:
        fh.write("bench\n")
    return src, i + j


def timed(cmd, **kw):
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({res.returncode}): {res.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None,
                        help="where image and targets live (default $TMPDIR; /dev/shm measures the pipeline "
                             "without the disk)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ingot-bench-agent-", dir=args.dir)
    server = Server(os.path.join(work, "srv"))
    os.makedirs(server.workdir)
    try:
        t0 = time.perf_counter()
        src, nfiles = build_image(work, args.size_mb)
        image = os.path.join(server.workdir, "images", "bench.tar")
        os.makedirs(os.path.dirname(image))
        subprocess.run(["tar", "-C", src, "--numeric-owner", "-cf", image, "."], check=True)
        size = os.path.getsize(image)
        with open(image, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else \
                hashlib.sha256(fh.read()).hexdigest()
        shutil.rmtree(src)
        print(f"image: {size / 1e6:.0f} MB, {nfiles} files (built in {time.perf_counter() - t0:.1f} s)")

        server.start()
        status, body = server.api("POST", "/api/v1/images", {"name": "bench", "url": "bench.tar", "sha256": digest,
                                                             "format": "tar", "size": size})
        assert status == 201, body
        server.api("POST", "/api/v1/nodes", {"name": "bench1", "macs": ["02:00:00:00:99:01"], "pool": "bench"})
        server.api("POST", "/api/v1/allocations", {"owner": "bench", "name": "b", "pool": "bench"})

        results = {"tar -x (local file)": [], "curl | tar -x": [], "agent.sh": []}
        print(f"targets in {work}; each method ends with sync; {args.runs} runs, alternating")
        env = {"PATH": os.environ["PATH"], "INGOT_CMDLINE": "/dev/null", "INGOT_REBOOT_CMD": "true",
               "INGOT_PROGRESS_INTERVAL": "2", "TMPDIR": work}
        for run in range(args.runs):
            for label in results:
                target = os.path.join(work, f"t-{run}-{label[:4].strip()}")
                os.makedirs(target)
                # every method ends with sync: a deploy is written when it is on the disk (the agent
                # syncs before it reports and reboots)
                if label.startswith("tar"):
                    elapsed = timed(["sh", "-c", f'tar -x -f "$0" -C "{target}" && sync', image])
                elif label.startswith("curl"):
                    elapsed = timed(["sh", "-c", f'curl -fsS "$0" | tar -x -f - -C "{target}" && sync',
                                     f"{server.url}/images/bench.tar"])
                else:
                    node = server.api("GET", "/api/v1/nodes/bench1")[1]
                    if node["state"] == "deployed":
                        server.api("POST", "/api/v1/nodes/bench1/release", {"wipe": True})
                        # a wipe report through the agent's own endpoint puts the node back in the pool
                        script = http("GET", f"{server.url}/boot/ipxe?mac=02:00:00:00:99:01")[1]
                        token = script.split("ingot.token=")[1].split()[0]
                        http("POST", f"{server.url}/agent/report", {"status": "succeeded", "message": "bench"},
                             token=token)
                        server.api("POST", "/api/v1/allocations", {"owner": "bench", "name": "b", "pool": "bench"})
                    server.api("POST", "/api/v1/nodes/bench1/deploy", {"image": "bench"})
                    script = http("GET", f"{server.url}/boot/ipxe?mac=02:00:00:00:99:01")[1]
                    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
                    params = [w for w in kernel.split() if w.startswith("ingot.") and "target" not in w]
                    elapsed = timed(["sh", AGENT, *params, f"ingot.target={target}"], env=env)
                    state = server.api("GET", "/api/v1/nodes/bench1")[1]["state"]
                    assert state == "deployed", state
                results[label].append(elapsed)
                shutil.rmtree(target)
        print(f"{'method':<22} {'median s':>9} {'MB/s':>8}   runs")
        med = {}
        for label, times in results.items():
            med[label] = statistics.median(times)
            print(f"{label:<22} {med[label]:>9.2f} {size / 1e6 / med[label]:>8.0f}   "
                  + " ".join(f"{t:.2f}" for t in times))
        ratio = med["tar -x (local file)"] / med["agent.sh"]
        ratio_http = med["curl | tar -x"] / med["agent.sh"]
        print(f"ratio agent/plain tar throughput: {ratio:.2f} (target >= 0.80: "
              f"{'met' if ratio >= 0.8 else 'NOT met'}); agent/curl|tar: {ratio_http:.2f}")
        return 0
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
