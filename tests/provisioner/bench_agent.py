"""Benchmark: the deploy agent's image write throughput against plain ``tar -x`` of the same image.

    python tests/provisioner/bench_agent.py [--size-mb 256] [--rounds 5] [--short]

Builds an OS-like tar image (many small files and some large ones), starts the real provisioner under
uvicorn on loopback, and measures side by side in one run, ``--rounds`` rounds (at least 5), the order of the
three methods reversed every other round (so neither side always runs on the cache or disk the other left):
  * baseline: ``tar -x -f image.tar -C dir && sync`` (local file, page cache warm);
  * reference: ``curl URL | tar -x`` (the same HTTP transport, no checksum, no staging);
  * agent: ``agent.sh`` deploying the image (manifest, HTTP stream, sha256 while streaming, staging + move
    into place, cloud-init seed, reports) to a directory target.
Each ratio is taken within one round, and the median of the rounds is held against the target: agent
throughput at least 0.80 of plain tar's. Exits 1 when the target is missed. ``--short`` (what ``make test``
runs): a 32 MB image, one round; proves every method runs and prints the ratio, without judging it."""

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

from ingot_provtest import AGENT, Server, http   # this script's folder

ROUNDS = 5
TARGET = 0.80   # agent throughput / plain tar's, at least
BASELINE = "tar -x (local file)"
AGENT_LABEL = "agent.sh"


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


def agent_deploy(server, target, env):
    """One deploy of the image by agent.sh into TARGET (the node released and wiped first, untimed); seconds."""
    node = server.api("GET", "/api/v1/nodes/bench1")[1]
    if node["state"] == "deployed":
        server.api("POST", "/api/v1/nodes/bench1/release", {"wipe": True})
        # a wipe report through the agent's own endpoint puts the node back in the pool
        script = http("GET", f"{server.url}/boot/ipxe?mac=02:00:00:00:99:01")[1]
        token = script.split("ingot.token=")[1].split()[0]
        http("POST", f"{server.url}/agent/report", {"status": "succeeded", "message": "bench"}, token=token)
        server.api("POST", "/api/v1/allocations", {"owner": "bench", "name": "b", "pool": "bench"})
    server.api("POST", "/api/v1/nodes/bench1/deploy", {"image": "bench"})
    script = http("GET", f"{server.url}/boot/ipxe?mac=02:00:00:00:99:01")[1]
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    params = [w for w in kernel.split() if w.startswith("ingot.") and "target" not in w]
    elapsed = timed(["sh", AGENT, *params, f"ingot.target={target}"], env=env)
    state = server.api("GET", "/api/v1/nodes/bench1")[1]["state"]
    assert state == "deployed", state
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds (at least {ROUNDS}; default {ROUNDS})")
    parser.add_argument("--short", action="store_true",
                        help="a 32 MB image, one round: proves the benchmark works, does not judge the ratio")
    parser.add_argument("--dir", default=None,
                        help="where image and targets live (default $TMPDIR; /dev/shm measures the pipeline "
                             "without the disk)")
    args = parser.parse_args()
    if args.short:
        args.size_mb, args.rounds = min(args.size_mb, 32), 1
    elif args.rounds < ROUNDS:
        parser.error(f"--rounds: at least {ROUNDS} in the full form (--short runs one)")

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

        results = {BASELINE: [], "curl | tar -x": [], AGENT_LABEL: []}
        print(f"targets in {work}; each method ends with sync; {args.rounds} round(s), the order reversed every "
              "other round")
        env = {"PATH": os.environ["PATH"], "INGOT_CMDLINE": "/dev/null", "INGOT_REBOOT_CMD": "true",
               "INGOT_PROGRESS_INTERVAL": "2", "TMPDIR": work}
        for run in range(args.rounds):
            order = list(results) if run % 2 == 0 else list(reversed(results))
            for label in order:
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
                    elapsed = agent_deploy(server, target, env)
                results[label].append(elapsed)
                shutil.rmtree(target)
            print(f"  round {run + 1} ({' -> '.join(order)}): "
                  + ", ".join(f"{label} {results[label][-1]:.2f} s" for label in results), flush=True)
        print(f"{'method':<22} {'median s':>9} {'MB/s':>8}   rounds")
        med = {}
        for label, times in results.items():
            med[label] = statistics.median(times)
            print(f"{label:<22} {med[label]:>9.2f} {size / 1e6 / med[label]:>8.0f}   "
                  + " ".join(f"{t:.2f}" for t in times))
        # throughput ratio = time of the baseline / time of the agent, round by round
        paired = [t / a for t, a in zip(results[BASELINE], results[AGENT_LABEL])]
        paired_http = [t / a for t, a in zip(results["curl | tar -x"], results[AGENT_LABEL])]
        ratio = statistics.median(paired)
        print(f"agent/curl|tar throughput: {statistics.median(paired_http):.2f} (median of the rounds)")
        print(f"agent/plain tar throughput: {ratio:.2f} (median of {', '.join(f'{r:.2f}' for r in paired)}); "
              f"baseline tar -x of the local file, target >= {TARGET:.2f}; load average {os.getloadavg()[0]:.1f}")
        if args.short:
            print("bench_agent --short: every method ran; the ratio is not judged in the short form")
            return 0
        met = ratio >= TARGET
        print(f"bench_agent: target {'met' if met else 'MISSED'}: agent/plain tar {ratio:.2f} "
              f"{'>=' if met else '<'} {TARGET:.2f}")
        return 0 if met else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
