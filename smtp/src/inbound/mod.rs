//! What the MX checks and learns about incoming mail before accepting it: the DNS
//! block lists, and SPF/DKIM/DMARC/ARC with an Authentication-Results header; the
//! spam milter comes next.

pub mod auth_results;
pub mod dnsbl;
