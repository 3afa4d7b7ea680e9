//! Postfix-compatible configuration for the smtp/lmtp delivery agent.
//!
//! Reads main.cf and `-o name=value` overrides with Postfix's syntax, knows the
//! Postfix 3.7 default and type of every parameter the agent (or a default it
//! uses) refers to, expands `$name` references at lookup time as Postfix does,
//! and in LMTP mode answers questions asked by smtp_ name from the lmtp_ twin
//! (see `lmtp.rs`). Every known parameter is expanded and type-checked at load
//! time, so the typed getters cannot fail afterwards. This module does not
//! interpret values (host lookup methods, TLS levels, tables): their users do.

mod defaults;
mod error;
mod expand;
mod lmtp;
mod params;
mod parse;
mod value;

pub use error::{ConfigError, OVERRIDE_ORIGIN};

use params::{Kind, ParamDef};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;
use value::Value;

/// Which protocol personality the agent runs as; it selects the parameter
/// name space (smtp_* or lmtp_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Smtp,
    Lmtp,
}

/// Where an explicit setting came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    MainCf(usize),
    CommandLine,
    Program,
}

#[derive(Debug, Clone)]
struct Setting {
    value: String,
    origin: Origin,
}

/// A loaded configuration: explicit settings over built-in defaults.
#[derive(Debug, Clone)]
pub struct Config {
    mode: Mode,
    process_name: String,
    /// The directory main.cf was read from; the value of $config_directory.
    config_dir: Option<String>,
    main_cf: Option<PathBuf>,
    settings: HashMap<String, Setting>,
    /// gethostname(2), read once.
    kernel_host: Option<String>,
    /// Run-time defaults of myhostname and mydomain (see compute_host_defaults).
    host_myhostname: Option<String>,
    host_mydomain: Option<String>,
    warnings: Vec<String>,
}

/// What a typed getter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Bool,
    Int,
    Time,
}

impl Want {
    /// The kind used for names outside the table.
    fn kind(self) -> Kind {
        match self {
            Want::Bool => Kind::Bool,
            Want::Int => Kind::Long,
            Want::Time => Kind::Time(b's'),
        }
    }

    fn accepts(self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Want::Bool, Kind::Bool)
                | (Want::Int, Kind::Int | Kind::Long)
                | (Want::Time, Kind::Time(_))
        )
    }

    fn empty(self) -> Value {
        match self {
            Want::Bool => Value::Bool(false),
            Want::Int => Value::Int(0),
            Want::Time => Value::Time(0),
        }
    }
}

impl Config {
    /// Built-in defaults only (no main.cf, no overrides).
    pub fn builtin(mode: Mode, process_name: &str) -> Config {
        let mut cfg = Config::bare(mode, process_name);
        // Without main.cf nothing can be malformed except the kernel's host
        // name; compute_host_defaults leaves usable stand-ins in that case.
        let _ = cfg.compute_host_defaults();
        cfg
    }

    /// Loads `config_dir/main.cf` (or `$MAIL_CONFIG/main.cf` when `config_dir`
    /// is `None`; built-in defaults only when neither is given), applies the
    /// `-o` style `overrides` ("name=value") on top, and validates every known
    /// parameter. A missing main.cf in a named directory is an error.
    pub fn load(
        config_dir: Option<&Path>,
        overrides: &[String],
        mode: Mode,
        process_name: &str,
    ) -> Result<Config, ConfigError> {
        let env_dir = std::env::var_os("MAIL_CONFIG");
        Config::load_with_env(config_dir, env_dir, overrides, mode, process_name)
    }

