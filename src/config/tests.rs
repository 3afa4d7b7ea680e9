//! Tests of loading, precedence, typed getters, the LMTP name space, and the
//! built-in table against the installed Postfix's `postconf -d`.

use super::*;
use std::collections::HashMap;
use std::process::Command;

fn dir_with(main_cf: &str) -> tempfile::TempDir {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    if let Err(e) = std::fs::write(dir.path().join("main.cf"), main_cf) {
        panic!("write main.cf: {e}");
    }
    dir
}

fn load(main_cf: &str, overrides: &[&str], mode: Mode) -> Result<Config, ConfigError> {
    let dir = dir_with(main_cf);
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::load_with_env(Some(dir.path()), None, &o, mode, "smtp")
}

fn loaded(main_cf: &str, overrides: &[&str], mode: Mode) -> Config {
    match load(main_cf, overrides, mode) {
        Ok(c) => c,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn load_err(main_cf: &str, overrides: &[&str]) -> ConfigError {
    match load(main_cf, overrides, Mode::Smtp) {
        Ok(_) => panic!("load unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[test]
fn builtin_defaults() {
    let c = Config::builtin(Mode::Smtp, "smtp");
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(300));
    assert_eq!(c.time("smtp_connect_timeout"), Duration::from_secs(30));
    assert_eq!(
        c.time("smtp_sasl_auth_cache_time"),
        Duration::from_secs(90 * 86400)
    );
    assert_eq!(c.int("smtp_mx_address_limit"), 5);
    assert_eq!(c.int("message_size_limit"), 10_240_000);
    assert!(c.bool("smtp_skip_quit_response"));
    assert!(!c.bool("smtp_tls_wrappermode"));
    assert_eq!(c.get("smtp_tcp_port"), "smtp");
    assert_eq!(c.get("mail_name"), "Postfix");
    assert_eq!(c.get("process_name"), "smtp");
    assert_eq!(c.get("process_id"), std::process::id().to_string());
    assert_eq!(c.int("process_id"), i64::from(std::process::id()));
    assert_eq!(c.get("config_directory"), "/etc/postfix");
    assert_eq!(c.get("smtp_fallback_relay"), "");
    assert_eq!(c.raw("smtp_fallback_relay"), Some("$fallback_relay"));
    assert_eq!(c.raw("fallback_relay"), None);
    assert!(!c.bool("smtp_per_request_deadline"));
    assert_eq!(c.get("smtp_tls_dane_insecure_mx_policy"), "may");
    assert_eq!(c.get("smtp_helo_name"), c.get("myhostname"));
    assert!(c.main_cf().is_none());
    assert!(c.validate().is_ok());
}

#[test]
fn host_defaults() {
    let mut c = Config::builtin(Mode::Smtp, "smtp");
    let host = params::host_name().unwrap_or_default();
    let expected = if host.contains('.') {
        host.clone()
    } else {
        format!("{host}.localdomain")
    };
    assert_eq!(c.get("myhostname"), expected);
    let domain = expected.split_once('.').map(|x| x.1.to_string());
    assert_eq!(Some(c.get("mydomain")), domain);
    assert_eq!(c.get("myorigin"), expected);
    // An explicit myhostname decides mydomain.
    c.set("myhostname", "mx.example.net");
    assert_eq!(c.get("mydomain"), "example.net");
    assert_eq!(
        c.get("mydestination"),
        "mx.example.net, localhost.example.net, localhost"
    );
    // An explicit mydomain completes a dot-less kernel host name.
    let mut c = Config::builtin(Mode::Smtp, "smtp");
    c.set("mydomain", "example.org");
    if !host.contains('.') {
        assert_eq!(c.get("myhostname"), format!("{host}.example.org"));
    }
    assert_eq!(c.get("mydomain"), "example.org");
}

#[test]
fn main_cf_values_and_expansion() {
    let c = loaded(
        "# test\nmyhostname = mx.example.com\nsmtp_helo_name = helo.$mydomain\n\
         smtp_helo_timeout = 10\nsmtp_connect_timeout = 2m\n\
         smtp_tls_security_level = may\nmy_list = a, {b c}\n  d\n\
         smtp_generic_maps = $my_list\nsmtp_skip_quit_response = NO\n",
        &[],
        Mode::Smtp,
    );
    assert_eq!(c.get("smtp_helo_name"), "helo.example.com");
    assert_eq!(c.raw("smtp_helo_name"), Some("helo.$mydomain"));
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(10));
    assert_eq!(c.time("smtp_connect_timeout"), Duration::from_secs(120));
    assert_eq!(c.get("smtp_tls_security_level"), "may");
    assert_eq!(c.list("smtp_generic_maps"), ["a", "b c", "d"]);
    assert!(!c.bool("smtp_skip_quit_response"));
    // Unknown parameters are kept and usable.
    assert_eq!(c.get("my_list"), "a, {b c}  d");
    assert!(c.main_cf().is_some_and(|p| p.ends_with("main.cf")));
    let dir = c
        .main_cf()
        .and_then(Path::parent)
        .map(|p| p.display().to_string());
    assert_eq!(Some(c.get("config_directory")), dir);
}

#[test]
fn default_units_apply_to_bare_numbers() {
    let c = loaded(
        "smtp_sasl_auth_cache_time = 2\nmax_idle = 7\nsmtp_tls_session_cache_timeout = 60\n",
        &[],
        Mode::Smtp,
    );
    assert_eq!(
        c.time("smtp_sasl_auth_cache_time"),
        Duration::from_secs(2 * 86400)
    );
    assert_eq!(c.time("max_idle"), Duration::from_secs(7));
    assert_eq!(
        c.time("smtp_tls_session_cache_timeout"),
        Duration::from_secs(60)
    );
}

#[test]
fn overrides_win_over_main_cf() {
    let c = loaded(
        "smtp_helo_timeout = 10s\nsmtp_bind_address = 192.0.2.1\n",
        &[
            "smtp_helo_timeout=20s",
            "smtp_bind_address =",
            "extra = $smtp_helo_timeout",
        ],
        Mode::Smtp,
    );
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(20));
    assert_eq!(c.get("smtp_bind_address"), "");
    assert_eq!(c.get("extra"), "20s");
    // process_id cannot be overridden, process_name can (as in Postfix).
    let c = loaded(
        "process_id = 1\nprocess_name = x\n",
        &["process_id=2"],
        Mode::Smtp,
    );
    assert_eq!(c.get("process_id"), std::process::id().to_string());
    assert_eq!(c.get("process_name"), "x");
}

#[test]
fn builtin_only_when_no_directory() {
    let o = vec!["smtp_helo_timeout=1s".to_string()];
    let c = Config::load_with_env(None, None, &o, Mode::Smtp, "smtp");
    assert!(c.is_ok_and(|c| c.main_cf().is_none() && c.time("smtp_helo_timeout").as_secs() == 1));
    // MAIL_CONFIG is used when no directory is given, and loses to one.
    let dir = dir_with("smtp_helo_timeout = 7\n");
    let env = Some(dir.path().as_os_str().to_owned());
    let c = Config::load_with_env(None, env.clone(), &[], Mode::Smtp, "smtp");
    assert!(c.is_ok_and(|c| c.time("smtp_helo_timeout").as_secs() == 7));
    let other = dir_with("smtp_helo_timeout = 9\n");
    let c = Config::load_with_env(Some(other.path()), env, &[], Mode::Smtp, "smtp");
    assert!(c.is_ok_and(|c| c.time("smtp_helo_timeout").as_secs() == 9));
}

#[test]
fn missing_main_cf_is_an_error() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let e = Config::load_with_env(Some(dir.path()), None, &[], Mode::Smtp, "smtp").err();
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("main.cf: cannot open file: No such file or directory"),
        "{text}"
    );
}

