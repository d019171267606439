"""The BMC fleet benchmark: power status of every vBMC from one client process (pyghmi, threads).

Each BMC gets a fresh session (login, Get Chassis Status, Close Session), as a fleet task that
does not keep sessions would; credentials are bytes (pyghmi quirk 3) and the client-side fixes
of plugins/module_utils/pyghmi_compat.py (quirks 5 and 6, and the race-safe receive) are applied.
"""

import concurrent.futures
import statistics
import time

from ingot_lab import apply_pyghmi_compat, load_pyghmi_compat

compat = load_pyghmi_compat()


def power_sweep(targets, threads=20, logout=True):
    """Read the power state of every ``(host, port, user, password)``; return (seconds, results)
    where results maps port to 'on'/'off' or an error string."""
    apply_pyghmi_compat((compat.CLIENT, compat.IO))
    from pyghmi.ipmi import command

    def one(target):
        host, port, user, password = target
        cmd = command.Command(bmc=host, userid=user.encode(), password=password.encode(), port=port)
        try:
            return cmd.get_power()['powerstate']
        finally:
            if logout:
                cmd.ipmi_session.logout()

    results = {}
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        futures = {pool.submit(one, t): t[1] for t in targets}
        for future in concurrent.futures.as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except Exception as err:   # reported per BMC, the sweep goes on
                results[futures[future]] = 'error: %s' % (err,)
    return time.monotonic() - started, results


def run(targets, threads=20, rounds=3):
    """Run ``rounds`` sweeps; return a summary dict (times in seconds)."""
    times, failures = [], 0
    for _round in range(rounds):
        elapsed, results = power_sweep(targets, threads)
        times.append(elapsed)
        failures += sum(1 for r in results.values() if r not in ('on', 'off'))
    return {'bmcs': len(targets), 'threads': threads, 'rounds': rounds, 'times': times,
            'median': statistics.median(times), 'best': min(times), 'failures': failures}