    /// `load` with the MAIL_CONFIG value passed in (tests cannot safely set
    /// environment variables in a threaded test run).
    fn load_with_env(
        config_dir: Option<&Path>,
        env_dir: Option<OsString>,
        overrides: &[String],
        mode: Mode,
        process_name: &str,
    ) -> Result<Config, ConfigError> {
        let dir = match config_dir {
            Some(d) => Some(d.to_path_buf()),
            None => env_dir.filter(|v| !v.is_empty()).map(PathBuf::from),
        };
        let mut cfg = Config::bare(mode, process_name);
        if let Some(dir) = dir {
            cfg.read_main_cf(&dir)?;
        }
        for text in overrides {
            let (name, value) = parse::split_nameval(text).map_err(|err| ConfigError {
                file: Some(PathBuf::from(OVERRIDE_ORIGIN)),
                line: None,
                param: String::new(),
                message: format!("invalid \"-o {text}\" option value: {err}"),
            })?;
            cfg.settings.insert(
                name.to_string(),
                Setting {
                    value: value.to_string(),
                    origin: Origin::CommandLine,
                },
            );
        }
        // Postfix sets process_id after reading the configuration, so nothing
        // can override it.
        cfg.settings.insert(
            "process_id".to_string(),
            Setting {
                value: std::process::id().to_string(),
                origin: Origin::Program,
            },
        );
        cfg.compute_host_defaults()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn bare(mode: Mode, process_name: &str) -> Config {
        let mut settings = HashMap::new();
        settings.insert(
            "process_id".to_string(),
            Setting {
                value: std::process::id().to_string(),
                origin: Origin::Program,
            },
        );
        Config {
            mode,
            process_name: process_name.to_string(),
            config_dir: None,
            main_cf: None,
            settings,
            kernel_host: params::host_name(),
            host_myhostname: None,
            host_mydomain: None,
            warnings: Vec::new(),
        }
    }

    fn read_main_cf(&mut self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join("main.cf");
        let bytes = std::fs::read(&path).map_err(|e| ConfigError {
            file: Some(path.clone()),
            line: None,
            param: String::new(),
            message: format!("cannot open file: {}", crate::log::strerror(&e)),
        })?;
        // Postfix is 8-bit clean; non-UTF-8 bytes (say, Latin-1 in a comment)
        // must not make the file unreadable.
        let text = String::from_utf8_lossy(&bytes);
        let shown = path.display().to_string();
        let entries =
            parse::parse_main_cf(&text, &shown, &mut self.warnings).map_err(|e| ConfigError {
                file: Some(path.clone()),
                line: Some(e.line),
                param: String::new(),
                message: e.message,
            })?;
        for e in entries {
            self.settings.insert(
                e.name,
                Setting {
                    value: e.value,
                    origin: Origin::MainCf(e.line),
                },
            );
        }
        self.config_dir = Some(dir.display().to_string());
        self.main_cf = Some(path);
        Ok(())
    }

    /// Postfix's run-time defaults: myhostname is the kernel's host name,
    /// with ".$mydomain" (or ".localdomain") appended when it has no dot, and
    /// mydomain is what follows the first dot of myhostname ("localdomain"
    /// when there is none). While one is being computed the other is still
    /// undefined, as during Postfix's start-up. On error usable stand-ins are
    /// left in place.
    fn compute_host_defaults(&mut self) -> Result<(), ConfigError> {
        self.host_myhostname = None;
        self.host_mydomain = None;
        let mut result = Ok(());
        if !self.settings.contains_key("myhostname") {
            let host = self
                .kernel_host
                .clone()
                .filter(|h| value::valid_hostname(h).is_ok());
            let name = match host {
                Some(h) if h.contains('.') => h,
                Some(h) => {
                    let domain = if self.settings.contains_key("mydomain") {
                        self.expand_exact("mydomain").unwrap_or_else(|e| {
                            result = Err(e);
                            String::new()
                        })
                    } else {
                        "localdomain".to_string()
                    };
                    format!("{h}.{domain}")
                }
                None => {
                    result = Err(ConfigError::new(
                        "myhostname",
                        format!(
                            "unable to use my own hostname {:?}; set myhostname in main.cf",
                            self.kernel_host.as_deref().unwrap_or("")
                        ),
                    ));
                    "localhost.localdomain".to_string()
                }
            };
            self.host_myhostname = Some(name);
        }
        let hostname = self.expand_exact("myhostname").unwrap_or_else(|e| {
            if result.is_ok() {
                result = Err(e);
            }
            String::new()
        });
        let domain = match hostname.split_once('.') {
            Some((_, d)) => d.to_string(),
            None => "localdomain".to_string(),
        };
        self.host_mydomain = Some(domain);
        result
    }

    /// Checks every known parameter (expansion, type, bounds) and the sanity
    /// checks Postfix makes at start-up. Settings made in main.cf or with -o
    /// are checked first, in order, so the error points at a line if it can.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut explicit: Vec<(&String, &Setting)> = self
            .settings
            .iter()
            .filter(|(name, _)| params::find(name).is_some())
            .collect();
        explicit.sort_by_key(|(name, s)| {
            let order = match s.origin {
                Origin::MainCf(line) => (0, line),
                Origin::CommandLine => (1, 0),
                Origin::Program => (2, 0),
            };
            (order, name.as_str())
        });
        for def in explicit
            .iter()
            .filter_map(|(name, _)| params::find(name))
            .chain(params::all())
        {
            self.check(def)?;
        }
        for name in ["myhostname", "mydomain"] {
            let v = self.expand_exact(name)?;
            value::valid_hostname(&v)
                .map_err(|why| self.error_at(name, format!("bad parameter value: {why}")))?;
        }
        let level = self.expand_exact("compatibility_level")?;
        value::compat_level(&level).map_err(|why| self.error_at("compatibility_level", why))?;
        let host = self.expand_exact("myhostname")?;
        if host.eq_ignore_ascii_case(&self.expand_exact("relayhost")?) {
            return Err(self.error_at(
                "relayhost",
                format!(
                    "myhostname and relayhost parameter settings must not be identical: {host}"
                ),
            ));
        }
        let origin = self.expand_exact("myorigin")?;
        if origin.contains([',', ' ', '\t', '\r', '\n']) {
            return Err(self.error_at(
                "myorigin",
                format!("parameter setting must not contain multiple values: {origin}"),
            ));
        }
        Ok(())
    }

