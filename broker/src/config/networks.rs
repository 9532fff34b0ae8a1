//! `[global] trusted-proxies`: a list of IP addresses and networks (`10.0.0.0/8`, `::1`), parsed once per loaded config, asked per connection and request.

use ipnet::IpNet;
use std::net::IpAddr;

/// IP addresses and networks; an address is a network of one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    networks: Vec<IpNet>,
}

/// IPv4-mapped IPv6 addresses as IPv4 (the reference sees clients that way).
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Networks {
    /// Parses each item as a network (`a.b.c.d/n`, `x::/n`) or an address; the first item
    /// that is neither is the error.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Networks, String> {
        let mut networks = Vec::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let network = match item.parse::<IpNet>() {
                Ok(network) => network.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(address) => IpNet::from(canonical(address)),
                    Err(_) => return Err(item.to_string()),
                },
            };
            networks.push(network);
        }
        Ok(Networks { networks })
    }

    /// Whether no network is listed.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `address` (IPv4-mapped IPv6 read as IPv4) is in one of the networks.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_of_both_families() {
        let networks = Networks::parse(["127.0.0.1", " 10.1.0.0/16", "fd00::/8", "::1"]).unwrap();
        let table = [
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.1.255.3", true),
            ("10.2.0.1", false),
            ("fd12::5", true),
            ("fe80::1", false),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.1.0.9", true),
        ];
        for (address, expected) in table {
            assert_eq!(
                networks.contains(address.parse().unwrap()),
                expected,
                "{address}"
            );
        }
        assert!(Networks::parse(Vec::<&str>::new()).unwrap().is_empty());
        assert!(!Networks::default().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_name_or_a_bad_mask_is_the_error() {
        assert_eq!(
            Networks::parse(["127.0.0.1", "proxy.example"]),
            Err("proxy.example".to_string())
        );
        assert_eq!(
            Networks::parse(["10.0.0.0/33"]),
            Err("10.0.0.0/33".to_string())
        );
        // host bits of a network are dropped, as by ipnet's trunc
        let networks = Networks::parse(["10.1.2.3/16"]).unwrap();
        assert!(networks.contains("10.1.9.9".parse().unwrap()));
    }
}
