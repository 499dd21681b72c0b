//! Checks done before the EAL starts, so that bad input fails with one line and leaves
//! nothing behind (no EAL, no hugepage file, no socket).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    v.sort_unstable();
    v
}

/// Free hugepages of any size (the EAL needs some unless `--no-huge`).
pub fn free_hugepages() -> u64 {
    let Ok(dir) = fs::read_dir("/sys/kernel/mm/hugepages") else { return 0 };
    dir.flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("free_hugepages")).ok())
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

/// A vhost-server socket path: its directory must exist; an existing file must be a stale
/// socket (no listener), which is removed; a live one is refused.
pub fn check_server_socket(port: &str, path: &Path) -> Result<(), String> {
    check_socket_dir(port, path)?;
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("port '{port}': cannot inspect {}: {e}", path.display())),
        Ok(md) if md.file_type().is_symlink() => {
            Err(format!("port '{port}': socket path {} is a symlink: give the real path", path.display()))
        }
        Ok(md) if !md.file_type().is_socket() => {
            Err(format!("port '{port}': {} exists and is not a socket: remove it or pick another path", path.display()))
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                Err(format!("port '{port}': socket {} is served by a live process: stop that process or pick another path", path.display()))
            }
            Err(_) => fs::remove_file(path).map_err(|e| format!("port '{port}': stale socket {} cannot be removed: {e}", path.display())),
        },
    }
}

pub fn check_socket_dir(port: &str, path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "port '{port}': socket directory {} does not exist: create it (mkdir -p {}) or pick another path",
            dir.display(),
            dir.display()
        ));
    }
    // A world-writable directory without the sticky bit lets anyone replace our socket
    // with theirs between restarts (and so attach to a VM's traffic).
    let mode = fs::metadata(dir).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(format!(
            "port '{port}': socket directory {} is world-writable without the sticky bit: use a private directory (e.g. mkdir -m 750 /run/pmdswitch)",
            dir.display()
        ));
    }
    Ok(())
}

/// A user or group name (or number) to its id, from /etc/passwd or /etc/group (no NSS:
/// containers and test beds keep their accounts there).
fn account_id(db: &str, flag: &str, name: &str, fix: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = fs::read_to_string(db).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let id = f.nth(1)?.parse::<u32>().ok()?;
            (n == name).then_some(id)
        })
        .next()
        .ok_or_else(|| format!("{flag} '{name}': no such entry in {db}: {fix} {name}) or give a number"))
}

pub fn group_id(group: &str) -> Result<u32, String> {
    account_id("/etc/group", "--socket-group", group, "create it (groupadd")
}

pub fn user_id(user: &str) -> Result<u32, String> {
    account_id("/etc/passwd", "--socket-owner", user, "create it (useradd")
}

/// A PCI port must exist and be bound to a DPDK-capable driver.
pub fn check_pci(port: &str, addr: &str) -> Result<(), String> {
    let dev = Path::new("/sys/bus/pci/devices").join(addr);
    if !dev.exists() {
        return Err(format!("port '{port}': no PCI device {addr} on this machine: check the address with lspci -D"));
    }
    let driver = fs::read_link(dev.join("driver")).ok().and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()));
    match driver.as_deref() {
        Some("vfio-pci") | Some("uio_pci_generic") | Some("igb_uio") => Ok(()),
        other => Err(format!(
            "port '{port}': PCI device {addr} is bound to {}, not vfio-pci: bind it with `dpdk-devbind.py -b vfio-pci {addr}`",
            other.map(|d| format!("'{d}'")).unwrap_or_else(|| "no driver".into())
        )),
    }
}

/// The CPU of the EAL main lcore as the EAL arguments will set it, when they say so.
pub fn main_core_from_eal(eal: &[String]) -> Option<usize> {
    let mut it = eal.iter();
    while let Some(a) = it.next() {
        let (flag, val) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let val = || val.clone().or_else(|| it.clone().next().cloned());
        match flag {
            "--main-lcore" => return val()?.parse().ok(),
            "-l" => {
                let v = val()?;
                return v.split([',', '-']).next()?.parse().ok();
            }
            _ if a.starts_with("-l") && a.len() > 2 => {
                return a[2..].split([',', '-']).next()?.parse().ok();
            }
            "-c" => {
                let v = val()?;
                let m = u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
                return (m != 0).then(|| m.trailing_zeros() as usize);
            }
            _ => {}
        }
    }
    None
}

/// Whether the EAL arguments contain any of `flags` (as `--flag`, `--flag=x` or `-fX`).
pub fn has_flag(eal: &[String], flags: &[&str]) -> bool {
    eal.iter().any(|a| {
        flags
            .iter()
            .any(|f| a == f || (f.starts_with("--") && a.starts_with(&format!("{f}="))) || (!f.starts_with("--") && a.starts_with(f)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn main_core_parsing() {
        assert_eq!(main_core_from_eal(&v(&["-l", "3,4"])), Some(3));
        assert_eq!(main_core_from_eal(&v(&["-l2-5"])), Some(2));
        assert_eq!(main_core_from_eal(&v(&["--main-lcore", "1"])), Some(1));
        assert_eq!(main_core_from_eal(&v(&["--main-lcore=1"])), Some(1));
        assert_eq!(main_core_from_eal(&v(&["-c", "0x6"])), Some(1));
        assert_eq!(main_core_from_eal(&v(&["--in-memory"])), None);
    }

    #[test]
    fn groups() {
        assert_eq!(group_id("0"), Ok(0));
        assert_eq!(group_id("root"), Ok(0));
        assert!(group_id("no-such-group-pmds").unwrap_err().contains("groupadd"));
        assert_eq!(user_id("root"), Ok(0));
        assert_eq!(user_id("daemon"), Ok(1));
        assert!(user_id("no-such-user-pmds").unwrap_err().contains("useradd"));
    }

    #[test]
    fn flags() {
        let a = v(&["--file-prefix=x", "-l", "0", "--no-huge"]);
        assert!(has_flag(&a, &["--file-prefix"]));
        assert!(has_flag(&a, &["-l", "--lcores"]));
        assert!(has_flag(&a, &["--no-huge"]));
        assert!(!has_flag(&a, &["--in-memory"]));
    }

    #[test]
    fn sockets() {
        let dir = std::env::temp_dir().join(format!("pmds-preflight-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // Missing directory.
        let e = check_server_socket("a", &dir.join("nope/x.sock")).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("mkdir -p"), "{e}");
        // Fresh path: fine.
        assert!(check_server_socket("a", &dir.join("new.sock")).is_ok());
        // Regular file: refused.
        fs::write(dir.join("file"), b"x").unwrap();
        assert!(check_server_socket("a", &dir.join("file")).unwrap_err().contains("not a socket"));
        // Live listener: refused; stale socket: removed.
        let live = dir.join("live.sock");
        let l = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert!(check_server_socket("a", &live).unwrap_err().contains("live process"));
        drop(l);
        assert!(live.exists());
        check_server_socket("a", &live).unwrap();
        assert!(!live.exists());
        // World-writable directory without the sticky bit: refused; with it (like /tmp): fine.
        let open = dir.join("open");
        fs::create_dir_all(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_server_socket("a", &open.join("x.sock")).unwrap_err().contains("sticky"));
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_server_socket("a", &open.join("x.sock")).is_ok());
        // Symlink: refused.
        std::os::unix::fs::symlink(dir.join("file"), dir.join("link")).unwrap();
        assert!(check_server_socket("a", &dir.join("link")).unwrap_err().contains("symlink"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
