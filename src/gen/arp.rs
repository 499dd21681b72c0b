//! The generator's ARP (RFC 826): it answers requests for its ports' own addresses (a
//! router that uses the generator as its next hop resolves it), and finds a gateway's
//! MAC before it sends (`pmdswitch gen --gateway`).

use std::net::Ipv4Addr;

use crate::datapath::wire::l3::{self, Arp, ARP_REPLY, ARP_REQUEST, BROADCAST, ETHERTYPE_ARP};

fn arp_of(frame: &[u8]) -> Option<(l3::Eth, Arp)> {
    let e = l3::parse_eth(frame)?;
    if e.ethertype != ETHERTYPE_ARP {
        return None;
    }
    Some((e, l3::parse_arp(&frame[e.l2_len..])?))
}

/// The reply to `frame` when it is an ARP request for `me` (answered with `mac`).
pub fn reply_to(frame: &[u8], me: Ipv4Addr, mac: [u8; 6]) -> Option<Vec<u8>> {
    let (e, a) = arp_of(frame)?;
    if a.op != ARP_REQUEST || a.tpa != me {
        return None;
    }
    Some(l3::arp_frame(a.sha, e.vlan, &Arp { op: ARP_REPLY, sha: mac, spa: me, tha: a.sha, tpa: a.spa }))
}

/// The MAC `who` announces in `frame` (an ARP reply or request from it).
pub fn mac_of(frame: &[u8], who: Ipv4Addr) -> Option<[u8; 6]> {
    let (_, a) = arp_of(frame)?;
    (a.spa == who && a.sha[0] & 1 == 0).then_some(a.sha)
}

/// A broadcast request for `who` from `me`/`mac`.
pub fn request(who: Ipv4Addr, me: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    l3::arp_frame(BROADCAST, 0, &Arp { op: ARP_REQUEST, sha: mac, spa: me, tha: [0; 6], tpa: who })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_its_own_address_and_learns_the_gateway() {
        let me = Ipv4Addr::new(198, 18, 1, 1);
        let gw = Ipv4Addr::new(198, 18, 1, 254);
        let (mine, theirs) = ([2, 0, 0, 1, 0, 0], [2, 0, 0, 0, 0, 0xfe]);
        let q = request(me, gw, theirs);
        let r = reply_to(&q, me, mine).expect("a request for me is answered");
        assert_eq!(mac_of(&r, me), Some(mine));
        assert_eq!(&r[..6], &theirs, "the reply goes to the asker");
        assert!(reply_to(&q, Ipv4Addr::new(198, 18, 1, 2), mine).is_none(), "not mine");
        assert!(reply_to(&r, me, mine).is_none(), "a reply is not answered");
        assert_eq!(mac_of(&q, gw), Some(theirs), "a request teaches the asker's MAC too");
    }
}
