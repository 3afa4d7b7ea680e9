//! Everything Postfix-internal: master's process interface, the attribute protocol, the
//! delivery request from qmgr, queue files, the bounce/defer/trace/verify clients and the
//! postlogd client. Only the daemon front (`daemon`) uses these; the engine never does.

pub mod attr;
pub mod daemon;
pub mod master;
pub mod pass;
pub mod postlog;
pub mod queue;
pub mod request;
pub mod scache;
pub mod status;
pub mod tlsmgr;
