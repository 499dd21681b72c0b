//! Two QEMU guests (kernel virtio-net, TCG here) moving a TCP bulk transfer through a
//! pmdswitch cross-connect: the own data path, which offers checksum and TSO offloads
//! and passes a guest's 64 KiB TSO frame to the other guest whole, against the library
//! path, which offers neither (every guest segments and checksums in software).
//! Interleaved rounds, own then lib then own…; the guests run tests/tools/tcpblast,
//! whose receiver checks every byte against the stream the sender made and times the
//! transfer from first byte to EOF. Prints per-round Mbit/s, the medians and the median
//! of per-round ratios.
//!
//! The switch's worker sleeps when idle (`--idle adaptive`, the default here): with two
//! guests' vCPUs on this machine's two cores, a busy-polling worker would take a core
//! the guests need (`--idle poll` to see it).
//!
//!   cargo bench --bench guest_tcp -- [--rounds N] [--mb MB] [--idle adaptive|poll]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use pmdswitch::bed::vm::{build_once, tcp_receiver_cmd, tcp_sender_cmd, Guest, GuestOpts, Transfer};

fn arg(name: &str, default: u32) -> u32 {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1)).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} N")))
}

/// One transfer of `mb` MiB on data path `dp`; None (with the reason printed) when it
/// failed or arrived changed.
fn round(dp: &str, mb: u32, idle: &str) -> Option<Transfer> {
    let s = Scratch::new(&format!("btcp-{dp}"));
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let pm = Pmds::start(
        &s,
        &[
            "--port",
            &format!("a=vhost-server:{sa}"),
            "--port",
            &format!("b=vhost-server:{sb}"),
            "--xconnect",
            "a,b",
            "--cores",
            "1",
            "--vhost-datapath",
            dp,
            "--idle",
            idle,
        ],
    );
    let rcmd = tcp_receiver_cmd();
    let o = |cmd| GuestOpts { server: false, cmd: Some(cmd), timeout: 300, no_offloads: false, gw: None, ..Default::default() };
    let mut b = Guest::boot(&s, "b", &sb, "198.18.0.2/24", &o(&rcmd));
    let scmd = tcp_sender_cmd("198.18.0.2", mb);
    let mut a = Guest::boot(&s, "a", &sa, "198.18.0.1/24", &o(&scmd));
    let (ra, rb) = (a.result(Duration::from_secs(280)), b.result(Duration::from_secs(60)));
    let _ = pm.stop();
    let t = Transfer::of(&b);
    match t {
        Some(t) if ra == Some(0) && rb == Some(0) && t.intact(mb) => Some(t),
        _ => {
            eprintln!("guest_tcp: {dp} round failed (sender {ra:?}, receiver {rb:?}, {t:?})");
            None
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require_bed();
    build_once();
    let (rounds, mb) = (arg("--rounds", 5) as usize, arg("--mb", 32));
    let a: Vec<String> = std::env::args().collect();
    let idle = a.iter().position(|x| x == "--idle").and_then(|i| a.get(i + 1)).cloned().unwrap_or_else(|| "adaptive".into());
    println!("guest TCP through a cross-connect, {mb} MiB per transfer, {rounds} interleaved rounds, --idle {idle}");
    let (mut own, mut lib, mut ratios) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let o = round("own", mb, &idle).map(|t| t.mbps);
        let l = round("lib", mb, &idle).map(|t| t.mbps);
        let show = |v: Option<f64>| v.map_or("failed".to_string(), |x| format!("{x:.0} Mbit/s"));
        println!("round {}: own {}  lib {}", r + 1, show(o), show(l));
        if let (Some(o), Some(l)) = (o, l) {
            ratios.push(o / l);
        }
        own.extend(o);
        lib.extend(l);
    }
    let med = |v: Vec<f64>| pmdswitch::bed::median(v).unwrap_or(f64::NAN);
    println!("median: own {:.0} Mbit/s, lib {:.0} Mbit/s", med(own), med(lib));
    println!("own/lib: median of per-round ratios {:.2}x over {} rounds (target >= 2x)", med(ratios.clone()), ratios.len());
}
