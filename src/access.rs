//! Who may use the service, and under which scanning policy: the client allow-list and the
//! policy table, both compiled once from the configuration and consulted without allocation.
//!
//! Networks are CIDR blocks, IPv4 or IPv6. Every block becomes a range of 128-bit addresses
//! with IPv4 mapped into `::ffff:0:0/96`, so one sorted list answers for both families, and an
//! IPv4 client reaching a dual-stack listener as `::ffff:10.0.0.1` matches `10.0.0.0/8`. The
//! ranges are sorted and merged, so a lookup is one binary search.
//!
//! The policy table is a list of rules, each naming networks, users and groups and the policy
//! they get; the first rule with any match wins, and a transaction no rule matches gets
//! `default`. Users and groups are exact, case-sensitive names held in hash sets.

use std::collections::HashSet;
use std::net::IpAddr;

/// A set of networks, as sorted, non-overlapping, non-adjacent inclusive address ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    ranges: Vec<(u128, u128)>,
}

/// An address as a point of the IPv6 space (IPv4 mapped into `::ffff:0:0/96`).
fn point(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl NetSet {
    /// Parses CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a single host).
    /// Host bits below the prefix are refused, since `10.1.2.3/8` is more likely a typo than
    /// a wish for all of 10/8.
    pub fn parse<S: AsRef<str>>(blocks: &[S]) -> Result<NetSet, String> {
        let mut ranges = Vec::with_capacity(blocks.len());
        for block in blocks {
            let text = block.as_ref().trim();
            let net: ipnet::IpNet = match text.parse() {
                Ok(net) => net,
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        return Err(format!("'{text}' is not a CIDR network (want e.g. 10.0.0.0/8 or 2001:db8::/32)"))
                    }
                },
            };
            if net.trunc() != net {
                return Err(format!("'{text}' has host bits set (did you mean {}?)", net.trunc()));
            }
            let (first, last) = match net {
                ipnet::IpNet::V4(n) => (point(IpAddr::V4(n.network())), point(IpAddr::V4(n.broadcast()))),
                ipnet::IpNet::V6(n) => {
                    let first = u128::from(n.network());
                    let host_bits = 128 - u32::from(n.prefix_len());
                    let last = first | if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
                    (first, last)
                }
            };
            ranges.push((first, last));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Ok(NetSet { ranges: merged })
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Address ranges after merging overlapping and adjacent networks.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Whether `ip` lies in one of the networks (one binary search, no allocation).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let p = point(ip);
        // The last range starting at or before `p`.
        let i = self.ranges.partition_point(|&(a, _)| a <= p);
        i > 0 && p <= self.ranges[i - 1].1
    }
}

/// Which connecting addresses may use the service. Empty means everyone: the default, since
/// icapd normally listens where only proxies reach it, and a service that refuses its proxy
/// out of the box is a worse first hour than one that trusts the network it was put on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: NetSet,
}

impl AllowList {
    pub fn new(nets: NetSet) -> AllowList {
        AllowList { nets }
    }

    /// Whether everyone may connect (no list configured).
    pub fn is_open(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &NetSet {
        &self.nets
    }

    /// Whether a connection from `peer` may be served.
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.nets.is_empty() || self.nets.contains(peer)
    }
}

/// The scanning policy a transaction runs under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// The configured scanning, limits and early-204 rules.
    #[default]
    Default,
    /// No scanning: the object is clean at `begin`, and the transaction is counted and
    /// logged under this policy (never silently).
    Skip,
    /// No early 204 for a clean preview, `strict_scan_bytes_max` instead of `scan_bytes_max`,
    /// and objects over a limit are blocked whatever `policy.over_limit` says.
    Strict,
}

/// Every policy, in the order of the metrics' slots.
pub const POLICIES: [PolicyKind; 3] = [PolicyKind::Default, PolicyKind::Skip, PolicyKind::Strict];

impl PolicyKind {
    pub fn parse(name: &str) -> Option<PolicyKind> {
        POLICIES.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Default => "default",
            PolicyKind::Skip => "skip",
            PolicyKind::Strict => "strict",
        }
    }

    /// Index into [`POLICIES`].
    pub fn slot(self) -> usize {
        self as usize
    }
}

/// One rule of the policy table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub networks: NetSet,
    pub users: HashSet<Box<[u8]>>,
    pub groups: HashSet<Box<[u8]>>,
    pub policy: PolicyKind,
}

/// Who is asking, as the policy table sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asker<'a> {
    /// The end user's address (`X-Client-IP`), or else the connecting address.
    pub ip: Option<IpAddr>,
    pub user: Option<&'a [u8]>,
}

/// The rules in configuration order; first match wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTable {
    pub rules: Vec<PolicyRule>,
}

