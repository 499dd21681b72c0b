//! Generates the DPDK bindings against the installed DPDK (never checked in) and compiles
//! the C shim for DPDK's `static inline` fast-path functions.
//!
//! pkg-config decides every include path, define, `-march` flag and library: nothing about
//! the DPDK build is hard-coded here, so the next DPDK release needs no edit.

use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

const DEBIAN_HINT: &str = "install them with `apt-get install libdpdk-dev dpdk clang libclang-dev pkg-config` (or run scripts/setup.sh)";

fn fail(msg: &str) -> ! {
    eprintln!("pmdswitch build: {msg}; {DEBIAN_HINT}");
    exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk/shim.c");
    println!("cargo:rerun-if-changed=src/dpdk/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Link flags: the pkg-config crate turns `-L`/`-l` into cargo metadata. rustc links with
    // --as-needed, so only the libraries we call end up as DT_NEEDED; Debian's EAL then loads
    // every PMD (net_vhost, net_virtio, net_ring, ...) from its plugin directory at init.
    let lib = pkg_config::Config::new().atleast_version("22.11").probe("libdpdk").unwrap_or_else(|e| {
        let first = e.to_string().lines().next().unwrap_or("").to_string();
        fail(&format!("DPDK >= 22.11 not found by pkg-config libdpdk ({first})"))
    });

    // Compile flags: the crate exposes include paths and defines but not `-include
    // rte_config.h` or `-march`, which the headers need (SSSE3 builtins otherwise fail).
    let out = Command::new("pkg-config").args(["--cflags", "libdpdk"]).output().unwrap_or_else(|_| fail("pkg-config not runnable"));
    if !out.status.success() {
        fail("pkg-config --cflags libdpdk failed");
    }
    let cflags: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();

    let mut cc = cc::Build::new();
    cc.file("src/dpdk/shim.c").define("ALLOW_EXPERIMENTAL_API", None).opt_level(3);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("pmdswitch_shim");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let builder = bindgen::Builder::default()
        .header("src/dpdk/shim.h")
        .clang_args(cflags.iter())
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        // Only what src/dpdk calls. Without an allowlist AMX tile types fail to compile
        // (E0587) and per-lcore TLS variables appear as plain statics.
        .allowlist_function("rte_eal_init|rte_eal_cleanup|rte_strerror|rte_get_main_lcore")
        .allowlist_function("rte_eal_get_runtime_dir")
        .allowlist_function("rte_lcore_to_cpu_id|rte_thread_register|rte_thread_unregister")
        .allowlist_function("rte_get_tsc_hz|rte_openlog_stream|rte_socket_id")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_free|rte_mempool_avail_count")
        .allowlist_function("rte_mempool_in_use_count|rte_pktmbuf_free_bulk|rte_pktmbuf_copy")
        .allowlist_function("rte_dev_probe|rte_dev_remove|rte_eal_hotplug_remove")
        .allowlist_function("rte_eth_dev_configure|rte_eth_dev_info_get|rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup|rte_eth_dev_start|rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close|rte_eth_stats_get|rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_socket_id|rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc|rte_eth_macaddr_get")
        .allowlist_function("rte_eth_dev_rx_intr_enable|rte_eth_dev_rx_intr_disable|rte_eth_dev_rx_intr_ctl_q_get_fd")
        .allowlist_function("rte_vhost_driver_.*|rte_vhost_enable_guest_notification")
        .allowlist_function("rte_vhost_get_ifname|rte_vhost_get_vring_num")
        .allowlist_function("rte_vhost_enqueue_burst|rte_vhost_dequeue_burst")
        .allowlist_function("rte_vhost_get_negotiated_features|rte_vhost_get_vhost_vring")
        .allowlist_function("rte_vhost_get_mem_table|rte_vhost_get_vring_base|rte_vhost_set_vring_base")
        .allowlist_function("rte_vhost_extern_callback_register|rte_vhost_log_write|rte_vhost_log_used_vring")
        .allowlist_function("rte_telemetry_register_cmd|rte_tel_data_start_.*|rte_tel_data_add_.*")
        .allowlist_function("pmds_.*")
        .allowlist_type("rte_mbuf|rte_vhost_device_ops|rte_vhost_user_extern_ops|rte_vhost_memory|rte_vhost_mem_region")
        .allowlist_type("rte_vhost_msg_result")
        .allowlist_var("RTE_VHOST_USER_.*|RTE_MAX_VHOST_DEVICE|PMDS_.*")
        // Per-lcore variables (`per_lcore__lcore_id`, `per_lcore__rte_errno`) are TLS: as
        // plain statics they link and then segfault. They are reached through the shim.
        .blocklist_item("per_lcore_.*")
        .no_debug("rte_flow_item_gtp_psc")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .clang_macro_fallback()
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    // bindgen panics (rather than erring) when libclang cannot be loaded.
    let bindings = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate())) {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => fail(&format!("bindgen could not parse the DPDK headers: {e}")),
        Err(_) => fail("libclang not found for bindgen"),
    };
    bindings.write_to_file(out_dir.join("dpdk_bindings.rs")).expect("write bindings");
    let _ = lib;
}
