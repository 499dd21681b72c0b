//! Every user mistake gets one line naming the problem and the fix, a non-zero exit
//! (2 for usage errors, 1 for runtime failures) and nothing left behind. One table.

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

struct Case {
    what: &'static str,
    args: Vec<String>,
    code: i32,
    needle: &'static str,
}

fn case(what: &'static str, args: &[&str], code: i32, needle: &'static str) -> Case {
    Case { what, args: args.iter().map(|s| s.to_string()).collect(), code, needle }
}

/// A PCI device that exists and is bound to a kernel driver (read from sysfs only; the
/// test never probes it).
fn kernel_bound_pci() -> Option<String> {
    for e in std::fs::read_dir("/sys/bus/pci/devices").ok()?.flatten() {
        if let Ok(d) = std::fs::read_link(e.path().join("driver")) {
            let d = d.file_name()?.to_string_lossy().into_owned();
            if d != "vfio-pci" {
                return Some(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// Every usage and runtime error, bridge, VLAN, queue, affinity and router ones included: one
/// line, the right exit code, no leftovers.
#[test]
fn bad_input_table() {
    let s = Scratch::new("bad");
    let a = format!("a=vhost-server:{}", s.sock("a.sock"));
    let b = format!("b=vhost-server:{}", s.sock("b.sock"));
    let live = s.path("live.sock");
    let _listener = UnixListener::bind(&live).unwrap();
    let live_port = format!("a=vhost-server:{}", live.display());
    let missing_dir = format!("a=vhost-server:{}", s.path("no/such/dir/a.sock").display());
    let bad_cfg = s.path("bad.toml");
    std::fs::write(&bad_cfg, "cores = \"1\"\n[ports]\na = \"vhost-server:/tmp/x.sock\"\nb = \"vhost:/tmp/y\"\n").unwrap();
    let bad_cfg = bad_cfg.to_string_lossy().into_owned();
    let syntax_cfg = s.path("syntax.toml");
    std::fs::write(&syntax_cfg, "burst = 32\n[ports\n").unwrap();
    let syntax_cfg = syntax_cfg.to_string_lossy().into_owned();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let bad_core = (ncpu + 40).to_string();
    let mut cases = vec![
        case("unknown spec kind", &["run", "--port", "a=vhost:/tmp/x.sock"], 2, "unknown kind 'vhost'"),
        case("port without spec", &["run", "--port", "a"], 2, "NAME=SPEC"),
        case("port named twice", &["run", "--port", &a, "--port", &a.replace("a.sock", "c.sock")], 2, "named twice"),
        case("two ports, one socket", &["run", "--port", &a, "--port", &a.replacen("a=", "b=", 1)], 2, "both use"),
        case("xconnect unknown port", &["run", "--port", &a, "--port", &b, "--xconnect", "a,z"], 2, "unknown port 'z'"),
        case("xconnect port twice", &["run", "--port", &a, "--port", &b, "--xconnect", "a,a"], 2, "names port 'a' twice"),
        case(
            "port in two xconnects",
            &["run", "--port", &a, "--port", &b, "--port", "c=vdev:net_null0", "--xconnect", "a,b", "--xconnect", "a,c"],
            2,
            "two xconnects",
        ),
        case("core that does not exist", &["run", "--port", &a, "--cores", &bad_core], 2, "does not exist"),
        case("core equal to the main core", &["run", "--port", &a, "--cores", "0"], 2, "main core"),
        case("malformed core list", &["run", "--port", &a, "--cores", "1-x"], 2, "malformed"),
        case("socket directory missing", &["run", "--port", &missing_dir], 2, "does not exist: create it"),
        case("socket served by a live process", &["run", "--port", &live_port], 2, "live process"),
        case("burst out of range", &["run", "--port", &a, "--burst", "0"], 2, "--burst 0"),
        case("world-writable socket mode", &["run", "--port", &a, "--socket-mode", "666"], 2, "world-writable"),
        case("no ports", &["run"], 2, "no ports"),
        case("bridge with one port", &["run", "--port", &a, "--bridge", "br0=a"], 2, "at least two ports"),
        case(
            "port in a bridge and an xconnect",
            &["run", "--port", &a, "--port", &b, "--xconnect", "a,b", "--bridge", "br0=a,b"],
            2,
            "one rule",
        ),
        case("vlan on a port in no bridge", &["run", "--port", &a, "--vlan", "a=access:10"], 2, "in no bridge"),
        case("bad vlan mode", &["run", "--port", &a, "--port", &b, "--bridge", "br0=a,b", "--vlan", "a=access:5000"], 2, "bad VLAN mode"),
        case(
            "static multicast MAC",
            &["run", "--port", &a, "--port", &b, "--bridge", "br0=a,b", "--static-mac", "a=01:00:5e:00:00:01"],
            2,
            "group (multicast)",
        ),
        case("too many queues", &["run", "--port", &a, "--queues", "a=9"], 2, "N from 1 to 8"),
        case("affinity to a queue that does not exist", &["run", "--port", &a, "--rxq-affinity", "a:1=1"], 2, "raise --queues"),
        case("bad prometheus address", &["run", "--port", &a, "--prometheus", "nine"], 2, "[ADDR:]PORT"),
        case("prometheus port in use", &["run", "--port", &a, "--prometheus", &busy_port, "--duration", "1"], 1, "cannot listen"),
        case("config with a bad port", &["run", "--config", &bad_cfg], 2, "bad.toml:4:5: port 'b': unknown kind"),
        case("config with a syntax error", &["run", "--config", &syntax_cfg], 2, "syntax.toml:2:"),
        case("config file missing", &["run", "--config", "/nonexistent/pmds.toml"], 2, "cannot read config"),
        case("unknown socket owner", &["run", "--port", &a, "--socket-owner", "no-such-user-pmds"], 2, "useradd"),
        case("unknown socket group", &["run", "--port", &a, "--socket-group", "no-such-group-pmds"], 2, "groupadd"),
        case("unknown flag", &["run", "--frobnicate"], 2, "unexpected argument"),
        case("malformed PCI address", &["run", "--port", "n=pci:00:1g.0"], 2, "malformed"),
        case("PCI device absent", &["run", "--port", "n=pci:0000:7e:1f.7"], 2, "no PCI device"),
        case(
            "unknown vdev driver",
            &["run", "--port", &a, "--port", "b=vdev:net_nosuchdrv0", "--xconnect", "a,b", "--duration", "1"],
            1,
            "could not create vdev",
        ),
        case("bad EAL argument", &["run", "--port", &a, "--duration", "1", "--", "--no-such-eal-flag"], 1, "EAL init failed"),
        case("address without a prefix length", &["run", "--port", &a, "--ip", "a=198.18.1.1"], 2, "no prefix length"),
        case("address on an unknown port", &["run", "--port", &a, "--ip", "zz=198.18.1.1/24"], 2, "unknown port 'zz'"),
        case(
            "address on a cross-connected port",
            &["run", "--port", &a, "--port", &b, "--xconnect", "a,b", "--ip", "a=198.18.1.1/24"],
            2,
            "one rule",
        ),
        case(
            "overlapping subnets",
            &["run", "--port", &a, "--port", &b, "--ip", "a=198.18.1.1/24", "--ip", "b=198.18.1.2/24"],
            2,
            "overlaps",
        ),
        case(
            "the same address twice",
            &["run", "--port", &a, "--ip", "a=198.18.1.1/24", "--ip", "a=198.18.1.1/24"],
            2,
            "already an address",
        ),
        case(
            "route with host bits",
            &["run", "--port", &a, "--ip", "a=198.18.1.1/24", "--route", "198.19.0.1/16=via:198.18.1.2"],
            2,
            "host bits",
        ),
        case(
            "route via a gateway on no subnet",
            &["run", "--port", &a, "--ip", "a=198.18.1.1/24", "--route", "10.0.0.0/8=via:203.0.113.1"],
            2,
            "no interface's subnet",
        ),
        case(
            "route to an unknown target",
            &["run", "--port", &a, "--ip", "a=198.18.1.1/24", "--route", "10.0.0.0/8=drop"],
            2,
            "route target",
        ),
        case("MTU out of range", &["run", "--port", &a, "--ip", "a=198.18.1.1/24", "--mtu", "a=20"], 2, "68 to 9000"),
        case(
            "generator gateway without an address",
            &["gen", "--port", "a=vdev:net_null0", "--gateway", "a=198.18.1.254"],
            2,
            "no address to ask from",
        ),
    ];
    let pci;
    if let Some(addr) = kernel_bound_pci() {
        pci = format!("n=pci:{addr}");
        cases.push(case("PCI device not bound to vfio-pci", &["run", "--port", &pci], 2, "not vfio-pci"));
    } else {
        eprintln!("bad_input_table: no kernel-bound PCI device here; skipping that row");
    }

    let mut failures = Vec::new();
    for c in &cases {
        let child = Command::new(bin()).args(&c.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut why = Vec::new();
        if o.status.code() != Some(c.code) {
            why.push(format!("exit {:?}, want {}", o.status.code(), c.code));
        }
        if lines.len() != 1 {
            why.push(format!("{} stderr lines, want 1", lines.len()));
        }
        if !err.contains(c.needle) {
            why.push(format!("message lacks '{}'", c.needle));
        }
        if !out.trim().is_empty() {
            why.push("printed on stdout".into());
        }
        for sock in ["a.sock", "b.sock", "c.sock"] {
            if s.path(sock).exists() {
                why.push(format!("left {sock}"));
            }
        }
        if Path::new("/var/run/dpdk").join(format!("pmdswitch-{pid}")).exists() {
            why.push("left its EAL runtime dir".into());
        }
        if std::fs::read_dir("/dev/hugepages")
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(&format!("pmdswitch-{pid}"))))
            .unwrap_or(false)
        {
            why.push("left hugepage files".into());
        }
        if !why.is_empty() {
            failures.push(format!("{}: {}\n    stderr: {}", c.what, why.join("; "), err.trim()));
        }
    }
    assert!(live.exists(), "a live socket must never be removed");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// No hugepages and no --no-huge: simulated in a private mount namespace where the
/// kernel's hugepage directory is hidden, as on a machine that never reserved any.
#[test]
fn missing_hugepages_is_one_line_with_the_fix() {
    let ok = Command::new("unshare").arg("--version").stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "unshare (util-linux) is needed for this test");
    let s = Scratch::new("nohuge");
    let script =
        format!("mount -t tmpfs none /sys/kernel/mm/hugepages && exec {} run --port a=vhost-server:{}", bin().display(), s.sock("a.sock"));
    let o = Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no free hugepages") && err.contains("scripts/setup.sh") && err.contains("--no-huge"), "{err}");
    assert!(!s.path("a.sock").exists());
}

/// `check-config` reports every error in a file, each with its line and column (exit 2), and
/// accepts a good file.
#[test]
fn check_config_reports_every_error_with_line_and_column() {
    let s = Scratch::new("cfg");
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "xconnect = [\"a,zz\"]\nburst = 999\n[ports]\na = \"vdev:net_null0\"\nb = \"nope\"\n").unwrap();
    let (code, out, err) = run_once(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines.iter().any(|l| l.contains("bad.toml:5:5") && l.contains("has no kind")), "{err}");
    assert!(lines.iter().any(|l| l.contains("bad.toml:1:13") && l.contains("unknown port 'zz'")), "{err}");
    assert!(lines.iter().any(|l| l.contains("bad.toml:2:9") && l.contains("burst 999")), "{err}");

    let good = s.path("good.toml");
    std::fs::write(&good, "xconnect = [\"a,b\"]\n[ports]\na = \"vhost-server:/tmp/a.sock\"\nb = \"vdev:net_null0\"\n").unwrap();
    let (code, out, err) = run_once(&["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (2 ports, 1 xconnects, 0 bridges)"), "{out}");
}
