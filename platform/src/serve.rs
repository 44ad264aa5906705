//! `postern serve`: bind every listener, drop privileges, open the store, run the
//! protocols on the network driver and the control socket, reload certificates on
//! SIGHUP and shut down gracefully on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::net::{self, Driver, TlsMode};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::privsep::Privileged;

/// The directory incoming messages are spooled in past 1 MiB (anonymous files: none
/// outlives its session), on the data directory's file system.
fn spool_dir(data_dir: &Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = data_dir.join("spool");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The activity log's upkeep: each minute the refusal counts whose minute is over
/// are written ([`store::Store::flush_refusals`]); once a day (and at start) entries
/// older than `[audit] keep_days` are deleted. At shutdown the counts still open are
/// written.
async fn audit_upkeep(
    store: Arc<store::Store>,
    config: store::AuditConfig,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut next_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let store2 = store.clone();
        let prune = tokio::time::Instant::now() >= next_prune && config.keep_days > 0;
        let keep = Duration::from_secs(u64::from(config.keep_days) * 86_400);
        let done = tokio::task::spawn_blocking(move || {
            store2.flush_refusals(false)?;
            if prune {
                let before = std::time::SystemTime::now()
                    .checked_sub(keep)
                    .unwrap_or(std::time::UNIX_EPOCH);
                let removed = store2.prune_events(before)?;
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "activity log entries past [audit] keep_days deleted"
                    );
                }
            }
            Ok::<_, store::Error>(())
        })
        .await;
        if prune {
            next_prune = tokio::time::Instant::now() + Duration::from_secs(86_400);
        }
        if !matches!(done, Ok(Ok(()))) {
            tracing::error!(?done, "activity log upkeep failed");
        }
    }
    let flushed = tokio::task::spawn_blocking(move || store.flush_refusals(true)).await;
    if !matches!(flushed, Ok(Ok(_))) {
        tracing::error!("could not write the last refusal counts to the activity log");
    }
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
enum Service {
    Mx,
    Submission,
    Imap,
    ManageSieve,
    Http,
    Https,
}

struct Planned {
    name: &'static str,
    service: Service,
    mode: TlsMode,
    addrs: Vec<SocketAddr>,
}

fn plan(config: &Config) -> Vec<Planned> {
    let p = |name, service, mode, addrs: &Vec<SocketAddr>| Planned {
        name,
        service,
        mode,
        addrs: addrs.clone(),
    };
    vec![
        p("smtp", Service::Mx, TlsMode::StartTls, &config.smtp.listen),
        p(
            "submission",
            Service::Submission,
            TlsMode::StartTls,
            &config.submission.listen,
        ),
        p(
            "submissions",
            Service::Submission,
            TlsMode::Implicit,
            &config.submission.listen_tls,
        ),
        p(
            "imaps",
            Service::Imap,
            TlsMode::Implicit,
            &config.imap.listen_tls,
        ),
        p(
            "imap",
            Service::Imap,
            TlsMode::StartTls,
            &config.imap.listen,
        ),
        p(
            "managesieve",
            Service::ManageSieve,
            TlsMode::StartTls,
            &config.managesieve.listen,
        ),
        p("http", Service::Http, TlsMode::Plain, &config.http.listen),
        p(
            "https",
            Service::Https,
            TlsMode::Implicit,
            &config.https.listen,
        ),
    ]
}

/// A bound listener: its name, protocol, TLS mode, address and socket.
type Bound = (
    &'static str,
    Service,
    TlsMode,
    SocketAddr,
    std::net::TcpListener,
);

/// Runs the server until SIGTERM or SIGINT. Started as root with `[server] run_as`
/// set (the default), everything that needs root happens first, while the process is
/// still one thread: the data directory is given to that user, the certificates are
/// loaded, the ports bound and the privileged helper started; then the process
/// becomes that user for good, and only then does anything read the network.
pub fn run(config: Config, config_flag: Option<&Path>) -> Result<()> {
    common::install_crypto_provider();
    raise_file_limit();
    // Every file serve creates is private: the control socket is never, even for a
    // moment, open to other users.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mode = crate::privsep::user::mode(&config.server.run_as)?;
    ensure_data_dir(&config.data_dir)?;
    let tls = load_tls(&config)?;
    let mut bound: Vec<Bound> = Vec::new();
    for planned in plan(&config) {
        for addr in &planned.addrs {
            let listener = net::bind(*addr)
                .with_context(|| format!("cannot listen on {addr} for {}", planned.name))?;
            bound.push((planned.name, planned.service, planned.mode, *addr, listener));
        }
    }
    let privileged = match mode {
        crate::privsep::user::Mode::Same => {
            if nix::unistd::Uid::effective().is_root() {
                tracing::warn!(
                    "running as root: every protocol parser has root's privileges (set `[server] run_as`)"
                );
            }
            Privileged::Direct(Arc::new(config.clone()))
        }
        crate::privsep::user::Mode::Separate(name) => separate(&config, config_flag, &name)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(config, tls, bound, privileged.clone()));
    drop(runtime);
    if let Privileged::Helper(helper) = privileged {
        helper.stop();
    }
    result
}

