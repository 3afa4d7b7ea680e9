#!/usr/bin/env python3
"""Queue-drain benchmark driver for scripts/bench_drain.sh: Postfix's smtp(8) against
Outpost as the delivery agent of a real Postfix instance, to a Postfix smtp-sink.

One throw-away instance (in the directory given with --work, which the calling shell
removes) has two transports, `smtp` (Postfix's own) and `outpost` (ours). For each in
turn: N held messages are injected through an smtpd listener (a header_checks HOLD rule
puts them straight into hold/), the transport map is pointed at the transport, Postfix is
reloaded, the messages are released (postsuper -H ALL; postqueue -f) and the drain is
timed until the queue is empty. Prints a report (no pass/fail) and writes it to --report.

Measured per transport:
  * drain rate: N / seconds from the release to an empty queue (queue files counted
    every 50 ms, the end confirmed by `postqueue -p`: "Mail queue is empty");
  * agent CPU: user+sys of every delivery agent process of the transport. The agents
    that exited during the drain (max_use) are in the master's cutime+cstime delta (the
    master reaps them); the ones still alive at the end are read from /proc/PID/stat.
    Other children of the master that exit during the drain would count too: they are
    tracked and reported (none are expected);
  * peak RSS: the largest VmHWM of any agent process, sampled every ~100 ms and at the
    end (VmHWM is a high-water mark, so late samples miss nothing of a live process);
  * outcome: status=sent and other status= lines in the maillog written after the
    release.
"""

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time

