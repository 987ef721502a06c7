#!/usr/bin/env python3
"""Aggregate benches/proxy/run.sh raw results: a text report (median, spread, ratios, CPU
placement) or, with --markdown, one markdown table with every repetition's figure."""
import json, os, re, statistics, sys

args = [a for a in sys.argv[1:] if a != "--markdown"]
MD = "--markdown" in sys.argv[1:]
outdir = args[0]
clk = float(args[1]) if len(args) > 1 else 100.0
NOISY = float(os.environ.get("NOISY_PCT", 25))   # oth% above this marks a run as disturbed
rows = []
with open(os.path.join(outdir, "raw.tsv")) as f:
    hdr = f.readline().rstrip("\n").split("\t")
    for line in f:
        rows.append(dict(zip(hdr, line.rstrip("\n").split("\t"))))

TESTS = {
    "iperf1":    ("bulk throughput, iperf3 -P1", "Gbit/s", "CPU ms/GB"),
    "iperf4":    ("bulk throughput, iperf3 -P4", "Gbit/s", "CPU ms/GB"),
    "shortconn": ("short connections (HTTP req/resp + Connection: close)", "conn/s", "CPU us/conn"),
    "keepalive": ("keep-alive HTTP requests", "req/s", "CPU us/req"),
    "tls":       ("TLS1.3 full handshakes (+tiny GET, Connection: close)", "hs/s", "CPU us/hs"),
}

def cpustat(s):
    d = {}
    for tok in s.split():
        name, busy, tot, steal = tok.split(":")
        d[name] = (int(busy), int(tot), int(steal))
    return d

def parse(r):
    txt = open(r["out"]).read()
    res = {"ok": r["rc"] == "0", "errs": 0, "p50": None, "p99": None}
    if r["test"].startswith("iperf"):
        try:
            j = json.loads(txt[txt.index("{"):])
            if "error" in j:
                res["ok"] = False; res["why"] = j["error"]
            e = j["end"]["sum_received"]
            res["metric"] = e["bits_per_second"] / 1e9
            res["units"] = e["bytes"] / 1e9           # GB moved
            res["retr"] = j["end"].get("sum_sent", {}).get("retransmits", 0)
        except Exception as ex:
            res["ok"] = False; res["why"] = str(ex)[:80]
    else:
        m = re.search(r"WRKRESULT (.*)", txt)
        if not m:
            res["ok"] = False; res["why"] = "no wrk result"
        else:
            kv = {k: float(v) for k, v in (x.split("=") for x in m.group(1).split())}
            res["metric"] = kv["requests"] / (kv["duration_us"] / 1e6)
            res["units"] = kv["requests"]
            res["errs"] = int(sum(v for k, v in kv.items() if k.startswith("err_")))
            res["p50"] = kv["p50_us"] / 1000.0
            res["p99"] = kv["p99_us"] / 1000.0
    wall = int(r["wall_us"]) / 1e6
    cpu = int(r["proxy_ticks"]) / clk
    res["wall"] = wall
    res["proxied"] = r["target"] != "direct"
    res["cpu_pct"] = 100.0 * cpu / wall if res["proxied"] else None
    if res["proxied"] and res.get("units"):
        res["cpu_per_unit"] = cpu * 1e3 / res["units"] if r["test"].startswith("iperf") else cpu * 1e6 / res["units"]
    else:
        res["cpu_per_unit"] = None
    res["client_pct"] = 100.0 * int(r.get("client_ticks", 0)) / clk / wall
    res["backend_pct"] = 100.0 * int(r.get("backend_ticks", 0)) / clk / wall
    res["noisy"] = None
    res["rss_mb"] = int(r["hwm_kb"]) / 1024.0 if res["proxied"] else None
    a, b = cpustat(r["cpustat0"]), cpustat(r["cpustat1"])
    res["cpus"] = {}
    tot_busy = 0.0
    for n in sorted(a):
        db, dt, ds = (b[n][i] - a[n][i] for i in range(3))
        res["cpus"][n] = (100.0 * db / dt if dt else 0, 100.0 * ds / dt if dt else 0)
        tot_busy += res["cpus"][n][0]
    # everything busy that is not proxy, backends or client: other processes + unattributed irq
    res["other_pct"] = tot_busy - (res["cpu_pct"] or 0) - res["client_pct"] - res["backend_pct"]
    res["noisy"] = res["other_pct"] > NOISY
    return res