/// As root: makes the data directory the service user's, starts the privileged
/// helper, and becomes the user.
fn separate(config: &Config, config_flag: Option<&Path>, name: &str) -> Result<Privileged> {
    use crate::privsep::user;
    let service = user::ensure(name)?;
    let (config_file, _) = crate::config::locate(config_flag);
    if let Ok(meta) = std::fs::metadata(&config_file) {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() == service.uid.as_raw() && !service.uid.is_root() {
            bail!(
                "the configuration {} belongs to {name}, the user the server runs as, so the server could have changed it: check it, then `chown root {}`",
                config_file.display(),
                config_file.display()
            );
        }
    }
    // The configuration stays root's: the server must not be able to change what root
    // reads at its next start.
    let keep = [config_file, config.data_dir.join(crate::config::FILE_NAME)];
    user::own_data_dir(&config.data_dir, &service, &keep)?;
    if !config.backup.dir.as_os_str().is_empty() {
        std::fs::create_dir_all(&config.backup.dir)
            .with_context(|| format!("creating {}", config.backup.dir.display()))?;
        nix::unistd::chown(&config.backup.dir, Some(service.uid), Some(service.gid))
            .with_context(|| format!("giving {} to {name}", config.backup.dir.display()))?;
    }
    let helper = crate::privsep::Client::start(config_flag)?;
    user::become_user(&service)?;
    tracing::info!(
        user = name,
        uid = service.uid.as_raw(),
        helper_pid = helper.pid().unwrap_or(0),
        "privileges dropped: the protocols run as {name}, the firewall and containers through the privileged helper"
    );
    Ok(Privileged::Helper(Arc::new(helper)))
}