#[test]
fn errors_name_file_line_and_parameter() {
    let e = load_err(
        "# c\n\nmyhostname = mx.example.com\nsmtp_helo_timeout = 10x\n",
        &[],
    );
    assert_eq!(e.line, Some(4));
    assert_eq!(e.param, "smtp_helo_timeout");
    assert!(e.file.as_ref().is_some_and(|f| f.ends_with("main.cf")));
    let text = e.to_string();
    assert!(
        text.ends_with(
            "main.cf, line 4: parameter smtp_helo_timeout: bad time value or unit: \"10x\""
        ),
        "{text}"
    );

    let e = load_err("", &["smtp_helo_timeout=later"]);
    assert_eq!(
        e.to_string(),
        "command line -o: parameter smtp_helo_timeout: bad time value or unit: \"later\""
    );
    let e = load_err("", &["smtp_helo_timeout"]);
    assert!(
        e.to_string()
            .contains("invalid \"-o smtp_helo_timeout\" option value")
    );

    let e = load_err("smtp_tls_wrappermode = maybe\n", &[]);
    assert!(
        e.to_string()
            .contains("line 1: parameter smtp_tls_wrappermode: bad boolean")
    );
    let e = load_err("smtp_mx_session_limit = lots\n", &[]);
    assert!(
        e.to_string()
            .contains("bad numerical configuration: \"lots\"")
    );
    let e = load_err("smtp_helo_timeout = 0\n", &[]);
    assert!(
        e.to_string()
            .contains("smtp_helo_timeout: invalid time value 0s (min 1s)")
    );
    let e = load_err("smtp_helo_name =\n", &[]);
    assert!(e.to_string().contains("bad string length 0 < 1"));
    let e = load_err("a = b\nthis is not a setting\n", &[]);
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("missing '=' after attribute name"));
    // A bad value reached through $name is reported at the setting that uses it.
    let e = load_err("t = 10x\n\nsmtp_rcpt_timeout = $t\n", &[]);
    assert_eq!((e.line, e.param.as_str()), (Some(3), "smtp_rcpt_timeout"));
    // A default that goes bad through main.cf names the file but no line.
    let e = load_err("default_destination_concurrency_limit = x\n", &[]);
    assert_eq!(e.param, "default_destination_concurrency_limit");
    let e = load_err("smtp_per_record_deadline = sometimes\n", &[]);
    assert_eq!(e.param, "smtp_per_record_deadline");
    let e = load_err("myhostname = bad..name\n", &[]);
    assert!(
        e.to_string()
            .contains("parameter myhostname: bad parameter value")
    );
    let e = load_err("compatibility_level = three\n", &[]);
    assert!(e.to_string().contains("malformed compatibility level"));
}