    fn check(&self, def: &ParamDef) -> Result<(), ConfigError> {
        let Some(raw) = self.raw_exact(def.name) else {
            return Ok(());
        };
        let v = self.expand_raw(def.name, raw)?;
        value::convert(def.kind, Some(def), &v)
            .map(|_| ())
            .map_err(|why| self.error_at(def.name, why))
    }

    /// The raw value of exactly this parameter: explicit setting, run-time
    /// default, or table default; `None` when undefined.
    fn raw_exact(&self, name: &str) -> Option<&str> {
        if let Some(s) = self.settings.get(name) {
            return Some(&s.value);
        }
        match name {
            "myhostname" => return self.host_myhostname.as_deref(),
            "mydomain" => return self.host_mydomain.as_deref(),
            "process_name" => return Some(&self.process_name),
            "config_directory" => {
                if let Some(d) = &self.config_dir {
                    return Some(d);
                }
            }
            _ => {}
        }
        params::find(name).and_then(|p| p.default)
    }

    /// Expands `raw`, which is the value of `name` (for error messages).
    fn expand_raw(&self, name: &str, raw: &str) -> Result<String, ConfigError> {
        let lookup = |n: &str| self.raw_exact(n);
        expand::expand(raw, &lookup).map_err(|why| self.error_at(name, why))
    }

    fn expand_exact(&self, name: &str) -> Result<String, ConfigError> {
        match self.raw_exact(name) {
            Some(raw) => self.expand_raw(name, raw),
            None => Ok(String::new()),
        }
    }

    /// An error about exactly this parameter, located where it was set.
    fn error_at(&self, name: &str, message: impl Into<String>) -> ConfigError {
        let (file, line) = match self.settings.get(name).map(|s| s.origin) {
            Some(Origin::MainCf(line)) => (self.main_cf.clone(), Some(line)),
            Some(Origin::CommandLine) => (Some(PathBuf::from(OVERRIDE_ORIGIN)), None),
            Some(Origin::Program) => (None, None),
            // A default can only go wrong through something main.cf set.
            None => (self.main_cf.clone(), None),
        };
        ConfigError {
            file,
            line,
            param: name.to_string(),
            message: message.into(),
        }
    }