async fn serve(
    config: Config,
    tls: common::tls::Tls,
    bound: Vec<Bound>,
    privileged: Privileged,
) -> Result<()> {
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir))
        .await?
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let store = Arc::new(store);
    // Bodies written before a crash whose index commit never happened.
    let sweeper = store.clone();
    match tokio::task::spawn_blocking(move || sweeper.sweep_orphan_blobs()).await? {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed message bodies left by an interrupted write"
        ),
        Err(e) => tracing::warn!(error = %e, "could not sweep orphaned message bodies"),
    }
    let deny = {
        let (config, store) = (config.clone(), store.clone());
        tokio::task::spawn_blocking(move || crate::firewall::deny_list(&config, &store))
            .await?
            .map_err(|e| anyhow::anyhow!("loading blocks and bans: {e}"))?
    };
    let deny = Arc::new(deny);
    if config.firewall.manage {
        let (config, store, privileged) = (config.clone(), store.clone(), privileged.clone());
        tokio::task::spawn_blocking(move || apply_firewall(&config, &store, &privileged)).await?;
    }
    // New bans go into the firewall's ban set too when we manage it.
    let on_ban = config
        .firewall
        .manage
        .then(|| crate::firewall::ban_hook(privileged.clone()));
    let auth = Arc::new(
        store::login::Authenticator::new(store.clone(), &config.auth)
            .with_bans(deny.clone(), on_ban),
    );

    // Each app container (one address each) gets its own relay connection rate.
    let app_rate = vec![(
        ipnet::IpNet::V4(config.apps.subnet),
        config.apps.mail_connections_per_second,
    )];
    let driver = Driver::with_deny_list(&config.net, Some(tls.clone()), deny.clone(), app_rate);
    let dnsbl = if config.spam.dnsbl.is_empty() {
        None
    } else {
        let resolver =
            common::dns::resolver(&config.dns).context("the DNS resolver for [spam] dnsbl")?;
        Some(smtp::inbound::dnsbl::Dnsbl::new(
            resolver,
            config.spam.dnsbl.clone(),
            config.spam.trusted_networks.clone(),
        ))
    };
    let stop_queue = CancellationToken::new();
    let queue = smtp::queue::Queue::new(
        store.clone(),
        config.queue.clone(),
        config.hostname.clone(),
        common::dns::resolver(&config.dns).context("the DNS resolver for the outbound queue")?,
    )
    .map_err(|e| anyhow::anyhow!("the outbound queue: {e}"))?;
    let queue_task = tokio::spawn(queue.clone().run(stop_queue.clone().cancelled_owned()));
    let sieve = Arc::new(sieve::Engine::new(&config.sieve, &config.hostname));
    let smtp_context = Arc::new(smtp::session::Context {
        sieve: sieve.clone(),
        hostname: config.hostname.clone(),
        config: config.smtp.clone(),
        store: store.clone(),
        stats: Default::default(),
        auth: auth.clone(),
        dnsbl,
        verifier: Some(
            smtp::inbound::auth_results::Verifier::new(&config.dns, &config.hostname)
                .context("setting up SPF/DKIM/DMARC verification")?,
        ),
        milter: (!config.spam.milter.is_empty()).then(|| {
            (
                smtp::inbound::milter::MilterConfig {
                    address: config.spam.milter.clone(),
                    timeout: Duration::from_secs(config.spam.milter_timeout_seconds.max(1)),
                },
                config.spam.milter_fail_open,
            )
        }),
        queue: Some(queue),
        limits: smtp::session::Limits::new(&config.submission),
        srs: smtp::srs::Srs::new(
            &store
                .secret("srs", 32)
                .context("the SRS key in the store")?,
        ),
        spool_dir: spool_dir(&config.data_dir)?,
    });
    let mx = Arc::new(smtp::session::Smtp::new(
        smtp_context.clone(),
        smtp::session::Mode::Mx,
    ));
    let submission = Arc::new(smtp::session::Smtp::new(
        smtp_context,
        smtp::session::Mode::Submission,
    ));
    let imap = Arc::new(imap::session::Imap::new(
        store.clone(),
        auth.clone(),
        &config.imap,
    ));
    let managesieve = Arc::new(sieve::managesieve::ManageSieve::new(
        store.clone(),
        auth.clone(),
        sieve,
    ));
    let running = Arc::new(crate::running::Running {
        deny: deny.clone(),
        tls: tls.clone(),
        privileged: privileged.clone(),
    });
    {
        // The self-signed certificate names every host served (domains added while
        // no server ran included).
        let (running, config, store) = (running.clone(), config.clone(), store.clone());
        tokio::task::spawn_blocking(move || running.names_changed(&config, &store)).await?;
    }
    let port = |v: &[SocketAddr]| v.first().map(|a| a.port());
    let http01 = Arc::new(crate::acme::Http01::default());
    let web = Arc::new(crate::web::Web {
        deny: deny.clone(),
        http01: http01.clone(),
        config: Arc::new(config.clone()),
        api: crate::api::Api::new(&config.admin, auth.clone()),
        admin_host: config.admin.host.trim_end_matches('.').to_ascii_lowercase(),
        ready: std::sync::atomic::AtomicBool::new(false),
        limiter: common::rate::KeyedBuckets::new(
            config.http.requests_per_second.max(1),
            config.http.requests_per_second.max(1),
        ),
        over_limit_log: common::rate::LogOnce::new(Duration::from_secs(60)),
        store: store.clone(),
        hostname: config.hostname.clone(),
        https_port: port(&config.https.listen).unwrap_or(443),
        submissions_port: port(&config.submission.listen_tls),
        submission_port: port(&config.submission.listen),
        imaps_port: port(&config.imap.listen_tls),
        caps: crate::web::caps(&config.http),
        running: running.clone(),
    });
    for (name, service, mode, addr, listener) in bound {
        match service {
            Service::Mx => driver.serve(listener, name, mode, mx.clone()),
            Service::Submission => driver.serve(listener, name, mode, submission.clone()),
            Service::Imap => driver.serve(listener, name, mode, imap.clone()),
            Service::ManageSieve => driver.serve(listener, name, mode, managesieve.clone()),
            Service::Http => crate::web::serve_http(listener, web.clone()),
            Service::Https => crate::web::serve_https(listener, web.clone(), &tls),
        }
        .with_context(|| format!("cannot serve {name} on {addr}"))?;
        let tls = match mode {
            TlsMode::Implicit => "implicit TLS",
            TlsMode::StartTls => "STARTTLS",
            TlsMode::Plain => "plaintext",
        };
        tracing::info!("listening: {name} on {addr} ({tls})");
    }
    // Apps in containers that should run and do not (after a reboot, say).
    {
        let (config, store) = (config.clone(), store.clone());
        let privileged = privileged.clone();
        tokio::task::spawn_blocking(move || crate::containers::boot(&config, &store, &privileged));
    }
    // Every listener is bound and served: /healthz says so until shutdown begins.
    web.ready.store(true, std::sync::atomic::Ordering::Release);

    let config = Arc::new(config);
    // Certificates are ordered once the listeners answer the CA's challenges.
    let acme = crate::acme::start(config.clone(), store.clone(), tls.clone(), http01);
    let stop_backups = CancellationToken::new();
    let backups = (!config.backup.dir.as_os_str().is_empty()).then(|| {
        if config.backup.passphrase_file.as_os_str().is_empty() {
            tracing::warn!(
                dir = %config.backup.dir.display(),
                "nightly backups are NOT encrypted: set `[backup] passphrase_file`"
            );
        }
        tokio::spawn(crate::backup::nightly(
            config.clone(),
            store.clone(),
            stop_backups.clone(),
        ))
    });
    let stop_audit = CancellationToken::new();
    let audit_task = tokio::spawn(audit_upkeep(
        store.clone(),
        config.audit.clone(),
        stop_audit.clone(),
    ));
    let stop_control = CancellationToken::new();
    let control_socket = crate::control::bind(&config.data_dir)?;
    let mut control = tokio::spawn(crate::control::serve(
        control_socket,
        config.clone(),
        store.clone(),
        acme,
        running.clone(),
        stop_control.clone(),
    ));

    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tracing::info!(hostname = %config.hostname, data_dir = %config.data_dir.display(), "postern is running");
    let control_ended = loop {
        tokio::select! {
            _ = hup.recv() => match tls.reload() {
                Ok(n) => tracing::info!(certificates = n, "SIGHUP: certificates reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed, keeping the old ones"),
            },
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            ended = &mut control => break Some(ended),
        }
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    tracing::info!(
        grace_seconds = grace.as_secs(),
        open_sessions = driver.shutdown().open_sessions(),
        "shutting down"
    );
    web.ready.store(false, std::sync::atomic::Ordering::Release);
    driver.shutdown().run(grace).await;
    stop_queue.cancel();
    if let Err(e) = queue_task.await {
        tracing::error!(error = %e, "the queue worker failed");
    }
    // A nightly backup under way is finished first (it holds no lock deliveries wait for).
    stop_backups.cancel();
    if let Some(task) = backups
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "the nightly backup task failed");
    }
    stop_audit.cancel();
    if let Err(e) = audit_task.await {
        tracing::error!(error = %e, "the activity log upkeep failed");
    }
    stop_control.cancel();
    let ended = match control_ended {
        Some(ended) => ended,
        None => control.await,
    };
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("control socket")),
        Err(e) => bail!("control socket task failed: {e}"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Every connection is a file: the soft open-file limit goes up to the hard one.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
    }
}

