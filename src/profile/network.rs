//! `[network]`: the run's network mode, its egress allow list (CIDRs) and
//! its bandwidth cap, parsed and checked here; enforced by
//! `isolation::network`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What network a run gets (`network.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own network namespace with only loopback: no network at all.
    None,
    /// Its own network namespace with user-mode NAT (pasta) to the host's
    /// network, under the egress policy and the bandwidth cap.
    Private,
    /// The host's network (no network namespace).
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Private => "private",
            NetworkMode::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<NetworkMode> {
        Some(match s {
            "none" => NetworkMode::None,
            "private" => NetworkMode::Private,
            "host" => NetworkMode::Host,
            _ => return None,
        })
    }

    /// Whether the run has a network namespace of its own.
    pub fn own_namespace(self) -> bool {
        self != NetworkMode::Host
    }
}

/// An IPv4 or IPv6 network in CIDR form (`10.1.0.0/16`, `fd00::/8`); a bare
/// address is a /32 or /128. Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub const fn v4(a: [u8; 4], prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = |why: &str| {
            format!(
                "invalid CIDR \"{s}\": {why} (valid: an IPv4 or IPv6 network like \"10.1.0.0/16\" or \"fd00::/8\", or one address)"
            )
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(bad(&format!("the prefix length must be 0 to {max}"))),
            },
        };
        let c = Cidr { addr, prefix };
        let network = match addr {
            IpAddr::V4(v) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v) & mask).into())
            }
            IpAddr::V6(v) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v) & mask).into())
            }
        };
        if network != addr {
            return Err(bad(&format!(
                "host bits are set (did you mean \"{network}/{prefix}\"?)"
            )));
        }
        Ok(c)
    }
}

/// Destinations a `private` run cannot reach unless `network.allow` lists
/// them: the host's loopback, link-local (cloud metadata at 169.254.169.254),
/// the private and shared (CGNAT) ranges, and "this network"; and the IPv6
/// prefixes that carry IPv4 addresses (NAT64, 6to4, mapped), through which a
/// host with a NAT64 gateway would reach the IPv4 ranges above.
pub const DENIED_BY_DEFAULT: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2002::/16",
    "::ffff:0:0/96",
];

/// `network.bandwidth`: a rate in bits per second from `"10mbit"`,
/// `"1gbit"`, `"500kbit"`, `"64000bit"` (decimal units, as tc writes them;
/// a fraction like `"1.5mbit"` is allowed).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let valid = "valid: a number with a unit bit, kbit, mbit or gbit, e.g. \"10mbit\", \"500kbit\", \"1gbit\"";
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "" => {
            return Err(format!(
                "invalid rate \"{s}\": a unit is required ({valid})"
            ));
        }
        u if u.ends_with("bps") || u.ends_with("byte") || u.ends_with("b") => {
            return Err(format!(
                "invalid rate \"{s}\": \"{u}\" is ambiguous (bytes or bits?); write bits per second ({valid})"
            ));
        }
        _ => return Err(format!("invalid rate \"{s}\" ({valid})")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate \"{s}\" ({valid})"))?;
    let bits = n * mult;
    if !bits.is_finite() || bits < 8000.0 {
        return Err(format!(
            "rate \"{s}\" is below 8kbit, which no program could use ({valid})"
        ));
    }
    if bits > 1e12 {
        return Err(format!(
            "rate \"{s}\" is above 1000gbit; omit the key for no cap"
        ));
    }
    Ok(bits.round() as u64)
}

/// A rate as `parse_rate` reads it back (`10mbit`, `1500kbit`, `123bit`).
pub fn format_rate(bits: u64) -> String {
    for (div, unit) in [
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
    ] {
        if bits.is_multiple_of(div) {
            return format!("{}{unit}", bits / div);
        }
    }
    format!("{bits}bit")
}

/// The resolved `[network]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub mode: NetworkMode,
    /// With `private`: destinations reachable even though a default-denied
    /// range contains them.
    pub allow: Vec<Cidr>,
    /// With `private`: bits per second, each direction.
    pub bandwidth: Option<u64>,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            mode: NetworkMode::None,
            allow: Vec::new(),
            bandwidth: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1Gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5mbit").unwrap(), 1_500_000);
        assert_eq!(parse_rate(" 64000bit ").unwrap(), 64_000);
        for bad in [
            "10",
            "10mb",
            "10MBps",
            "fast",
            "0mbit",
            "1kbit",
            "mbit",
            "1.2.3mbit",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_rate("10mb").unwrap_err().contains("ambiguous"));
        for r in [10_000_000, 1_500_000, 64_000, 12_345, 2_000_000_000] {
            assert_eq!(parse_rate(&format_rate(r)).unwrap(), r);
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.200.0.0/24".parse().unwrap();
        assert!(c.contains("10.200.0.9".parse().unwrap()));
        assert!(!c.contains("10.201.0.9".parse().unwrap()));
        assert_eq!(c.to_string(), "10.200.0.0/24");
        assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().prefix, 32);
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().prefix, 8);
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let e = "10.1.2.3/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("did you mean \"10.0.0.0/8\""), "{e}");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        for d in DENIED_BY_DEFAULT {
            d.parse::<Cidr>().unwrap();
        }
    }
}
