#!/usr/bin/env python3
"""Generate src/config/defaults.rs from `postconf -d` and Postfix's parameter tables.

Usage: python3 gen_defaults.py POSTFIX_SRC_DIR SEED_FILE > defaults.rs
(e.g. /work/pfsrc/postfix/src /work/shared/reference/seed-parameters.txt)

Which parameters: every postconf -d name starting with smtp_, lmtp_ or tls_,
every name in SEED_FILE, every name the smtp(8)/lmtp(8) daemon reads through its
own tables, mail_params_init() and tls_param_init(), a few extras, and every
name a default of any of those refers to with $name (transitively).
Types and min/max come from the CONFIG_*_TABLE entries in Postfix's source;
names those tables do not cover get a type inferred from their default and are
listed in OVERRIDES when the inference would be wrong.
"""
import re
import subprocess
import sys
import os

src, seed_file = sys.argv[1], sys.argv[2]

# ---- postconf -d -----------------------------------------------------------
pcd = {}
for line in subprocess.run(["postconf", "-d"], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    name, sep, value = line.partition(" =")
    assert sep, line
    pcd[name] = value[1:] if value.startswith(" ") else value

# ---- VAR_ / DEF_ macros ------------------------------------------------------
macros = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".h"):
            for m in re.finditer(r'^#define\s+((?:VAR|MIN|MAX)_[A-Z0-9_]+)\s+("(?:[^"\\]|\\.)*"|-?\d+)',
                                 open(os.path.join(root, f), errors="replace").read(), re.M):
                macros.setdefault(m.group(1), m.group(2).strip('"'))

def resolve_num(tok):
    tok = tok.strip()
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok in macros and re.fullmatch(r"-?\d+", macros[tok]):
        return int(macros[tok])
    raise SystemExit("cannot resolve %s" % tok)

# ---- CONFIG_*_TABLE entries --------------------------------------------------
KIND = {"STR": "Str", "STR_FN": "Str", "RAW": "Str", "INT": "Int", "NINT": "Int",
        "LONG": "Long", "BOOL": "Bool", "NBOOL": "Bool", "TIME": "Time"}
types = {}      # name -> (kind, min, max)
daemon_reads = set()
DAEMON_FILES = {"smtp/smtp_params.c", "smtp/lmtp_params.c", "global/mail_params.c",
                "tls/tls_misc.c"}
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".c"):
            continue
        path = os.path.join(root, f)
        rel = os.path.relpath(path, src)
        text = open(path, errors="replace").read()
        for m in re.finditer(r"CONFIG_([A-Z_]+?)_TABLE\s+\w+\[\]\s*=\s*\{(.*?)\n\s*0,\s*\n\s*\};",
                             text, re.S):
            kind = KIND[m.group(1)]
            for ent in re.finditer(r"^\s*(VAR_[A-Z0-9_]+),([^\n]*)$", m.group(2), re.M):
                name = macros[ent.group(1)]
                fields = [x.strip() for x in ent.group(2).split(",")]
                lo = hi = 0
                if kind != "Bool":
                    lo, hi = resolve_num(fields[2]), resolve_num(fields[3])
                prev = types.get(name)
                if prev and prev != (kind, lo, hi):
                    raise SystemExit("conflict for %s: %s vs %s" % (name, prev, (kind, lo, hi)))
                types[name] = (kind, lo, hi)
                if rel in DAEMON_FILES:
                    daemon_reads.add(name)

# ---- the name set ------------------------------------------------------------
EXTRA = """relayhost mail_version mail_release_date message_size_limit maillog_file
postlog_service_name authorized_verp_clients process_name process_id service_name
config_directory myhostname mydomain myorigin daemon_directory command_directory
queue_directory mail_owner import_environment export_environment stress
compatibility_level smtputf8_enable smtputf8_autodetect_classes
""".split()
names = set(n for n in pcd if re.match(r"(smtp|lmtp|tls)_", n))
names |= set(l.strip() for l in open(seed_file) if l.strip())
names |= set(EXTRA) | daemon_reads
# Names that man 5 postconf still documents but that Postfix 3.7 no longer
# defines: they stay undefined (a $reference expands to nothing) unless main.cf
# or -o sets them.
UNDEFINED = {
    "authorized_verp_clients": ("Str", 0, 0),
    "fallback_relay": ("Str", 0, 0),
    "lmtp_cache_connection": ("Bool", 0, 0),
    "smtp_skip_4xx_greeting": ("Bool", 0, 0),
    "smtp_tls_cipherlist": ("Str", 0, 0),
    # renamed to *_per_request_deadline in 3.7; the new name's default refers
    # to the old one
    "smtp_per_record_deadline": ("Bool", 0, 0),
    "lmtp_per_record_deadline": ("Bool", 0, 0),
}
missing = sorted(n for n in names if n not in pcd and n not in UNDEFINED)
if missing:
    raise SystemExit("not in postconf -d: %s" % missing)

