/* Header for bindgen: the DPDK APIs pmdswitch calls, plus the shim below. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_vhost.h>
#include <rte_telemetry.h>

/* DPDK's fast path is `static inline`: these out-of-line copies are what Rust calls.
 * The notes measured no difference between this, bindgen's wrap_static_fns and calls
 * through rte_eth_fp_ops (within 1 %). */
uint16_t pmds_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t pmds_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *pmds_pktmbuf_alloc(struct rte_mempool *mp);
int pmds_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n);
void pmds_pktmbuf_free(struct rte_mbuf *m);
char *pmds_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
void *pmds_pktmbuf_data(struct rte_mbuf *m);
void pmds_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v);
uint16_t pmds_mbuf_refcnt_read(const struct rte_mbuf *m);
char *pmds_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *pmds_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
unsigned int pmds_lcore_id(void);
int pmds_errno(void);
/* Offsets of the rte_mbuf fields Rust reads directly; checked by _Static_assert in
 * shim.c against the real header and by const asserts in Rust. */
#define PMDS_MBUF_BUF_ADDR_OFF 0
#define PMDS_MBUF_DATA_OFF_OFF 16
#define PMDS_MBUF_PKT_LEN_OFF 36
#define PMDS_MBUF_DATA_LEN_OFF 40
#define PMDS_MBUF_BUF_LEN_OFF 54
#define PMDS_MBUF_NEXT_OFF 64
#define PMDS_MBUF_SIZE 128