    /// The parameter that supplies `name` in this mode.
    fn source_name<'n>(&self, name: &'n str) -> &'n str {
        match lmtp::resolve(self.mode, name) {
            lmtp::Source::Param(p) => p,
            lmtp::Source::Fixed { name, .. } => name,
        }
    }

    /// The raw value that `name` has in this mode.
    fn source_raw(&self, name: &str) -> Option<&str> {
        match lmtp::resolve(self.mode, name) {
            lmtp::Source::Param(p) => self.raw_exact(p),
            lmtp::Source::Fixed { value, .. } => Some(value),
        }
    }

    /// The parameter that supplies `name` in this mode and its raw value.
    fn source<'s, 'n>(&'s self, name: &'n str) -> (&'n str, Option<&'s str>) {
        (self.source_name(name), self.source_raw(name))
    }

    /// The protocol personality.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The parameter name that supplies `name` in this mode, for messages:
    /// `name_for("smtp_helo_timeout")` is "lmtp_lhlo_timeout" in LMTP mode.
    pub fn name_for(&self, name: &str) -> String {
        self.source(name).0.to_string()
    }

    /// The unexpanded value (explicit or default), `None` when undefined.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.source(name).1
    }

    /// The expanded value; empty when undefined.
    pub fn get(&self, name: &str) -> String {
        self.try_get(name).unwrap_or_default()
    }

    /// The expanded value, or why it cannot be expanded (only possible for
    /// names outside the table, or after `set`).
    pub fn try_get(&self, name: &str) -> Result<String, ConfigError> {
        let (pname, raw) = self.source(name);
        debug_assert!(
            raw.is_some() || params::find(pname).is_some(),
            "unknown parameter {pname}"
        );
        match raw {
            Some(raw) => self.expand_raw(pname, raw),
            None => Ok(String::new()),
        }
    }

    /// A yes/no parameter.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.typed(name, Want::Bool), Value::Bool(true))
    }

    /// An integer (int or long) parameter.
    pub fn int(&self, name: &str) -> i64 {
        match self.typed(name, Want::Int) {
            Value::Int(n) => n,
            _ => 0,
        }
    }

    /// A time parameter; a value without unit uses the parameter's default unit.
    pub fn time(&self, name: &str) -> Duration {
        match self.typed(name, Want::Time) {
            Value::Time(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
            _ => Duration::ZERO,
        }
    }

    /// A list parameter split like Postfix's mail_parm_split(): on commas and
    /// whitespace, with "{ a b }" as one element "a b".
    pub fn list(&self, name: &str) -> Vec<String> {
        value::split_list(&self.get(name)).0
    }

    /// `list`, but reports a malformed "{ }" group (Postfix treats it as fatal).
    pub fn try_list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        let text = self.try_get(name)?;
        match value::split_list(&text) {
            (items, None) => Ok(items),
            (_, Some(why)) => Err(self.error_at(self.source(name).0, why)),
        }
    }

    /// Expands `$name` references in arbitrary text against this configuration.
    pub fn expand(&self, text: &str) -> Result<String, ConfigError> {
        let lookup = |n: &str| self.raw_exact(n);
        expand::expand(text, &lookup).map_err(|why| ConfigError::new("", why))
    }

    /// A ConfigError about the parameter that supplies `name` in this mode,
    /// located where it was set, for checks done by the modules that use it.
    pub fn error(&self, name: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.source(name).0, message)
    }

    /// Sets exactly `name` (no smtp_/lmtp_ mapping, like a main.cf line).
    /// Meant for tests; call `validate` to check the result.
    pub fn set(&mut self, name: &str, value: &str) {
        self.settings.insert(
            name.to_string(),
            Setting {
                value: value.to_string(),
                origin: Origin::Program,
            },
        );
        // myhostname and mydomain may depend on what changed; errors leave
        // stand-ins and are reported by validate().
        let _ = self.compute_host_defaults();
    }

    /// The main.cf that was read, if any.
    pub fn main_cf(&self) -> Option<&Path> {
        self.main_cf.as_deref()
    }

    /// Warnings Postfix would log while reading main.cf (overridden entries,
    /// misplaced continuation lines).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A typed value; after a successful load this cannot fail for known
    /// names. Should `set` have broken one, the built-in default is used.
    fn typed(&self, name: &str, want: Want) -> Value {
        let (pname, raw) = self.source(name);
        let def = params::find(pname);
        debug_assert!(def.is_some() || raw.is_some(), "unknown parameter {pname}");
        let kind = def.map_or(want.kind(), |d| d.kind);
        debug_assert!(want.accepts(kind), "parameter {pname} is not {want:?}");
        let Some(raw) = raw else {
            return want.empty();
        };
        let parsed = self
            .expand_raw(pname, raw)
            .ok()
            .and_then(|v| value::convert(kind, def, &v).ok());
        if let Some(v) = parsed {
            return v;
        }
        def.and_then(|d| d.default)
            .and_then(|d| self.expand_raw(pname, d).ok())
            .and_then(|v| value::convert(kind, def, &v).ok())
            .unwrap_or_else(|| want.empty())
    }
}

#[cfg(test)]
mod tests;
