/* Out-of-line copies of the DPDK `static inline` functions pmdswitch uses (see shim.h). */
#include <stddef.h>
#include "shim.h"

_Static_assert(offsetof(struct rte_mbuf, buf_addr) == PMDS_MBUF_BUF_ADDR_OFF, "rte_mbuf.buf_addr moved");
_Static_assert(offsetof(struct rte_mbuf, data_off) == PMDS_MBUF_DATA_OFF_OFF, "rte_mbuf.data_off moved");
_Static_assert(offsetof(struct rte_mbuf, pkt_len) == PMDS_MBUF_PKT_LEN_OFF, "rte_mbuf.pkt_len moved");
_Static_assert(offsetof(struct rte_mbuf, buf_len) == PMDS_MBUF_BUF_LEN_OFF, "rte_mbuf.buf_len moved");
_Static_assert(offsetof(struct rte_mbuf, next) == PMDS_MBUF_NEXT_OFF, "rte_mbuf.next moved");
_Static_assert(offsetof(struct rte_mbuf, data_len) == PMDS_MBUF_DATA_LEN_OFF, "rte_mbuf.data_len moved");
_Static_assert(sizeof(struct rte_mbuf) == PMDS_MBUF_SIZE, "rte_mbuf size changed");

uint16_t pmds_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t pmds_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *pmds_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int pmds_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}

void pmds_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

char *pmds_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

void *pmds_pktmbuf_data(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

/* Per-lcore (TLS) variables: only C can reach them correctly. */
unsigned int pmds_lcore_id(void)
{
	return rte_lcore_id();
}

int pmds_errno(void)
{
	return rte_errno;
}

/* Bridge flooding shares one mbuf between egress ports (refcount), and VLAN push/pop
 * moves the start of the data. */
void pmds_mbuf_refcnt_update(struct rte_mbuf *m, int16_t v)
{
	rte_mbuf_refcnt_update(m, v);
}

uint16_t pmds_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

char *pmds_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *pmds_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}
