//! scripts/nic.sh in --dry-run (there is no spare NIC on these machines): it must refuse
//! the interface carrying the default route, print instead of run, remember and restore
//! the previous driver, and never change a binding in dry-run mode.

mod common;

use std::path::Path;
use std::process::Command;

use common::Scratch;

fn nic(state: &Path, args: &[&str]) -> (i32, String) {
    let o =
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/nic.sh")).args(args).env("PMDSWITCH_NIC_STATE", state).output().unwrap();
    (o.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// The PCI device behind the interface that carries the default route, if any.
fn lifeline_pci() -> Option<String> {
    let out = Command::new("ip").args(["route", "show", "default"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dev = text.split_whitespace().skip_while(|w| *w != "dev").nth(1)?.to_string();
    let path = std::fs::canonicalize(format!("/sys/class/net/{dev}/device")).ok()?;
    path.ancestors()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .find(|n| n.len() == 12 && n.chars().nth(4) == Some(':') && n.chars().nth(10) == Some('.'))
}

fn driver(pci: &str) -> String {
    std::fs::read_link(format!("/sys/bus/pci/devices/{pci}/driver"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn nic_script_dry_run() {
    let s = Scratch::new("nic");
    let state = s.path("state");
    let (code, out) = nic(&state, &["bind", "zz:1", "--dry-run"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a PCI address"), "{out}");
    let (code, out) = nic(&state, &["restore", "0000:00:1f.7", "--dry-run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no saved driver"), "{out}");

    let Some(pci) = lifeline_pci() else {
        eprintln!("nic_script_dry_run: the default route is not on a PCI device here; skipping the lifeline checks");
        return;
    };
    let before = driver(&pci);
    let (code, out) = nic(&state, &["bind", &pci, "--dry-run"]);
    assert_eq!(code, 1, "must refuse the lifeline: {out}");
    assert!(out.contains("default route"), "{out}");
    let (code, out) = nic(&state, &["bind", &pci, "--dry-run", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("would run: dpdk-devbind.py -b vfio-pci {pci}")), "{out}");
    assert!(!out.contains("running:"), "dry run must not run anything: {out}");
    assert!(!state.exists(), "dry run must not save state");
    assert_eq!(driver(&pci), before, "binding changed in a dry run");

    // Restore reads what bind saved.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join(&pci), format!("{before}\n")).unwrap();
    let (code, out) = nic(&state, &["restore", &pci, "--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("would run: dpdk-devbind.py -b {before} {pci}")), "{out}");
    assert!(state.join(&pci).exists(), "dry run keeps the saved driver");
    let (code, out) = nic(&state, &["status", &pci]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("saved={before}")), "{out}");
}