data = {}   # (test, target) -> list of results
targets = []
for r in rows:
    if r["target"] not in targets:
        targets.append(r["target"])
    data.setdefault((r["test"], r["target"]), []).append(parse(r))
# order: launchers in given order, direct last
targets = [t for t in targets if t != "direct"] + (["direct"] if "direct" in targets else [])
ref = targets[0]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, nd=2):
    if x is None: return "-"
    if abs(x) >= 1000: return f"{x:,.0f}"
    if abs(x) >= 100: return f"{x:.0f}"
    if abs(x) >= 10: return f"{x:.1f}"
    return f"{x:.{nd}f}"


def markdown():
    names = {"launch-haproxy": "HAProxy 2.6", "launch-tether": "tether"}
    label = lambda t: names.get(t, t)
    proxied = [t for t in targets if t != "direct"]
    env = open(os.path.join(outdir, "env.txt")).read()
    for line in env.splitlines():
        if line.startswith(("date:", "load average", "reps=")):
            print(f"<!-- {line} -->")
    cols = [f"{label(t)}" for t in proxied] + (["direct"] if "direct" in targets else [])
    cols += [f"{label(t)} / {label(ref)}" for t in proxied if t != ref]
    cols += [f"{label(t)} CPU" for t in proxied] + [f"{label(t)} peak RSS" for t in proxied]
    print("| test | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for test in [t for t in TESTS if any(k[0] == t for k in data)]:
        title, unit, cpuunit = TESTS[test]
        cells = []
        def runs(t, key):
            return [x.get(key) for x in data.get((test, t), []) if x["ok"]]
        def both(vals, unit=""):
            vals = [v for v in vals if v is not None]
            return " / ".join(fmt(v) for v in vals) + (f" {unit}" if vals and unit else "") if vals else "failed"
        for t in proxied + (["direct"] if "direct" in targets else []):
            cells.append(both(runs(t, "metric")))
        ref_m = runs(ref, "metric")
        for t in proxied:
            if t == ref:
                continue
            m = runs(t, "metric")
            cells.append(" / ".join(f"{a / b:.2f}" for a, b in zip(m, ref_m) if b) or "-")
        cu = cpuunit.replace("CPU ", "")
        for t in proxied:
            cells.append(both(runs(t, "cpu_per_unit"), cu))
        for t in proxied:
            cells.append(both(runs(t, "rss_mb"), "MB"))
        print(f"| {test} ({unit}) | " + " | ".join(cells) + " |")
    print()
    print("Each cell: repetition 1 / repetition 2 (targets alternated, order rotated per repetition).")
    print("CPU = proxy CPU time (utime+stime) per unit of work; peak RSS = VmHWM of the proxy.")

if MD:
    markdown()
    sys.exit(0)

summary = {}
env = open(os.path.join(outdir, "env.txt")).read()
print(env.rstrip())
print("\nAll values: median over repetitions; spread = (max-min)/median; CPU% = proxy CPU time / wall time (100% = one core);")
print("RSS = peak VmHWM summed over the proxy process tree; cli%/be% = load generator / backend CPU (100% = one core);")
print(f"noisy = runs with oth% > {NOISY:.0f} (other processes took CPU during the run); ")
print("oth% = total busy - proxy - client - backends (other processes on the box + unattributed irq); cpuN = busy% (steal%).\n")
tests_seen = [t for t in TESTS if any(k[0] == t for k in data)]
for test in tests_seen:
    title, unit, cpuunit = TESTS[test]
    print(f"== {test}: {title} [{unit}] ==")
    h = f"{'target':<24}{'median':>10}{'min..max':>22}{'spread':>8}{'p50 ms':>8}{'p99 ms':>8}{'errs':>6}{'noisy':>6}{'proxyCPU%':>10}{cpuunit:>13}{'RSS MB':>8}{'vs '+ref[:14]:>18}{'vs direct':>10}  cli% be% oth%  cpuN busy%(steal)"
    print(h); print("-" * len(h))
    ref_res = data.get((test, ref), [])
    ref_m = med([x.get("metric") for x in ref_res if x["ok"]])
    ref_cpu = med([x["cpu_per_unit"] for x in ref_res if x["ok"]])
    dir_m = med([x.get("metric") for x in data.get((test, "direct"), []) if x["ok"]])
    for t in targets:
        rs = data.get((test, t), [])
        good = [x for x in rs if x["ok"]]
        ms = [x["metric"] for x in good]
        m = med(ms)
        spread = (max(ms) - min(ms)) / m * 100 if ms and m else None
        cpu_u = med([x["cpu_per_unit"] for x in good])
        cpus = {}
        for x in good:
            for n, v in x["cpus"].items():
                cpus.setdefault(n, []).append(v)
        cpustr = " ".join(f"{n[3:]}:{med([v[0] for v in vs]):.0f}({med([v[1] for v in vs]):.0f})" for n, vs in sorted(cpus.items()))
        errs = sum(x["errs"] for x in good)
        vs_ref = m / ref_m if m and ref_m else None
        vs_dir = m / dir_m if m and dir_m else None
        mm = f"{fmt(min(ms))}..{fmt(max(ms))}" if ms else "-"
        bad = len(rs) - len(good)
        print(f"{t[:24]:<24}{fmt(m):>10}{mm:>22}{(fmt(spread,1)+'%') if spread is not None else '-':>8}"
              f"{fmt(med([x['p50'] for x in good]),3):>8}{fmt(med([x['p99'] for x in good]),3):>8}{errs:>6}{str(sum(1 for x in good if x['noisy']))+'/'+str(len(good)):>6}"
              f"{fmt(med([x['cpu_pct'] for x in good]),1):>10}{fmt(cpu_u):>13}{fmt(max([x['rss_mb'] for x in good if x['rss_mb'] is not None], default=None),1):>8}"
              f"{fmt(vs_ref,3):>18}{fmt(vs_dir,3):>10}  {med([x['client_pct'] for x in good]):>3.0f} {med([x['backend_pct'] for x in good]):>3.0f} {med([x['other_pct'] for x in good]):>4.0f}  {cpustr}" + (f"  [{bad} FAILED: {rs[0].get('why','rc!=0') if rs else ''}]" if bad else ""))
        summary[(test, t)] = (m, vs_ref, vs_dir, cpu_u / ref_cpu if cpu_u and ref_cpu else None, spread)
    print()

print(f"== summary: throughput ratio vs {ref} (and vs direct); proxy CPU per unit of work ratio vs {ref} ==")
h = f"{'test':<11}" + "".join(f"{t[:30]:>32}" for t in targets)
print(h); print("-" * len(h))
for test in tests_seen:
    cells = []
    for t in targets:
        m, vr, vd, cr, sp = summary.get((test, t), (None,) * 5)
        if t == "direct":
            cells.append(f"{fmt(m)} ±{fmt(sp,1)}%")
        else:
            cells.append(f"x{fmt(vr,2)} (d x{fmt(vd,2)}) cpu x{fmt(cr,2)}")
    print(f"{test:<11}" + "".join(f"{c:>32}" for c in cells))
print(f"\n'x' = median / {ref} median; 'd' = median / direct median; 'cpu' = proxy CPU-per-unit / {ref}'s.")