#[test]
fn nesting_limit_at_load() {
    let e = load_err("loop = x$loop\nsmtp_helo_name = $loop\n", &[]);
    assert_eq!(e.param, "smtp_helo_name");
    assert!(e.message.contains("unreasonable macro call nesting"), "{e}");
    // An unused loop is harmless, as in Postfix.
    assert!(load("loop = $loop\n", &[], Mode::Smtp).is_ok());
}

#[test]
fn lmtp_name_space() {
    let c = loaded(
        "smtp_helo_timeout = 11\nlmtp_lhlo_timeout = 22\nlmtp_lhlo_name = lhlo.example\n\
         lmtp_discard_lhlo_keywords = pipelining\nsmtp_always_send_ehlo = yes\n",
        &[],
        Mode::Lmtp,
    );
    assert_eq!(c.mode(), Mode::Lmtp);
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(22));
    assert_eq!(c.name_for("smtp_helo_timeout"), "lmtp_lhlo_timeout");
    assert_eq!(c.get("smtp_helo_name"), "lhlo.example");
    assert_eq!(c.list("smtp_discard_ehlo_keywords"), ["pipelining"]);
    assert_eq!(c.get("smtp_tcp_port"), "24");
    assert_eq!(c.time("smtp_connect_timeout"), Duration::ZERO);
    assert!(!c.bool("smtp_skip_quit_response"));
    assert_eq!(c.name_for("myhostname"), "myhostname");
    // Not read by Postfix in LMTP mode: its compiled-in value.
    assert!(!c.bool("smtp_always_send_ehlo"));
    assert_eq!(c.name_for("smtp_always_send_ehlo"), "smtp_always_send_ehlo");
    // lmtp_ names asked for directly are answered as is.
    assert_eq!(c.time("lmtp_lhlo_timeout"), Duration::from_secs(22));
    let e = c.error("smtp_helo_timeout", "too short");
    assert_eq!((e.param.as_str(), e.line), ("lmtp_lhlo_timeout", Some(2)));

    let c = loaded(
        "smtp_helo_timeout = 11\nlmtp_lhlo_timeout = 22\n",
        &[],
        Mode::Smtp,
    );
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(11));
    assert_eq!(c.name_for("smtp_helo_timeout"), "smtp_helo_timeout");
    assert_eq!(c.get("smtp_tcp_port"), "smtp");
}

