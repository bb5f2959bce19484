//! The process-wide redactor: every secret value this process has loaded (the vault secrets a
//! run reads, the vault passphrase), for sinks that are not tied to one run — the tracing
//! output above all (see `crate::trace`).

use std::sync::{Arc, Mutex, RwLock};

use zeroize::Zeroizing;

use super::{MIN_LEN, Redactor};

/// The values registered so far (zeroized when dropped).
static VALUES: Mutex<Vec<Zeroizing<String>>> = Mutex::new(Vec::new());
/// A redactor built from `VALUES`, rebuilt when a value is added.
static CURRENT: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Adds secret values to the process-wide redactor (values already known, and values shorter
/// than [`MIN_LEN`], are ignored).
pub fn register_global<'a, I>(values: I)
where
    I: IntoIterator<Item = &'a str>,
{
    let Ok(mut known) = VALUES.lock() else {
        return;
    };
    let before = known.len();
    for v in values {
        if v.chars().count() >= MIN_LEN && !known.iter().any(|k| k.as_str() == v) {
            known.push(Zeroizing::new(v.to_owned()));
        }
    }
    if known.len() == before {
        return;
    }
    let rebuilt = Arc::new(Redactor::new(known.iter().map(|v| v.as_str())));
    if let Ok(mut current) = CURRENT.write() {
        *current = Some(rebuilt);
    }
}

/// The process-wide redactor as it is now (cheap: a shared pointer).
pub fn global() -> Arc<Redactor> {
    CURRENT
        .read()
        .ok()
        .and_then(|c| c.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_process_wide() {
        let value = "glObal-Registry-Canary-1";
        assert_eq!(global().redact(value), value);
        register_global([value, "ab"]);
        register_global([value]);
        let text = format!("x={value} short=ab");
        assert_eq!(global().redact(&text), "x=*** short=ab");
    }
}
