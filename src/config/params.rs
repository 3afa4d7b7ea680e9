//! The parameter table's row type and lookups into it, plus the few defaults
//! that Postfix computes from the host or the process instead of a constant.

use super::defaults::PARAMS;

/// How Postfix converts a parameter's expanded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Free text; `min`/`max` bound its length in bytes.
    Str,
    /// `yes` or `no`, case-insensitive.
    Bool,
    /// A C `int`: decimal, nothing after the digits.
    Int,
    /// A C `long` (e.g. message_size_limit).
    Long,
    /// A duration in seconds; the byte is the unit used when the value has none.
    /// Postfix takes it from the first letter of the (expanded) default value.
    Time(u8),
}

/// One row of the built-in table.
#[derive(Debug)]
pub(crate) struct ParamDef {
    pub name: &'static str,
    /// `postconf -d` text, unexpanded. `None`: Postfix 3.7 no longer defines the
    /// parameter, so `$name` expands to nothing unless main.cf or -o sets it.
    pub default: Option<&'static str>,
    pub kind: Kind,
    /// Lower and upper bound as in Postfix's tables: 0 means "no check".
    pub min: i64,
    pub max: i64,
}

/// Parameters whose default Postfix computes at run time. The table holds a
/// host-independent stand-in for them; `Config` supplies the real value.
/// mynetworks is not computed (Postfix derives it from the interface list,
/// and the delivery agent never uses it); the table's loopback-only stand-in applies.
#[cfg(test)]
pub(crate) const HOST_SPECIFIC: &[&str] = &[
    "myhostname",
    "mydomain",
    "mynetworks",
    "process_id",
    "process_name",
];

/// The table row for `name`, if Outpost knows the parameter.
pub(crate) fn find(name: &str) -> Option<&'static ParamDef> {
    PARAMS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .and_then(|i| PARAMS.get(i))
}

/// All rows, sorted by name.
pub(crate) fn all() -> &'static [ParamDef] {
    PARAMS
}

/// The kernel's host name, as gethostname(2) reports it (Postfix deliberately
/// avoids DNS or /etc/hosts here so that no program hangs on a resolver).
pub(crate) fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call;
    // gethostname writes at most `buf.len()` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf.get(..end)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in all().windows(2) {
            if let [a, b] = pair {
                assert!(a.name < b.name, "{} !< {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn find_known_and_unknown() {
        let p = find("smtp_helo_timeout").map(|p| (p.default, p.kind, p.min));
        assert_eq!(p, Some((Some("300s"), Kind::Time(b's'), 1)));
        assert!(find("no_such_parameter").is_none());
        let sasl = find("smtp_sasl_auth_cache_time").map(|p| p.kind);
        assert_eq!(sasl, Some(Kind::Time(b'd')));
        assert_eq!(find("message_size_limit").map(|p| p.kind), Some(Kind::Long));
    }

    #[test]
    fn every_seed_parameter_is_known() {
        let Ok(seed) = std::fs::read_to_string("/work/shared/reference/seed-parameters.txt") else {
            println!("note: seed-parameters.txt not found; skipping");
            return;
        };
        for name in seed.lines().map(str::trim).filter(|l| !l.is_empty()) {
            assert!(
                find(name).is_some(),
                "seed parameter {name} missing from the table"
            );
        }
    }

    #[test]
    fn referenced_names_are_known() {
        // Every $name in a default must itself be in the table, so that its
        // expansion is the one postconf shows.
        for p in all() {
            let Some(d) = p.default else { continue };
            let mut rest = d;
            while let Some(i) = rest.find('$') {
                rest = rest.get(i + 1..).unwrap_or("");
                let name: String = rest
                    .trim_start_matches(['{', '('])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    assert!(
                        find(&name).is_some(),
                        "{} refers to unknown ${name}",
                        p.name
                    );
                }
            }
        }
    }

    #[test]
    fn host_name_is_available() {
        assert!(host_name().is_some_and(|h| !h.is_empty()));
    }
}
