//! Route tables for router benchmarks: `n` distinct random IPv4 prefixes of /8 to /32,
//! half of them routed towards the generator's port a, half towards b. The halves live
//! in disjoint parts of the address space (first octet 1–126 for a, 128–223 for b, none
//! overlapping the test subnets 198.18.0.0/15), so a destination inside a prefix of one
//! half can only match prefixes of that half: every packet has exactly one right egress,
//! which the generator checks (`wrong_port`).
//!
//! Files written: the router's (`PREFIX via:GW` lines, for `ctl route load`), and for
//! each generator port the prefixes it sends to (`--dst-ips PORT=@FILE`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The gateway addresses the generator's ports take (its `--ip`), and the router's
/// interface addresses (its `--ip`, the generator's `--gateway`).
pub const GEN_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const GEN_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const RTR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
pub const RTR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);

/// A small deterministic generator (xorshift64*): the same seed gives the same table on
/// every machine, so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// IPv4 prefixes as (address, length), host bits clear.
pub type Prefixes = Vec<(u32, u8)>;

/// `n` prefixes (`n / 2` each side, at least one): (towards a, towards b).
pub fn generate(n: usize, seed: u64) -> (Prefixes, Prefixes) {
    let mut r = Rng(seed | 1);
    let per = (n / 2).max(1);
    let mut seen = HashSet::new();
    let mut side = |lo: u32, hi: u32, r: &mut Rng| {
        let mut v = Vec::with_capacity(per);
        while v.len() < per {
            let len = 8 + (r.next() % 25) as u8;
            let first = lo + (r.next() % u64::from(hi - lo + 1)) as u32;
            let a = (first << 24) | ((r.next() as u32) & 0x00ff_ffff);
            let m = if len == 32 { u32::MAX } else { !(u32::MAX >> len) };
            let a = a & m;
            // Not over the test subnets (198.18.0.0/15), in either direction.
            let test = 0xc612_0000u32;
            let tm = !(u32::MAX >> 15);
            if (a & tm) == test || (test & m) == a {
                continue;
            }
            // A /8 has only 256 values on each side: short lengths run out before long
            // ones, which is what a real table looks like too.
            if seen.insert((a, len)) {
                v.push((a, len));
            }
        }
        v
    };
    let a = side(1, 126, &mut r);
    let b = side(128, 223, &mut r);
    (a, b)
}

/// Writes the tables for `n` routes under `dir`: returns (router file, generator a's
/// destinations, generator b's destinations). Port a sends to the b half, b to the a half.
pub fn write(dir: &Path, n: usize, seed: u64) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
    let (a, b) = generate(n, seed);
    let fmt = |v: &[(u32, u8)], via: Option<Ipv4Addr>| {
        let mut s = String::with_capacity(v.len() * 32);
        for &(p, l) in v {
            let _ = match via {
                Some(g) => writeln!(s, "{}/{l} via:{g}", Ipv4Addr::from(p)),
                None => writeln!(s, "{}/{l}", Ipv4Addr::from(p)),
            };
        }
        s
    };
    let rf = dir.join(format!("routes-{n}.txt"));
    std::fs::write(&rf, fmt(&a, Some(GEN_A)) + &fmt(&b, Some(GEN_B)))?;
    let da = dir.join(format!("dst-a-{n}.txt"));
    let db = dir.join(format!("dst-b-{n}.txt"));
    std::fs::write(&da, fmt(&b, None))?;
    std::fs::write(&db, fmt(&a, None))?;
    Ok((rf, da, db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_are_disjoint_distinct_and_clear_of_the_test_subnets() {
        let (a, b) = generate(20_000, 7);
        assert_eq!((a.len(), b.len()), (10_000, 10_000));
        let all: HashSet<_> = a.iter().chain(&b).collect();
        assert_eq!(all.len(), 20_000, "distinct");
        for &(p, l) in &a {
            assert!((1..=126).contains(&(p >> 24)) && (8..=32).contains(&l));
        }
        for &(p, l) in &b {
            assert!((128..=223).contains(&(p >> 24)) && (8..=32).contains(&l));
            let m = if l == 32 { u32::MAX } else { !(u32::MAX >> l) };
            assert_ne!(0xc612_0001 & m, p, "covers 198.18.0.0/15");
        }
        assert_eq!(generate(100, 7), generate(100, 7), "deterministic");
        assert_eq!(generate(1, 7).0.len(), 1);
    }
}