impl PolicyTable {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule looks at groups (so the caller can skip decoding them otherwise).
    pub fn uses_groups(&self) -> bool {
        self.rules.iter().any(|r| !r.groups.is_empty())
    }

    /// The policy for `asker` with the groups `groups` yields (called once per transaction).
    pub fn evaluate(
        &self,
        asker: Asker<'_>,
        mut groups: impl FnMut(&mut dyn FnMut(&[u8]) -> bool) -> bool,
    ) -> PolicyKind {
        for rule in &self.rules {
            if asker.ip.is_some_and(|ip| rule.networks.contains(ip)) {
                return rule.policy;
            }
            if asker.user.is_some_and(|u| rule.users.contains(u)) {
                return rule.policy;
            }
            if !rule.groups.is_empty() && groups(&mut |g| rule.groups.contains(g)) {
                return rule.policy;
            }
        }
        PolicyKind::Default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_of_both_families() {
        let set = NetSet::parse(&["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32", "192.168.1.7"]).unwrap();
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "127.0.0.1",
            "2001:db8::1",
            "2001:db8:ffff::",
            "192.168.1.7",
            "::ffff:10.1.2.3",
        ] {
            assert!(set.contains(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.0", "9.255.255.255", "127.0.0.2", "2001:db9::", "::1", "192.168.1.8", "::ffff:11.0.0.1"] {
            assert!(!set.contains(ip(no)), "{no}");
        }
        let all = NetSet::parse(&["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.contains(ip("1.2.3.4")) && all.contains(ip("fe80::1")));
        let mapped = NetSet::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.contains(ip("10.9.9.9")) && !mapped.contains(ip("11.0.0.0")));
    }

    #[test]
    fn overlapping_and_adjacent_blocks_merge() {
        let set = NetSet::parse(&["10.0.1.0/24", "10.0.0.0/24", "10.0.0.128/25", "10.0.3.0/24"]).unwrap();
        assert_eq!(set.ranges.len(), 2, "{set:?}");
        assert!(set.contains(ip("10.0.1.255")) && !set.contains(ip("10.0.2.0")) && set.contains(ip("10.0.3.1")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        assert!(NetSet::parse(&["10.0.0.0/33"]).is_err());
        assert!(NetSet::parse(&["10.1.2.3/8"]).unwrap_err().contains("10.0.0.0/8"));
        assert!(NetSet::parse(&["localhost"]).is_err());
        assert!(NetSet::parse(&["2001:db8::/129"]).is_err());
    }

    #[test]
    fn empty_allow_list_allows_everyone() {
        assert!(AllowList::default().allows(ip("203.0.113.9")));
        let list = AllowList::new(NetSet::parse(&["127.0.0.1/32"]).unwrap());
        assert!(list.allows(ip("127.0.0.1")) && !list.allows(ip("127.0.0.2")));
    }

    #[test]
    fn first_matching_rule_wins() {
        let set = |names: &[&str]| names.iter().map(|n| n.as_bytes().into()).collect::<HashSet<Box<[u8]>>>();
        let table = PolicyTable {
            rules: vec![
                PolicyRule { users: set(&["alice"]), policy: PolicyKind::Strict, ..Default::default() },
                PolicyRule {
                    networks: NetSet::parse(&["10.0.0.0/8"]).unwrap(),
                    groups: set(&["cdn"]),
                    policy: PolicyKind::Skip,
                    ..Default::default()
                },
            ],
        };
        let no_groups = |_: &mut dyn FnMut(&[u8]) -> bool| false;
        let eval = |ip_: Option<&str>, user: Option<&str>| {
            table.evaluate(Asker { ip: ip_.map(ip), user: user.map(str::as_bytes) }, no_groups)
        };
        assert_eq!(eval(Some("10.1.1.1"), Some("alice")), PolicyKind::Strict);
        assert_eq!(eval(Some("10.1.1.1"), Some("bob")), PolicyKind::Skip);
        assert_eq!(eval(Some("11.1.1.1"), Some("bob")), PolicyKind::Default);
        assert_eq!(eval(None, None), PolicyKind::Default);
        let in_cdn = |f: &mut dyn FnMut(&[u8]) -> bool| [&b"staff"[..], b"cdn"].iter().any(|g| f(g));
        assert_eq!(table.evaluate(Asker { ip: None, user: Some(b"bob") }, in_cdn), PolicyKind::Skip);
        assert_eq!(PolicyKind::parse("strict"), Some(PolicyKind::Strict));
        assert_eq!(PolicyKind::parse("lenient"), None);
        assert!(POLICIES.iter().enumerate().all(|(i, p)| p.slot() == i));
    }
}
