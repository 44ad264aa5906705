//! What the MX checks and learns about incoming mail before accepting it: the DNSBL,
//! SPF/DKIM/DMARC/ARC with an Authentication-Results header, and the spam milter.

pub mod auth_results;
pub mod dnsbl;
pub mod milter;
