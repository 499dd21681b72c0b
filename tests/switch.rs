//! The switch as a library object, started in the test's own process (`Switch::start`;
//! the EAL initialises once per process, so this file holds one test): a change applied
//! through `Switch::apply` and a reloaded config file, both under traffic on ports they
//! do not touch, which lose nothing; a bad file and a restart-only change are refused
//! with the running config kept.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pmdswitch::cli::RunArgs;
use pmdswitch::control::protocol::Change;
use pmdswitch::parse;
use pmdswitch::switch::{Switch, SwitchConfig};

#[test]
fn in_process_switch_applies_changes_and_reloads_under_traffic_losing_nothing() {
    require_bed();
    let s = Scratch::new("inproc");
    let (sa, sb) = (s.sock("a.sock"), s.sock("b.sock"));
    let file = s.path("switch.toml");
    let base =
        format!("cores = \"1\"\nxconnect = [\"a,b\"]\n[ports.a]\nspec = \"vhost-server:{sa}\"\n[ports.b]\nspec = \"vhost-server:{sb}\"\n");
    std::fs::write(&file, &base).unwrap();
    let cli = RunArgs {
        config: Some(file.clone()),
        ctl: Some(s.path("ctl")),
        vhost_datapath: std::env::var(pmdswitch::bed::switch::DATAPATH_ENV).ok().filter(|d| !d.is_empty()),
        eal: vec![format!("--file-prefix={}", s.prefix("dut"))],
        ..Default::default()
    };
    let (_, config) = SwitchConfig::load(&cli).unwrap_or_else(|f| panic!("{}", f.message()));
    let mut sw = Switch::start(config, cli).unwrap_or_else(|f| panic!("{}", f.message()));

    // Paced traffic a<->b in the background, for long enough to cover every change.
    let json = s.path("gen.json");
    let mut g = gen_paced(&s, &sa, &sb, "4", &json);
    let rx_a = |sw: &Switch| sw.view().ports().iter().find(|p| p.name == "a").map_or(0, |p| p.totals.rx_packets);
    // Serve until traffic flows (the generator's first frames reached port a).
    let t0 = Instant::now();
    while rx_a(&sw) < 1000 {
        sw.serve(Instant::now() + Duration::from_millis(10)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(30), "no traffic from the generator");
    }

    // A change through the library: two ports and a cross-connect, all or nothing.
    let def = |a: &str| parse::parse_port(a).unwrap();
    let said = sw
        .apply(&[
            Change::AddPort { def: def("c=vdev:net_null0"), queues: 1 },
            Change::AddPort { def: def("d=vdev:net_null1"), queues: 1 },
            Change::Xconnect { a: "c".into(), b: "d".into() },
        ])
        .unwrap();
    assert_eq!(said.len(), 3, "{said:?}");
    // One refused change undoes the ones before it: e does not stay behind.
    let e = sw.apply(&[Change::AddPort { def: def("e=vdev:net_null2"), queues: 1 }, Change::Xconnect { a: "e".into(), b: "zz".into() }]);
    assert!(e.is_err_and(|e| e.contains("xconnect e,zz")));
    assert!(!sw.running().ports.contains_key("e"), "a refused change left port e");

    // The file, changed: c and d go, f comes with a route-free cross-connect to g.
    let next = format!("{base}[ports.f]\nspec = \"vdev:net_null3\"\n[ports.g]\nspec = \"vdev:net_null4\"\n")
        .replace("[\"a,b\"]", "[\"a,b\", \"f,g\"]");
    std::fs::write(&file, &next).unwrap();
    let m = sw.reload().unwrap();
    assert!(m.contains("del-port c") && m.contains("add-port f") && m.contains("xconnect f,g"), "{m}");
    assert!(!m.contains(" a ") && !m.contains("port a") && !m.contains("port b"), "untouched ports were named: {m}");
    let shown = sw.handle(&Change::ShowConfig, false);
    assert!(shown.contains("[ports.\"f\"]") && !shown.contains("[ports.\"c\"]"), "{shown}");
    // The running config printed loads as the same switch: a reload of it changes nothing.
    std::fs::write(&file, &shown).unwrap();
    assert_eq!(sw.reload().unwrap(), "reload: nothing changed");

    // A bad file is refused with its place; so is a change only a restart makes.
    std::fs::write(&file, format!("{next}[ports.h]\nspec = \"vdev:net_null5\"\nqueus = 2\n")).unwrap();
    let e = sw.reload().unwrap_err();
    assert!(e.contains("switch.toml:") && e.contains("queus") && e.contains("running config is kept"), "{e}");
    std::fs::write(&file, next.replace("cores = \"1\"", "cores = \"1\"\nburst = 64")).unwrap();
    let e = sw.reload().unwrap_err();
    assert!(e.contains("'burst' changed") && e.contains("restart"), "{e}");
    assert!(sw.running().ports.contains_key("f") && !sw.running().ports.contains_key("h"));
    assert_eq!(sw.reloads(), (2, 2));

    // Serve until the generator ends, then stop.
    let t0 = Instant::now();
    while g.try_wait().unwrap().is_none() {
        sw.serve(Instant::now() + Duration::from_millis(20)).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(60), "generator did not finish");
    }
    let st = g.wait().unwrap();
    assert!(st.success(), "gen failed");
    let r = sw.shutdown();
    assert!(r.clean);
    let gj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for p in ["a", "b"] {
        let st = &gj["streams"][p];
        assert!(st["tx"].as_u64().unwrap() > 500_000, "{gj}");
        assert_eq!(st["lost"].as_u64(), Some(0), "stream {p} lost packets during the changes: {gj}");
        assert_eq!(st["rx"], st["tx"]);
        assert_eq!(drops(&r.json, p), 0, "{}", r.json);
    }
    assert_no_leak(&r.json);
    assert!(r.json["ports"].get("c").is_none() && r.json["ports"].get("f").is_some(), "{}", r.json);
    assert!(!std::path::Path::new(&s.path("ctl")).exists(), "control socket left behind");
}
