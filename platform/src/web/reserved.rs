//! Names an app may not take: those that would shadow a host of ours on the HTTPS
//! front (an app is looked up by host before anything else, so an app on
//! `my.<domain>` would take the admin API's place).

use crate::admin::Refusal;
use crate::config::Config;

/// App names that are labels of our own hosts, whatever the domain.
const LABELS: &[&str] = &["my", "mta-sts", "autoconfig", "autodiscover"];

/// Refuses an app `name` (when given) or a `host` that is, or would default to, a host
/// of ours: `my`, `mta-sts`, `autoconfig`, `autodiscover`, the host name's first label
/// and `[admin] host`'s; the host name, the admin host, each domain and each of its
/// `my.`, `mta-sts.`, `autoconfig.` and `autodiscover.` hosts.
pub fn check_app(
    config: &Config,
    store: &store::Store,
    name: Option<&str>,
    host: &str,
) -> Result<(), Refusal> {
    let first_label = |h: &str| -> String {
        h.trim_end_matches('.')
            .split('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if let Some(name) = name {
        let name = name.to_ascii_lowercase();
        let mut labels: Vec<String> = LABELS.iter().map(|l| l.to_string()).collect();
        labels.push(first_label(&config.hostname));
        if !config.admin.host.is_empty() {
            labels.push(first_label(&config.admin.host));
        }
        if labels.contains(&name) {
            return Err(Refusal(format!(
                "the app name {name:?} is reserved: it is a host of this server's own"
            )));
        }
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut ours = vec![
        config.hostname.trim_end_matches('.').to_ascii_lowercase(),
        config.admin.host.trim_end_matches('.').to_ascii_lowercase(),
    ];
    for domain in store.domains()? {
        ours.push(domain.name.clone());
        ours.extend(LABELS.iter().map(|l| format!("{l}.{}", domain.name)));
    }
    if ours.contains(&host) {
        return Err(Refusal(format!(
            "the host {host} is reserved: this server serves it itself"
        )));
    }
    Ok(())
}
