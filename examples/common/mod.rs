//! What every example shares: its error type and where to find etcd.

/// Any error, printed by `main` before the example exits 1.
pub(crate) type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Endpoints from `ETCD_ENDPOINTS` (comma-separated), else `127.0.0.1:2379`.
#[allow(dead_code)] // the TLS example asks for another default
pub(crate) fn endpoints() -> Vec<String> {
    endpoints_or("127.0.0.1:2379")
}

/// Endpoints from `ETCD_ENDPOINTS` (comma-separated), else `default`.
pub(crate) fn endpoints_or(default: &str) -> Vec<String> {
    let list = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| default.into());
    list.split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}
