#!/usr/bin/env python3
"""How much of each proxy's CPU was the kernel's, from the samples launch-perf.sh recorded.

A proxy's CPU per unit of work is user time (its own code) plus kernel time (the syscalls it
makes: on loopback a send also runs the receiver's TCP input). No change to the proxy's own code
can take its CPU per unit below its kernel time, so kernel time / the other proxy's total CPU is
the lowest ratio reachable without making fewer or cheaper syscalls.

Record one test per PERF_DIR (perf-compare.sh -t TEST), so that the runs in a folder are alike.

usage: benches/proxy/cpu_split.py PERF_DIR
"""
import glob, os, re, statistics, subprocess, sys

def kernel_share(path):
    """The share of one recording's samples taken in the kernel."""
    out = subprocess.run(["perf", "report", "-i", path, "--stdio", "--sort", "dso,sym"],
                         capture_output=True, text=True, check=True).stdout
    kernel = total = 0.0
    for line in out.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+\S+\s+\[(.)\]", line)
        if not m:
            continue
        total += float(m[1])
        if m[2] == "k":
            kernel += float(m[1])
    if total == 0:
        sys.exit(f"{path}: no samples")
    return kernel / total

def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = {}
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.data")), key=os.path.getmtime):
        proxy = os.path.basename(path).rsplit("-", 1)[0]
        share = kernel_share(path)
        runs.setdefault(proxy, []).append(share)
        print(f"{os.path.basename(path):28} kernel {share:6.1%}")
    print()
    for proxy, s in sorted(runs.items()):
        print(f"{proxy:12} kernel share, median of {len(s)}: {statistics.median(s):.1%}")

if __name__ == "__main__":
    main()
