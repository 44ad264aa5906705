//! Two network namespaces joined by a veth pair, for tests that need real addresses
//! other than loopback (firewall rules, bans): `a` is the client side with two
//! addresses, `b` the server side. Private 10.x addresses exist only inside them;
//! dropping the pair deletes both namespaces.

use std::process::{Command, Output};

use anyhow::{Result, bail};

/// The two namespaces and their addresses.
#[derive(Debug)]
pub struct NetnsPair {
    /// The client namespace's name.
    pub a: String,
    /// The server namespace's name.
    pub b: String,
    /// The client's first address.
    pub client: String,
    /// The client's second address (unaffected by what happens to the first).
    pub client2: String,
    /// The server's address.
    pub server: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetnsPair {
    /// Creates the pair; `tag` keeps names and subnets apart between tests.
    pub fn new(tag: u8) -> Result<NetnsPair> {
        crate::harness::ensure_tool("ip", "iproute2")?;
        let pid = std::process::id();
        let a = format!("pst-a{tag}-{pid}");
        let b = format!("pst-b{tag}-{pid}");
        // A subnet per process and test, so parallel runs do not meet.
        let net = format!("10.{}.{}", 200 + u32::from(tag % 50), pid % 250);
        let pair = NetnsPair {
            client: format!("{net}.1"),
            client2: format!("{net}.3"),
            server: format!("{net}.2"),
            a,
            b,
        };
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        let (va, vb) = (format!("pa{tag}x{pid}"), format!("pb{tag}x{pid}"));
        let (va, vb) = (&va[..va.len().min(15)], &vb[..vb.len().min(15)]);
        ip(&[
            "link", "add", va, "netns", &pair.a, "type", "veth", "peer", "name", vb, "netns",
            &pair.b,
        ])?;
        ip(&[
            "-n",
            &pair.a,
            "addr",
            "add",
            &format!("{}/24", pair.client),
            "dev",
            va,
        ])?;
        ip(&[
            "-n",
            &pair.a,
            "addr",
            "add",
            &format!("{}/24", pair.client2),
            "dev",
            va,
        ])?;
        ip(&[
            "-n",
            &pair.b,
            "addr",
            "add",
            &format!("{}/24", pair.server),
            "dev",
            vb,
        ])?;
        for (ns, dev) in [(&pair.a, va), (&pair.b, vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Runs `program args` inside namespace `ns`.
    pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<Output> {
        Ok(Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .output()?)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}