#[test]
fn set_for_tests() {
    let mut c = Config::builtin(Mode::Smtp, "smtp");
    c.set("smtp_helo_timeout", "5s");
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(5));
    c.set("smtp_helo_timeout", "bogus");
    // Broken by set(): the getter falls back to the default, validate() tells.
    assert_eq!(c.time("smtp_helo_timeout"), Duration::from_secs(300));
    assert!(c.validate().is_err_and(|e| e.param == "smtp_helo_timeout"));
    assert_eq!(c.expand("$mail_name/$$x"), Ok("Postfix/$x".to_string()));
}

#[test]
fn lists_with_braces_and_errors() {
    let c = loaded(
        "smtp_tls_policy_maps = { inline:{ a=b } }, hash:/x\nbad = {x\n",
        &[],
        Mode::Smtp,
    );
    assert_eq!(
        c.list("smtp_tls_policy_maps"),
        ["inline:{ a=b }", "hash:/x"]
    );
    assert!(c.try_list("bad").is_err());
    assert_eq!(c.list("bad"), ["x"]);
}

#[test]
fn warnings_are_collected() {
    let c = loaded("a = 1\na = 2\n  \n", &[], Mode::Smtp);
    assert_eq!(c.warnings().len(), 1);
    assert_eq!(c.get("a"), "2");
}

/// Parameters whose `postconf -d` value depends on the host or process.
const HOST_DEPENDENT: &[&str] = params::HOST_SPECIFIC;

/// Runs `postconf` with `args` and parses "name = value" lines, or None
/// (with a note) when Postfix 3.7 is not installed.
fn postconf(args: &[&str]) -> Option<HashMap<String, String>> {
    let out = match Command::new("postconf").args(args).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("note: postconf not available; skipping comparison");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let map: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(" ="))
        .map(|(k, v)| (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()))
        .collect();
    if !map
        .get("mail_version")
        .is_some_and(|v| v.starts_with("3.7."))
    {
        println!("note: installed Postfix is not 3.7; skipping comparison");
        return None;
    }
    Some(map)
}

#[test]
fn table_matches_postconf_d() {
    let Some(pc) = postconf(&["-d"]) else { return };
    for p in params::all() {
        match p.default {
            None => assert!(
                !pc.contains_key(p.name),
                "{} is defined by postconf",
                p.name
            ),
            Some(_) if HOST_DEPENDENT.contains(&p.name) => {}
            Some(d) => assert_eq!(pc.get(p.name).map(String::as_str), Some(d), "{}", p.name),
        }
    }
}

#[test]
fn expansion_matches_postconf_dx() {
    let Some(pc) = postconf(&["-dx"]) else { return };
    let c = Config::builtin(Mode::Smtp, "smtp");
    // postconf itself computes myhostname the same way, so only the
    // process-specific ones and the interface-derived mynetworks differ.
    let skip = ["process_id", "process_name", "mynetworks"];
    for p in params::all().iter().filter(|p| p.default.is_some()) {
        if skip.contains(&p.name) {
            continue;
        }
        assert_eq!(pc.get(p.name), Some(&c.get(p.name)), "{}", p.name);
    }
}
