#!/usr/bin/env python3
"""Benchmark driver for scripts/bench.sh: one process per delivery, sequentially, to an
already running `outpost sink`, for `outpost send` and for msmtp. Prints a report (no
pass/fail verdict) and writes it to the file given with --report.

Per tool and scenario it measures: deliveries per second (wall clock of the whole loop,
spawn included), median wall time of one delivery, user+sys CPU per delivery and the
peak RSS of one delivering process (both from os.wait4 on each child), and the sink's
own CPU per delivery (from /proc/PID/stat of the sink, which is not our child).
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import time

SENDER = "bench@example.org"
DOMAIN = "example.net"


# ---------------------------------------------------------------- messages

def small_message(tag):
    """About 1 KB: the usual headers and a short text body."""
    head = (
        "From: Bench Sender <%s>\n"
        "To: Bench Rcpt <rcpt@%s>\n"
        "Subject: outpost bench %s\n"
        "Date: Sat, 28 Nov 2026 12:00:00 +0000\n"
        "Message-ID: <bench-%s@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n" % (SENDER, DOMAIN, tag, tag)
    )
    line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen.\n"
    body = line * 11 + ".a line that starts with a dot\n"
    return (head + body).encode()


def big_message(size):
    """`size` bytes of 76-column text lines (some starting with a dot)."""
    head = (
        "From: Bench Sender <%s>\n"
        "To: Bench Rcpt <rcpt@%s>\n"
        "Subject: outpost bench big\n"
        "Date: Sat, 28 Nov 2026 12:00:00 +0000\n"
        "Message-ID: <bench-big@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n" % (SENDER, DOMAIN)
    ).encode()
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = []
    total = len(head)
    i = 0
    while total < size:
        start = b"." if i % 500 == 0 else b""
        row = start + bytes(alphabet[(i * 7 + k) % 64] for k in range(76 - len(start))) + b"\n"
        lines.append(row)
        total += len(row)
        i += 1
    return head + b"".join(lines)


# ---------------------------------------------------------------- processes

def spawn_wait(argv, env, stdin_path, errlog):
    """Runs argv with stdin from a file; returns (exit code, rusage, wall seconds)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, stdin_path, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, errlog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return os.waitstatus_to_exitcode(status), ru, wall