ref_re = re.compile(r"\$(?:\{|\()?\s*([A-Za-z0-9_]+)")
todo = list(names)
while todo:
    n = todo.pop()
    for r in ref_re.findall(pcd.get(n, "")):
        if r in pcd and r not in names:
            names.add(r)
            todo.append(r)
        elif r in UNDEFINED and r not in names:
            names.add(r)
        elif r not in pcd and r not in UNDEFINED:
            print("warning: %s refers to unknown $%s" % (n, r), file=sys.stderr)

# ---- types for names outside the tables ---------------------------------------
OVERRIDES = {
    # read by tlsmgr(8) as time values
    "smtp_tls_session_cache_timeout": ("Time", 0, 0),
    "lmtp_tls_session_cache_timeout": ("Time", 0, 0),
    # qmgr(8) reads the feedback parameters as strings ("1", "1/concurrency")
    "default_destination_concurrency_negative_feedback": ("Str", 0, 0),
    "default_destination_concurrency_positive_feedback": ("Str", 0, 0),
    # process_id is an integer that Postfix sets itself
    "process_id": ("Int", 0, 0),
}

def infer(name, default):
    if name in OVERRIDES:
        return OVERRIDES[name]
    m = re.fullmatch(r"\$([a-z_]+)", default)
    if m and m.group(1) in pcd:
        # qmgr's per-transport parameters default to a global one of the same type
        t = types.get(m.group(1)) or infer(m.group(1), pcd[m.group(1)])
        return t
    if default in ("yes", "no"):
        return ("Bool", 0, 0)
    if re.fullmatch(r"\d+[smhdw]", default):
        return ("Time", 0, 0)
    if re.fullmatch(r"-?\d+", default):
        return ("Int", 0, 0)
    return ("Str", 0, 0)

# Defaults that Postfix computes from the host or the process at run time; the
# table holds a host-independent stand-in and params.rs computes the real value.
HOST_SPECIFIC = {
    "myhostname": "",
    "mydomain": "",
    "process_id": "",
    "process_name": "",
    "mynetworks": "127.0.0.0/8 [::1]/128",
}

rows = []
inferred = []
for n in sorted(names):
    if n in UNDEFINED:
        rows.append((n, None, UNDEFINED[n], ""))
        continue
    if n in types and n not in OVERRIDES:
        t = types[n]
    else:
        t = infer(n, pcd[n])
        inferred.append((n, t[0], pcd[n]))
    unit = ""
    if t[0] == "Time":
        expanded = subprocess.run(["postconf", "-dxh", n], capture_output=True,
                                  text=True, check=True).stdout.strip()
        um = re.search(r"[A-Za-z]", expanded)
        assert um, (n, expanded)
        unit = um.group(0)
    rows.append((n, HOST_SPECIFIC.get(n, pcd[n]), t, unit))

for n, k, d in inferred:
    print("inferred %-45s %-5s %s" % (n, k, d), file=sys.stderr)

def rs(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

print("//! Built-in parameter table: name, Postfix %s `postconf -d` default, type and bounds." % pcd["mail_version"])
print("//!")
print("//! Generated by `src/config/gen_defaults.py` from `postconf -d` and the CONFIG_*_TABLE")
print("//! entries in Postfix's source; regenerate rather than edit by hand.")
print()
print("use super::params::{Kind, ParamDef};")
print()
print("/// Every parameter Outpost knows, sorted by name for binary search.")
print("#[rustfmt::skip]")
print("pub(crate) static PARAMS: &[ParamDef] = &[")
for n, d, (k, lo, hi), unit in rows:
    if k == "Time":
        kind = "Kind::Time(b'%s')" % unit
    else:
        kind = "Kind::%s" % k
    dflt = "None" if d is None else "Some(%s)" % rs(d)
    print("    ParamDef { name: %s, default: %s, kind: %s, min: %d, max: %d }," % (rs(n), dflt, kind, lo, hi))
print("];")