fn ensure_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Loads the certificates; with the default paths and no certificate yet, makes a
/// self-signed one for the host name so that a server with no configuration runs.
fn load_tls(config: &Config) -> Result<common::tls::Tls> {
    let tls_dir = config.data_dir.join("tls");
    if config.tls.cert.as_os_str().is_empty() && !tls_dir.join("cert.pem").exists() {
        tracing::warn!(dir = %tls_dir.display(), "no certificate: generating a self-signed one for {}", config.hostname);
        common::tls::write_self_signed(&tls_dir, std::slice::from_ref(&config.hostname))?;
    }
    common::tls::Tls::load(&config.tls, &config.data_dir).context("loading the TLS certificate")
}

/// `[firewall] manage`: applies the rules at start. A failure is logged, not fatal:
/// mail keeps flowing, and blocks and bans are still refused by the listeners.
fn apply_firewall(config: &Config, store: &store::Store, privileged: &Privileged) {
    match crate::firewall::apply(config, store, privileged) {
        Ok(plan) => tracing::info!(
            blocks = plan.blocks.len(),
            lists = plan.lists.len(),
            bans = plan.bans.len(),
            "firewall applied"
        ),
        Err(e) => tracing::error!(
            error = e.0,
            "[firewall] manage: could not apply the firewall"
        ),
    }
}
