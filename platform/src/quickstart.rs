//! `postern quickstart`: a working server from nothing. Creates the data directory and
//! its configuration, the admin's domain and account, the domain's DKIM keys and a
//! self-signed certificate, and prints the password, the listeners and the DNS
//! records.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::admin;
use crate::config::{self, Config};

/// Runs quickstart; returns the text to print.
/// With `acme_email`, certificates come from Let's Encrypt (`[acme]`) with that
/// contact address.
pub fn run(
    admin_email: &str,
    data_dir: Option<&Path>,
    hostname: Option<&str>,
    acme_email: Option<&str>,
) -> Result<String> {
    let admin_email = admin_email.trim().to_ascii_lowercase();
    let Some((_, domain)) = admin_email
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && d.contains('.'))
    else {
        bail!("{admin_email:?} is not an email address like admin@example.com");
    };
    let domain = domain.to_string();
    let dir = data_dir.map_or_else(|| PathBuf::from("postern-data"), Path::to_path_buf);
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            bail!(
                "{} already exists and is not empty: quickstart never touches an existing data directory",
                dir.display()
            );
        }
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let hostname = hostname.map_or_else(|| format!("mail.{domain}"), str::to_ascii_lowercase);

    let acme = match acme_email.map(str::trim) {
        Some(email) if !email.contains('@') => {
            bail!("--acme-email {email:?} is not an email address")
        }
        Some(email) => crate::acme::Config {
            directory: crate::acme::LETS_ENCRYPT.into(),
            email: email.to_string(),
            ..Default::default()
        },
        None => crate::acme::Config::default(),
    };
    let config = Config {
        hostname: hostname.clone(),
        data_dir: dir.clone(),
        acme,
        ..Config::default()
    };
    let config_path = dir.join("postern.toml");
    std::fs::write(&config_path, config::render(&config)?)
        .with_context(|| format!("cannot write {}", config_path.display()))?;

    let mut names = vec![hostname.clone()];
    for label in ["my", "mta-sts", "autoconfig"] {
        let name = format!("{label}.{domain}");
        if !names.contains(&name) {
            names.push(name);
        }
    }
    common::tls::write_self_signed(&dir.join("tls"), &names)?;

    let store = store::Store::open(&dir)
        .with_context(|| format!("cannot create the store in {}", dir.display()))?;
    let actor = "quickstart";
    admin::execute(
        &store,
        &config,
        &admin::Request::DomainAdd {
            name: domain.clone(),
        },
        actor,
    )?;
    let added = admin::execute(
        &store,
        &config,
        &admin::Request::UserAdd {
            email: admin_email.clone(),
            password: None,
        },
        actor,
    )?;
    let password = added
        .lines()
        .find_map(|l| l.strip_prefix("Password: "))
        .context("no password was generated")?
        .to_string();
    // The first account administers the server (the admin API).
    store.set_admin(&admin_email, true)?;
    // RFC 5321 §4.5.1 (postmaster) and RFC 2142 (abuse) must reach somebody.
    for role in ["postmaster", "abuse"] {
        let address = format!("{role}@{domain}");
        admin::execute(
            &store,
            &config,
            &admin::Request::AliasAdd {
                address,
                targets: vec![admin_email.clone()],
            },
            actor,
        )?;
    }
    let records = admin::dns_records(&store, &config, &domain)?;
    drop(store);
    // Started as root, `serve` runs as `[server] run_as`: that user is made now and
    // given the data directory (the configuration file stays root's).
    let mut owner_note = String::new();
    if let crate::privsep::user::Mode::Separate(name) =
        crate::privsep::user::mode(&config.server.run_as)?
    {
        let owned = crate::privsep::user::ensure(&name).and_then(|user| {
            crate::privsep::user::own_data_dir(&dir, &user, std::slice::from_ref(&config_path))
        });
        match owned {
            Ok(()) => {
                owner_note = format!(
                    "The server runs as the system user {name} (it owns {}); a privileged helper keeps root for the firewall and containers.\n",
                    dir.display()
                );
            }
            Err(e) => owner_note = format!("Warning: {e:#}\n"),
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Created {} (configuration: {})",
        dir.display(),
        config_path.display()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Admin account: {admin_email}");
    let _ = writeln!(out, "Password: {password}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Start the server with: postern serve --config {}",
        config_path.display()
    );
    out.push_str(&owner_note);
    let _ = writeln!(out, "It will listen on:");
    let listeners: [(&str, &[std::net::SocketAddr]); 8] = [
        ("SMTP (MX, STARTTLS)", &config.smtp.listen),
        ("Submission (STARTTLS)", &config.submission.listen),
        ("Submission (implicit TLS)", &config.submission.listen_tls),
        ("IMAPS", &config.imap.listen_tls),
        ("IMAP (STARTTLS)", &config.imap.listen),
        ("ManageSieve (STARTTLS)", &config.managesieve.listen),
        ("HTTP (redirects to HTTPS)", &config.http.listen),
        ("HTTPS", &config.https.listen),
    ];
    for (what, addrs) in listeners {
        for addr in addrs {
            let _ = writeln!(out, "  {what:<27} {addr}");
        }
    }
    let _ = writeln!(out);
    if config.acme.directory.is_empty() {
        let _ = writeln!(
            out,
            "The certificate in {} is self-signed: replace it (see [tls] in the configuration),\nor let Let's Encrypt issue them: quickstart --acme-email, or [acme] in the configuration.",
            dir.join("tls").display()
        );
    } else {
        let _ = writeln!(
            out,
            "Certificates come from {} once the DNS records below point here and ports 80\nand 443 reach this server; until then the self-signed one in {} is served.\n`postern acme status` shows each name.",
            config.acme.directory,
            dir.join("tls").display()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Publish these DNS records for {domain} (and an A/AAAA record for {hostname}):"
    );
    out.push_str(&records);
    Ok(out)
}