def proc_cpu(pid):
    """user+sys seconds of a running process (all threads), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # Fields after ")" start at field 3 (state); utime is 14, stime 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class Tool:
    def __init__(self, name, argv_fn):
        self.name = name
        self.argv_fn = argv_fn  # (port, recipients) -> argv


def outpost_tool(binary):
    def argv(port, rcpts):
        return [binary, "send", "-q", "-f", SENDER, "-d", "[127.0.0.1]:%d" % port] + rcpts
    return Tool("outpost", argv)


def msmtp_tool(binary):
    def argv(port, rcpts):
        return [binary, "-C", "/dev/null", "--host=127.0.0.1", "--port=%d" % port,
                "--from=" + SENDER, "--tls=off", "--auth=off", "--"] + rcpts
    return Tool("msmtp", argv)


# ---------------------------------------------------------------- measuring

class Result:
    def __init__(self):
        self.count = 0
        self.failures = 0
        self.first_error = None
        self.wall = 0.0
        self.walls = []
        self.cpu = 0.0
        self.maxrss = 0  # from our wait4: includes the floor (see rss_pass)
        self.peak_rss = None
        self.sink_cpu = None
        self.budget_hit = False


def rss_pass(tool, port, rcpts, msg_path, n, env, errlog, gnu_time, work):
    """Peak RSS (KB) of one delivering process, over n deliveries run under GNU time.

    ru_maxrss from our own wait4 is useless here: at execve(2) Linux carries the RSS
    high-water mark of the image being replaced into the process's maxrss, so every
    child we spawn reports at least this Python process's RSS. GNU time forks from a
    tiny process, so its %M floor is a few hundred KB instead of tens of MB."""
    if not gnu_time or n <= 0:
        return None
    out = os.path.join(work, "rss.txt")
    argv = [gnu_time, "-f", "%M", "-o", out] + tool.argv_fn(port, rcpts)
    peak = None
    for _ in range(n):
        code, _, _ = spawn_wait(argv, env, msg_path, errlog)
        try:
            with open(out) as f:
                kb = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            continue
        if code == 0:
            peak = kb if peak is None else max(peak, kb)
    return peak


def run_scenario(tool, port, rcpts, msg_path, n, budget, env, errlog, sink_pid):
    r = Result()
    argv = tool.argv_fn(port, rcpts)
    s0 = proc_cpu(sink_pid)
    t0 = time.perf_counter()
    for _ in range(n):
        code, ru, wall = spawn_wait(argv, env, msg_path, errlog)
        r.count += 1
        r.walls.append(wall)
        r.cpu += ru.ru_utime + ru.ru_stime
        r.maxrss = max(r.maxrss, ru.ru_maxrss)
        if code != 0:
            r.failures += 1
            if r.first_error is None:
                r.first_error = "exit %d" % code
        if budget > 0 and time.perf_counter() - t0 > budget:
            r.budget_hit = r.count < n
            break
    r.wall = time.perf_counter() - t0
    s1 = proc_cpu(sink_pid)
    if s0 is not None and s1 is not None:
        r.sink_cpu = s1 - s0
    return r


# ---------------------------------------------------------------- verification

def parse_recorded(path):
    """(recipients, data with LF line ends) of one file recorded by `sink --dir`."""
    with open(path, "rb") as f:
        raw = f.read()
    head, sep, data = raw.partition(b"\r\n\r\n")
    if not sep:
        return [], b""
    rcpts = [l[len(b"X-Sink-Rcpt: "):] for l in head.split(b"\r\n")
             if l.startswith(b"X-Sink-Rcpt: ")]
    return rcpts, data.replace(b"\r\n", b"\n")


def verify(tools, port, vdir, msgs, env, errlog, n_small):
    """Delivers n_small small messages, one 50-recipient message and one big message
    per tool to the recording sink; returns report lines."""
    lines = []
    for tool in tools:
        before = set(os.listdir(vdir))
        expect = []  # (label, recipients, data)
        codes = []
        for i in range(n_small):
            rc = ["v%d@%s" % (i, DOMAIN)]
            codes.append(spawn_wait(tool.argv_fn(port, rc), env, msgs["small"], errlog)[0])
            expect.append(("small", rc, msgs["small_data"]))
        codes.append(spawn_wait(tool.argv_fn(port, msgs["rcpts50"]), env, msgs["small"],
                                errlog)[0])
        expect.append(("50rcpt", msgs["rcpts50"], msgs["small_data"]))
        codes.append(spawn_wait(tool.argv_fn(port, ["big@" + DOMAIN]), env, msgs["big"],
                                errlog)[0])
        expect.append(("big", ["big@" + DOMAIN], msgs["big_data"]))
        # Files are renamed into place before the final reply, so they are all there.
        new = sorted(set(os.listdir(vdir)) - before - {f for f in os.listdir(vdir)
                                                         if f.startswith(".")})
        got = [parse_recorded(os.path.join(vdir, f)) for f in new]
        bad = []
        if len(got) != len(expect):
            bad.append("%d files recorded, %d expected" % (len(got), len(expect)))
        else:
            for (label, rc, data), (grc, gdata) in zip(expect, got):
                want_rc = sorted(("<%s>" % a).encode() for a in rc)
                if sorted(grc) != want_rc:
                    bad.append("%s: %d recipients recorded, %d expected"
                               % (label, len(grc), len(rc)))
                if gdata != data:
                    bad.append("%s: recorded data differs from the input (%d vs %d bytes)"
                               % (label, len(gdata), len(data)))
        nonzero = sum(1 for c in codes if c != 0)
        state = "ok" if not bad and not nonzero else "PROBLEM"
        lines.append("  %-8s %d deliveries, %d nonzero exits, %d files recorded: %s%s"
                     % (tool.name, len(codes), nonzero, len(got), state,
                        "" if not bad else " (" + "; ".join(bad[:3]) + ")"))
    return lines


# ---------------------------------------------------------------- report

def fmt(v, spec, na="n/a"):
    return na if v is None else format(v, spec)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(title, results, per, rcpts_per_msg):
    """results: list of (tool name, Result)."""
    out = [title]
    hdr = ("  %-9s %7s %9s %10s %12s %12s %13s %8s"
           % ("tool", per, per + "/s", "median ms", "CPU ms/" + per, "peak RSS KB",
              "sink CPU ms/" + per, "failed"))
    out.append(hdr)
    vals = {}
    for name, r in results:
        rate = r.count / r.wall if r.wall > 0 else None
        med = statistics.median(r.walls) * 1000 if r.walls else None
        cpu = r.cpu / r.count * 1000 if r.count else None
        sink = r.sink_cpu / r.count * 1000 if (r.sink_cpu is not None and r.count) else None
        vals[name] = (rate, med, cpu, r.peak_rss, sink)
        out.append("  %-9s %7d %9s %10s %12s %12s %13s %8d%s"
                   % (name, r.count, fmt(rate, ".1f"), fmt(med, ".1f"), fmt(cpu, ".2f"),
                      fmt(r.peak_rss, "d"), fmt(sink, ".2f"), r.failures,
                      "  (time budget reached)" if r.budget_hit else ""))
    if "outpost" in vals and "msmtp" in vals:
        o, m = vals["outpost"], vals["msmtp"]
        out.append("  %-9s %7s %9s %10s %12s %12s %13s"
                   % ("O/msmtp", "", fmt(ratio(o[0], m[0]), ".2f"), fmt(ratio(o[1], m[1]), ".2f"),
                      fmt(ratio(o[2], m[2]), ".2f"), fmt(ratio(o[3], m[3]), ".2f"),
                      fmt(ratio(o[4], m[4]), ".2f")))
    if rcpts_per_msg > 1:
        for name, r in results:
            if r.wall > 0:
                out.append("  %s: %.0f recipients/s" % (name, r.count * rcpts_per_msg / r.wall))
    return out


def version_of(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10, check=False)
        return p.stdout.decode(errors="replace").splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def env_int(name, default):
    v = os.environ.get(name, "")
    try:
        return int(v) if v.strip() else default
    except ValueError:
        sys.exit("bench: %s=%r is not a number" % (name, v))


def env_float(name, default):
    v = os.environ.get(name, "")
    try:
        return float(v) if v.strip() else default
    except ValueError:
        sys.exit("bench: %s=%r is not a number" % (name, v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sink-pid", type=int, required=True)
    ap.add_argument("--verify-port", type=int, required=True)
    ap.add_argument("--verify-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()

    n_small = env_int("BENCH_N", 2000)
    n_rcpt = env_int("BENCH_RCPT_N", 100)
    n_big = env_int("BENCH_BIG_N", 10)
    budget = env_float("BENCH_BUDGET", 40.0)
    n_verify = env_int("BENCH_VERIFY_N", 20)
    n_rss = env_int("BENCH_RSS_N", 5)
    big_size = 5 * 1024 * 1024

    msmtp = os.environ.get("BENCH_MSMTP") or shutil.which("msmtp")
    if msmtp and not os.access(msmtp, os.X_OK):
        msmtp = None
    tools = [outpost_tool(os.path.abspath(a.bin))]
    notes = []
    gnu_time = os.environ.get("BENCH_TIME") or "/usr/bin/time"
    if not (os.access(gnu_time, os.X_OK) and "GNU" in version_of([gnu_time, "--version"])):
        gnu_time = None
        notes.append("GNU time (Debian package time) not found: peak RSS not measured "
                     "(a child's own ru_maxrss includes its Python parent's RSS).")
    if msmtp:
        tools.append(msmtp_tool(msmtp))
    else:
        notes.append("msmtp not found (Debian package msmtp): reporting Outpost alone.")

    # A clean environment: no MAIL_CONFIG, no user configuration, C locale.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "HOME": a.work, "LOGNAME": "bench", "USER": "bench"}
    errlog = os.path.join(a.work, "stderr.log")

    msgs = {}
    msgs["small_data"] = small_message("x")
    msgs["big_data"] = big_message(big_size)
    msgs["rcpts50"] = ["r%02d@%s" % (i, DOMAIN) for i in range(50)]
    for key in ("small", "big"):
        msgs[key] = os.path.join(a.work, key + ".eml")
        with open(msgs[key], "wb") as f:
            f.write(msgs[key + "_data"])

    out = []
    out.append("Outpost benchmark: one process per delivery, sequential, loopback, "
               "to `outpost sink --quiet`")
    out.append("  date %s; %s %s; %d CPUs (%s)" % (
        time.strftime("%Y-%m-%d %H:%M:%S %z"), platform.system(), platform.release(),
        os.cpu_count() or 0, cpu_model()))
    out.append("  %s; %s" % (version_of([tools[0].argv_fn(0, [])[0], "--version"]),
                             version_of([msmtp, "--version"]) if msmtp else "msmtp: missing"))
    out.append("  BENCH_N=%d BENCH_RCPT_N=%d BENCH_BIG_N=%d BENCH_BUDGET=%gs (per tool and "
               "scenario; 0 = none)" % (n_small, n_rcpt, n_big, budget))
    out.append("")
    out.append("Verification pass (recording sink with --dir; also warms up the caches):")
    print("\n".join(out), flush=True)
    vlines = verify(tools, a.verify_port, a.verify_dir, msgs, env, errlog, n_verify)
    print("\n".join(vlines) + "\n", flush=True)
    out.extend(vlines)
    out.append("")

    scenarios = [
        ("Scenario A: %d-byte message, 1 recipient" % len(msgs["small_data"]),
         msgs["small"], ["rcpt@" + DOMAIN], n_small, "msg", 1),
        ("Scenario B: the same message, 50 recipients (one process per message)",
         msgs["small"], msgs["rcpts50"], n_rcpt, "msg", 50),
        ("Scenario C: %.1f MB message, 1 recipient" % (len(msgs["big_data"]) / 1048576),
         msgs["big"], ["rcpt@" + DOMAIN], n_big, "msg", 1),
    ]
    stalls = []
    for title, path, rcpts, n, per, nr in scenarios:
        if n <= 0:
            continue
        results = []
        for tool in tools:
            r = run_scenario(tool, a.port, rcpts, path, n, budget, env, errlog, a.sink_pid)
            r.peak_rss = rss_pass(tool, a.port, rcpts, path, n_rss, env, errlog, gnu_time,
                                  a.work)
            results.append((tool.name, r))
        t = table(title, results, per, nr)
        if nr == 1 and path == msgs["small"]:
            for name, r in results:
                if r.walls:
                    med = statistics.median(r.walls) * 1000
                    cpu = r.cpu / r.count * 1000
                    if med > 30 and cpu < med / 4:
                        stalls.append((name, med, cpu))
        print("\n".join(t) + "\n", flush=True)
        out.extend(t)
        out.append("")

    printed = len(out)
    hwm = proc_hwm_kb(a.sink_pid)
    out.append("Sink (`outpost sink --quiet`, one process for all runs): peak RSS %s KB"
               % fmt(hwm, "d"))
    out.extend([
        "Columns: msg/s = deliveries per wall-clock second (spawn included); median ms = wall",
        "  time of one delivery; CPU = user+sys of the delivering process (wait4); peak RSS =",
        "  largest %%M (GNU time) of one delivering process over %d extra runs; sink CPU = the"
        % n_rss,
        "  sink's user+sys during the run / deliveries (10 ms ticks); O/msmtp = Outpost/msmtp.",
    ])
    for name, med, cpu in stalls:
        notes.append("%s: a small delivery takes %.0f ms of wall time but %.1f ms of CPU: the "
                     "process is mostly waiting (about 40 ms is Linux's delayed-ACK timer: a "
                     "small write held back by Nagle's algorithm until the peer ACKs)."
                     % (name, med, cpu))
    try:
        with open(errlog, "rb") as f:
            err = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        err = []
    if err:
        notes.append("stderr of the delivering processes (%d lines), first: %s"
                     % (len(err), err[0][:200]))
    for n in notes:
        out.extend(textwrap.wrap("Note: " + n, 88, subsequent_indent="  "))
    print("\n".join(out[printed:]))
    os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
    with open(a.report, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\nReport written to %s" % a.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
