//! What the MX checks and learns about incoming mail before accepting it: the DNS
//! block lists so far; SPF/DKIM/DMARC/ARC and the spam milter come next.

pub mod dnsbl;