DAEMON_DIR = "/usr/lib/postfix/sbin"
SUBJECT = "outpost-bench-drain"
RCPT = "x@sink.test"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def log(msg):
    print(msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(argv, check=True, timeout=120):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode, out.strip()))
    return out


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
    """(ppid, own ticks, reaped children's ticks) or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read().decode(errors="replace")
    except OSError:
        return None
    f = s[s.rindex(")") + 2:].split()
    return int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return None


def proc_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle and iowait


def service_of(argv):
    """The master.cf service name of a Postfix child (`-n NAME` in its argv); None for a
    zombie (no argv) or a child not yet past exec (still the master's argv)."""
    if not argv or not argv[0] or argv[0].endswith("master"):
        return None
    for i, a in enumerate(argv[:-1]):
        if a == "-n":
            return argv[i + 1]
    return argv[0]  # master.cf passes -n only when the name differs from the command


def children(ppid):
    """{pid: (service or None, ticks incl. reaped children)} of the master's children."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = proc_stat(pid)
        if st is None or st[0] != ppid:
            continue
        out[pid] = (service_of(proc_cmdline(pid)), st[1] + st[2])
    return out


# ---------------------------------------------------------------- instance

class Instance:
    def __init__(self, work, binary, sink_port, smtpd_port, procs):
        self.d = work
        self.conf = os.path.join(work, "conf")
        self.queue = os.path.join(work, "queue")
        self.maillog = os.path.join(work, "maillog")
        self.sink_port = sink_port
        lib = os.path.join(work, "libexec")
        for sub in ("conf", "queue", "data", "libexec/outpost"):
            os.makedirs(os.path.join(work, sub), exist_ok=True)
        os.chmod(work, 0o755)
        shutil.chown(os.path.join(work, "data"), "postfix", "postfix")
        for name in os.listdir(DAEMON_DIR):
            src = os.path.join(DAEMON_DIR, name)
            try:
                os.link(src, os.path.join(lib, name))
            except OSError:
                os.symlink(src, os.path.join(lib, name))
        for name in ("smtp", "lmtp"):
            shutil.copy(binary, os.path.join(lib, "outpost", name))
        if os.path.exists("/etc/postfix/dynamicmaps.cf"):
            shutil.copy("/etc/postfix/dynamicmaps.cf", self.conf)
        c = self.conf
        with open(os.path.join(c, "main.cf"), "w") as f:
            f.write(
                "compatibility_level = 3.6\nqueue_directory = %(q)s\ndata_directory = %(d)s/data\n"
                "daemon_directory = %(lib)s\nmail_owner = postfix\nsetgid_group = postdrop\n"
                "myhostname = postfix.test\nmydomain = postfix.test\nmydestination =\n"
                "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
                "maillog_file = %(d)s/maillog\nmaillog_file_prefixes = %(d)s\nalias_maps =\n"
                "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
                "transport_maps = texthash:%(c)s/transport\ndelay_warning_time = 0\n"
                "default_process_limit = %(procs)d\n"
                "header_checks = regexp:%(c)s/header_checks\n"
                "smtpd_client_connection_count_limit = 0\n"
                % {"q": self.queue, "d": work, "lib": lib, "c": c, "procs": procs})
        with open(os.path.join(c, "header_checks"), "w") as f:
            f.write("/^Subject: %s/ HOLD\n" % SUBJECT)
        self.set_transport("smtp")
        with open(os.path.join(c, "master.cf"), "w") as f:
            f.write(
                "127.0.0.1:%d inet n - n - - smtpd\n" % smtpd_port +
                "pickup    unix  n       -       n       60      1       pickup\n"
                "cleanup   unix  n       -       n       -       0       cleanup\n"
                "qmgr      unix  n       -       n       300     1       qmgr\n"
                "rewrite   unix  -       -       n       -       -       trivial-rewrite\n"
                "bounce    unix  -       -       n       -       0       bounce\n"
                "defer     unix  -       -       n       -       0       bounce\n"
                "trace     unix  -       -       n       -       0       bounce\n"
                "verify    unix  -       -       n       -       1       verify\n"
                "flush     unix  n       -       n       1000?   0       flush\n"
                "proxymap  unix  -       -       n       -       -       proxymap\n"
                "smtp      unix  -       -       n       -       -       smtp\n"
                "error     unix  -       -       n       -       -       error\n"
                "retry     unix  -       -       n       -       -       error\n"
                "discard   unix  -       -       n       -       -       discard\n"
                "anvil     unix  -       -       n       -       1       anvil\n"
                "scache    unix  -       -       n       -       1       scache\n"
                "showq     unix  n       -       n       -       -       showq\n"
                "postlog   unix-dgram n  -       n       -       1       postlogd\n"
                "outpost   unix  -       -       n       -       -       outpost/smtp\n")

    def set_transport(self, transport):
        with open(os.path.join(self.conf, "transport"), "w") as f:
            f.write("sink.test %s:[127.0.0.1]:%d\n" % (transport, self.sink_port))

    def start(self):
        run(["script", "-qec", "postfix -c %s start" % self.conf, "/dev/null"])
        t = time.monotonic()
        while self.master_pid() is None:
            if time.monotonic() - t > 20:
                raise RuntimeError("postfix master did not start; maillog:\n" + self.log_text())
            time.sleep(0.1)

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if proc_stat(pid) else None

    def postfix(self, cmd):
        return run(["postfix", "-c", self.conf, cmd])

    def queue_count(self, only=None):
        n = 0
        for q in (only,) if only else QUEUES:
            for root, _dirs, files in os.walk(os.path.join(self.queue, q)):
                n += len(files)
        return n

    def mailq(self):
        return run(["postqueue", "-c", self.conf, "-p"], check=False)

    def log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log_text(self, offset=0):
        try:
            with open(self.maillog, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


# ---------------------------------------------------------------- one phase

def inject(inst, smtpd_port, n, budget):
    t0 = time.monotonic()
    out = run(["smtp-source", "-s", "10", "-m", str(n), "-l", "1024", "-S", SUBJECT,
               "-f", "s@src.test", "-t", RCPT, "127.0.0.1:%d" % smtpd_port],
              check=False, timeout=budget)
    while inst.queue_count("hold") < n:
        if time.monotonic() - t0 > budget:
            raise RuntimeError("injection: %d of %d messages in hold/ after %ds; smtp-source: %s"
                               % (inst.queue_count("hold"), n, budget, out.strip()[:300]))
        time.sleep(0.2)
    return time.monotonic() - t0


def wait_quiet(inst, services, timeout=30):
    """After a reload: wait until no agent of `services` is alive and the set of master
    children has been the same for a second (old children reaped, new ones started)."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < timeout:
        mp = inst.master_pid()
        kids = children(mp) if mp else {}
        cur = frozenset(kids)
        busy = any(svc in services for svc, _ in kids.values())
        if cur != last or busy:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            return
        time.sleep(0.1)


def phase(inst, transport, n, smtpd_port, budget, sink_pid, tag):
    res = {"transport": transport, "n": n}
    log("[%s] %s: injecting %d held messages ..." % (tag, transport, n))
    res["inject_s"] = inject(inst, smtpd_port, n, budget)
    inst.set_transport(transport)
    inst.postfix("reload")
    wait_quiet(inst, {"smtp", "outpost"})
    mp = inst.master_pid()
    st = proc_stat(mp)
    c0 = st[2]
    before = children(mp)
    log_off = inst.log_size()
    busy0 = machine_busy_ticks()
    sink0 = sum(proc_stat(sink_pid)[1:])
    self0 = os.times()

    seen = {}        # agent pid -> last ticks
    hwm = {}         # agent pid -> max VmHWM KB
    others = {}      # non-agent child pid -> (service, last ticks)
    known = {}       # pid -> service, for children seen as zombies or before exec
    for pid, (svc, ticks) in before.items():
        if svc is not None:
            known[pid] = svc
            others[pid] = (svc, ticks)
    max_live = 0
    log("[%s] %s: releasing and draining ..." % (tag, transport))
    t0 = time.monotonic()
    run(["postsuper", "-c", inst.conf, "-H", "ALL"])
    run(["postqueue", "-c", inst.conf, "-f"])
    next_sample = 0.0
    t_end = None
    timed_out = False
    while True:
        now = time.monotonic()
        if now >= next_sample:
            live = 0
            for pid, (svc, ticks) in children(mp).items():
                svc = svc or known.get(pid)
                if svc is None:
                    continue
                known[pid] = svc
                if svc == transport:
                    live += 1
                    seen[pid] = ticks
                    h = proc_hwm_kb(pid)
                    if h is not None:
                        hwm[pid] = max(hwm.get(pid, 0), h)
                else:
                    others[pid] = (svc, ticks)
            max_live = max(max_live, live)
            next_sample = now + 0.1
        if inst.queue_count() == 0:
            t_end = time.monotonic()
            if "Mail queue is empty" in inst.mailq():
                break
            t_end = None
        if now - t0 > budget:
            timed_out = True
            t_end = time.monotonic()
            break
        time.sleep(0.05)
    drain = t_end - t0
    # The agents are idle now (nothing left to deliver): let the last replies reach qmgr,
    # then read the master's reaped-children CPU and the live agents.
    time.sleep(0.5)
    c1 = proc_stat(mp)[2]
    live_ticks = 0
    other_ticks = 0
    pss = []
    live_now = children(mp)
    for pid, (svc, ticks) in live_now.items():
        svc = svc or known.get(pid)
        if svc == transport:
            seen[pid] = ticks
            live_ticks += ticks
            h = proc_hwm_kb(pid)
            if h is not None:
                hwm[pid] = max(hwm.get(pid, 0), h)
            p = proc_pss_kb(pid)
            if p is not None:
                pss.append(p)
        elif svc is not None:
            # qmgr, trivial-rewrite, scache, postlogd, ...: CPU during the drain.
            other_ticks += ticks - before.get(pid, (svc, 0))[1]
    gone_others = {pid: v for pid, v in others.items() if pid not in live_now}
    other_exit_ticks = sum(t for _svc, t in gone_others.values())
    sink1 = sum(proc_stat(sink_pid)[1:])
    busy1 = machine_busy_ticks()
    self1 = os.times()

    text = inst.log_text(log_off)
    want = n
    t_log = time.monotonic()
    while True:
        lines = [l for l in text.splitlines() if "to=<%s>" % RCPT in l and " status=" in l]
        if len(lines) >= want or time.monotonic() - t_log > 10:
            break
        time.sleep(0.2)
        text = inst.log_text(log_off)
    statuses = {}
    reused = 0
    for l in lines:
        s = l.split(" status=", 1)[1].split()[0]
        statuses[s] = statuses.get(s, 0) + 1
        if "conn_use=" in l:
            reused += 1
    sent = statuses.get("sent", 0)
    res.update({
        "drain_s": drain,
        "timed_out": timed_out,
        "left": inst.queue_count() if timed_out else 0,
        "rate": sent / drain if drain > 0 else 0.0,
        "cpu_s": ((c1 - c0) + live_ticks) / TICK,
        "cpu_exited_s": (c1 - c0) / TICK,
        "cpu_live_s": live_ticks / TICK,
        "other_exits": sorted(set(svc for svc, _ in gone_others.values())),
        "other_exit_s": other_exit_ticks / TICK,
        "procs": len(seen),
        "max_live": max_live,
        "hwm_max": max(hwm.values()) if hwm else 0,
        "hwm_median": statistics.median(hwm.values()) if hwm else 0,
        "pss_median": statistics.median(pss) if pss else 0,
        "sink_s": (sink1 - sink0) / TICK,
        "other_s": other_ticks / TICK,
        "sent": sent,
        "statuses": statuses,
        "failed": sum(v for k, v in statuses.items() if k != "sent"),
        "reused": reused,
        "machine_cpu_s": (busy1 - busy0) / TICK,
        "self_cpu_s": (self1.user + self1.system) - (self0.user + self0.system),
        "fatal": [l for l in text.splitlines()
                  if ("fatal:" in l or "panic:" in l or "warning:" in l)][:3],
    })
    res["cpu_ms_msg"] = 1000 * res["cpu_s"] / sent if sent else float("nan")
    for k in ("machine", "sink", "other"):
        v = res["machine_cpu_s" if k == "machine" else k + "_s"]
        res[k + "_ms_msg"] = 1000 * v / sent if sent else float("nan")
    log("[%s] %s: %d sent in %.2fs (%.0f msg/s), agent CPU %.2fs, %d agent processes"
        % (tag, transport, sent, drain, res["rate"], res["cpu_s"], len(seen)))
    return res


# ---------------------------------------------------------------- report

def fmt(v, spec):
    if isinstance(v, float) and v != v:
        return "-"
    return spec % v


def ratio(a, b):
    if not b or a != a or b != b:
        return "-"
    return "%.2f" % (a / b)


def aggregate(runs):
    """One row of values from a transport's rounds: medians, except totals and maxima."""
    agg = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        if k in ("sent", "failed", "reused", "left"):
            agg[k] = sum(vals)
        elif k in ("max_live", "hwm_max"):
            agg[k] = max(vals)
        elif k == "timed_out":
            agg[k] = any(vals)
        elif all(isinstance(v, (int, float)) for v in vals):
            agg[k] = statistics.median(vals)
        else:
            agg[k] = vals
    return agg


def report(env, results, n, procs, rounds):
    pf, op = aggregate(results["smtp"]), aggregate(results["outpost"])
    rows = [
        ("delivered (status=sent) *", "sent", "%d", False),
        ("failed (other status=) *", "failed", "%d", False),
        ("drain time, s", "drain_s", "%.2f", True),
        ("drain rate, msg/s", "rate", "%.0f", True),
        ("agent CPU total, s", "cpu_s", "%.2f", True),
        ("agent CPU per msg, ms", "cpu_ms_msg", "%.3f", True),
        ("agent processes started", "procs", "%d", True),
        ("max agents alive at once", "max_live", "%d", False),
        ("peak RSS per agent, KB", "hwm_max", "%d", True),
        ("median agent peak RSS, KB", "hwm_median", "%d", True),
        ("median agent PSS at end, KB", "pss_median", "%d", True),
        ("reused connections *", "reused", "%d", False),
        ("other Postfix CPU/msg, ms", "other_ms_msg", "%.3f", True),
        ("smtp-sink CPU per msg, ms", "sink_ms_msg", "%.3f", True),
        ("machine CPU per msg, ms", "machine_ms_msg", "%.3f", True),
    ]
    out = [
        "Outpost drain benchmark: %d held messages released into a real Postfix, "
        "delivered by Postfix's smtp(8) and by Outpost" % n,
        "  %s" % env,
        "  destination: Postfix smtp-sink (no -d) on 127.0.0.1; default_process_limit=%d, "
        "destination concurrency limits default (20); %d round(s), order alternating"
        % (procs, rounds),
        "",
        "  %-29s %13s %13s %8s" % ("median of %d round(s)" % rounds, "Postfix smtp",
                                    "Outpost", "O/P"),
    ]
    for label, key, spec, with_ratio in rows:
        a, b = pf[key], op[key]
        out.append("  %-29s %13s %13s %8s" % (
            label, fmt(a, spec), fmt(b, spec), ratio(b, a) if with_ratio else ""))
    out.append("  * = total over all rounds (of %d per transport)" % (n * rounds))
    out.append("  drain rate per round, msg/s: Postfix smtp %s; Outpost %s" % (
        ", ".join("%.0f" % r["rate"] for r in results["smtp"]),
        ", ".join("%.0f" % r["rate"] for r in results["outpost"])))
    notes = []
    for name, runs in (("Postfix smtp", results["smtp"]), ("Outpost", results["outpost"])):
        for i, r in enumerate(runs):
            if r["timed_out"]:
                notes.append("%s round %d: the drain stopped at the time budget with %d queue "
                             "files left." % (name, i + 1, r["left"]))
            if r["failed"]:
                notes.append("%s round %d: statuses %s." % (name, i + 1, r["statuses"]))
            if r["other_exits"]:
                notes.append("%s round %d: other Postfix processes (%s) exited during the "
                             "drain; their CPU (last sampled %.2fs) is inside the agent CPU "
                             "figure." % (name, i + 1, ", ".join(r["other_exits"]),
                                          r["other_exit_s"]))
        fatal = sorted(set(l.strip()[:160] for r in runs for l in r["fatal"]))
        for l in fatal[:3]:
            notes.append("%s maillog: %s" % (name, l))
    out.append("")
    out += [
        "Rows: drain time = postsuper -H ALL until the queue is empty (postqueue -p);",
        "  agent CPU = user+sys of all delivery agent processes of the transport (master's",
        "  cutime+cstime delta for the exited ones + /proc of the live ones; 10 ms ticks);",
        "  peak RSS = largest VmHWM of one agent process (sampled every ~100 ms and at the",
        "  end; counts shared library pages in full); PSS = proportional set size of the idle",
        "  agents after the drain (shared pages divided among their users);",
        "  reused connections = deliveries logged with conn_use= (connection cache);",
        "  other Postfix CPU = qmgr, trivial-rewrite, scache, postlogd, ... during the drain;",
        "  machine CPU = all busy CPU time on the host during the drain / messages;",
        "  O/P = Outpost / Postfix smtp. Not counted: injection (smtp-source) %s s;"
        % "/".join("%.1f" % r["inject_s"] for r in results["smtp"] + results["outpost"]),
        "  the sampler's own CPU, median %.2f s per drain."
        % statistics.median(r["self_cpu_s"] for r in results["smtp"] + results["outpost"]),
    ]
    for note in notes:
        out.extend(textwrap.wrap("Note: " + note, 88, subsequent_indent="  "))
    return out


def environment(binary, n):
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                         "?")
    except OSError:
        model = "?"
    pf = run(["postconf", "-d", "-h", "mail_version"], check=False).strip()
    ov = run([binary, "--version"], check=False).strip().splitlines()
    load = " ".join("%.2f" % x for x in os.getloadavg())
    return ("date %s; Linux %s; %d CPUs (%s);\n  Postfix %s; %s; BENCH_DRAIN_N=%d; "
            "load average at start %s"
            % (time.strftime("%Y-%m-%d %H:%M:%S %z"), platform.release(), os.cpu_count(),
               model, pf, ov[0] if ov else "outpost ?", n, load))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--append")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--procs", type=int, default=20)
    ap.add_argument("--budget", type=int, default=90)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    env = environment(a.bin, a.n)
    log("Environment: " + env)
    sink_port, smtpd_port = free_port(), free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.1:%d" % sink_port, "1000"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(a.work, "sink.err"), "w"))
    with open(os.path.join(a.work, "sink.pid"), "w") as f:
        f.write("%d\n" % sink.pid)
    inst = Instance(a.work, a.bin, sink_port, smtpd_port, a.procs)
    try:
        inst.start()
        results = {"smtp": [], "outpost": []}
        for i in range(a.rounds):
            order = ("smtp", "outpost") if i % 2 == 0 else ("outpost", "smtp")
            for transport in order:
                results[transport].append(phase(inst, transport, a.n, smtpd_port, a.budget,
                                                 sink.pid, "round %d/%d" % (i + 1, a.rounds)))
        out = report(env, results, a.n, a.procs, a.rounds)
    finally:
        try:
            inst.postfix("stop")
        except Exception:
            pass
        sink.terminate()
        sink.wait()
    print("\n" + "\n".join(out))
    os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
    with open(a.report, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\nReport written to %s" % a.report)
    if a.append:
        with open(a.append, "a") as f:
            f.write("\n" + "\n".join(out) + "\n")
        print("Appended to %s" % a.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
