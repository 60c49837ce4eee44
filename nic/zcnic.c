// SPDX-License-Identifier: GPL-2.0
/*
 * zcnic - an emulated NIC that can run io_uring zero-copy receive (zcrx).
 *
 * zcnic stacks on a lower Ethernet device (virtio-net, veth, ...) like
 * macvlan in passthru mode: an rx_handler on the lower device steals every
 * frame and hands it to zcnic's "hardware", which steers it to one of its
 * RX queues (ntuple rules, then RSS) and "DMAs" it into buffers posted from
 * that queue's page pool, splitting TCP headers from payload when
 * tcp-data-split is on.  TX is forwarded to the lower device; frames whose
 * payload is in dma-buf net_iovs (devmem TCP TX) are first read out at
 * their DMA addresses, as the NIC's DMA engine would.
 *
 *   ip link add zc0 link eth1 type zcnic
 *   ethtool -G zc0 tcp-data-split on hds-thresh 0
 *
 * The lower device becomes a bare port: put addresses on zc0.  zc0
 * inherits the lower device's MAC address (a different one may be given
 * with "address"; it is then added to the lower device's unicast filter).
 * The lower device is put into allmulti while zc0 is up.
 *
 * Each RX queue has an interrupt of its own, as MSI-X vectors are: a Linux
 * IRQ in a per-device irq domain, in /proc/interrupts, with an affinity
 * that /proc/irq/N/smp_affinity sets and NAPI's irq attribute reports.
 * The "device" raises it on the CPU the affinity names, so the queue's
 * NAPI runs there, as RSS and IRQ pinning promise (zcnic_raise_irq()).
 *
 * The queues implement netdev_queue_mgmt_ops, so the netdev instance lock
 * protects all control paths and a queue can be restarted with a memory
 * provider (io_uring zcrx, devmem).  Each zcnic has its own faux device with
 * a 64-bit DMA mask as DMA device; its mapping must be dma-direct (no
 * IOMMU, no forced bouncing, checked at link creation), so dma_to_phys()
 * of a DMA address is the buffer's physical address, which is how the
 * emulated DMA engine (zcnic_dma_write()) reaches unreadable net_iovs.
 *
 * Fault injection knobs, in /sys/kernel/debug/zcnic/<ifname>/ (all u32,
 * 0 = off):
 *   fail_queue_mem_alloc  the next N queue memory allocations fail (-ENOMEM)
 *                         (ndo_queue_mem_alloc and ndo_open)
 *   fail_queue_start      the next N queue starts fail (-EIO)
 *                         (ndo_queue_start and ndo_open); with N >= 2 the
 *                         core's restart of the old queue fails too and the
 *                         queue stays down (no rq) until the next reconfig
 *   fail_pp_alloc         every Nth page pool allocation fails (counted as
 *                         alloc_fail, the posted ring is not refilled)
 *   rx_drop               every Nth received frame is dropped (hw_drops)
 *
 * and one mode knob there, read when a queue's memory is allocated (a
 * restart, -L/-G, link up, a zcrx binding): frags_per_buffer 2 or 4 splits
 * each buffer into that many frames' worth, as fbnic does
 * (page_pool_fragment_netmem(): several frames at non-zero offsets of one
 * buffer, one pool reference each); 0 or 1: one frame per buffer.  And
 * header_pool 1: split headers are DMA'd into pages of a second, readable
 * page pool per queue and the skb is built around that page, as bnxt and
 * fbnic do with a memory provider on the queue; 0: headers copied into a
 * freshly allocated skb head.
 *
 * and one module parameter, as links have no debugfs directory before they
 * exist: /sys/module/zcnic/parameters/fail_register makes the next N links
 * fail register_netdevice() late (a NETDEV_POST_INIT veto), where the core
 * has already called the destructor.
 */

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/device/faux.h>
#include <linux/dma-direct.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/if_arp.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdomain.h>
#include <linux/if_vlan.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/smp.h>
#include <linux/swiotlb.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/u64_stats_sync.h>
#include <linux/xarray.h>
#include <net/gso.h>
#include <net/ip6_checksum.h>
#include <net/netdev_lock.h>
#include <net/netdev_queues.h>
#include <net/netdev_rx_queue.h>
#include <net/page_pool/helpers.h>
#include <net/rtnetlink.h>

#define ZCNIC_MAX_QUEUES	16
#define ZCNIC_DEF_QUEUES	4
#define ZCNIC_MIN_RING		8
#define ZCNIC_DEF_RING		256
#define ZCNIC_MAX_RING		4096
#define ZCNIC_FIFO_LEN		1024
#define ZCNIC_INDIR_SIZE	128
#define ZCNIC_KEY_SIZE		40
#define ZCNIC_MAX_RSS_CTX	8	/* context ids 1..7 */
#define ZCNIC_MAX_RULES		64
#define ZCNIC_MAX_BUF_SIZE	(PAGE_SIZE << 4)	/* rx-buf-len limit */
/* the RSS hash fields of a TCP/UDP flow type: both addresses, both ports */
#define ZCNIC_RXH_L4	(RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3)
#define ZCNIC_HDS_MAX		1024
#define ZCNIC_COPYBREAK		256

enum {
	ZCNIC_CSUM_NONE,
	ZCNIC_CSUM_OK,
	ZCNIC_CSUM_BAD,
};

/* Per-frame result of the emulated parser/steering, kept in skb->cb. */
struct zcnic_cb {
	u32 hash;
	u16 len;	/* frame length without L2 padding */
	u16 hdrlen;	/* L2 + L3 + L4 header length, 0 if not TCP/UDP */
	u8 l4proto;
	u8 l4;		/* hash covers L4 ports */
	u8 csum;	/* ZCNIC_CSUM_* */
};

#define ZCNIC_CB(skb) ((struct zcnic_cb *)(skb)->cb)

struct zcnic_flow {
	__be16 proto;
	u8 l4proto;
	bool l4;
	__be32 saddr4, daddr4;
	struct in6_addr saddr6, daddr6;
	__be16 sport, dport;
	u16 l4off, l4len, hdrlen;
};

struct zcnic_rq_stats {
	u64 packets;
	u64 bytes;
	u64 hds_packets;
	u64 alloc_fail;
	u64 no_buf_drops;
	u64 fault_drops;
	u64 csum_bad;
	u64 csum_unnecessary;
	u64 csum_none;
	u64 too_big_drops;
	struct u64_stats_sync syncp;
};

/**
 * struct zcnic_rq - one emulated RX queue
 * @napi: the queue's NAPI instance
 * @priv: owning device
 * @pp: page pool the posted buffers come from
 * @ring: posted buffers (the "descriptor ring" the device writes into)
 * @ring_size: capacity of @ring (ethtool -G rx)
 * @head: index of the next buffer the device uses
 * @posted: number of buffers currently posted
 * @idx: queue index
 * @unreadable: @pp hands out unreadable netmem (memory provider bound)
 * @fifo: frames steered to this queue, waiting for NAPI (device FIFO)
 * @overruns: frames dropped because @fifo was full
 * @stats: counters written by NAPI
 */
/* a posted buffer: a netmem, or one fragment of it from @offset */
struct zcnic_buf {
	netmem_ref netmem;
	u32 offset;
};

struct zcnic_rq {
	struct napi_struct napi;
	struct zcnic_priv *priv;
	struct page_pool *pp;
	struct page_pool *hpp;	/* header_pool mode: split headers' pages */
	struct zcnic_buf *ring;
	u32 ring_size;
	u32 head;
	u32 posted;
	u32 idx;
	u32 buf_size;		/* bytes per page-pool buffer (rx-buf-len) */
	u32 frags;		/* posted fragments per buffer */
	u32 frag_size;		/* buf_size / frags: what one frame may fill */
	bool unreadable;
	struct sk_buff_head fifo;
	atomic64_t overruns;
	struct zcnic_rq_stats stats;
};

struct zcnic_qmem {
	struct zcnic_rq *rq;
};

struct zcnic_rule {
	bool used;
	u32 rss_ctx;
	struct ethtool_rx_flow_spec fs;
};

/*
 * Steering state: what a NIC keeps in its RSS and flow-rule tables.  The
 * datapath reads it under RCU, like hardware reading its tables without a
 * driver lock; a change copies it, edits the copy and publishes it
 * (zcnic_steer_edit()/zcnic_steer_commit(), under steer_mutex).
 */
struct zcnic_steer {
	struct rcu_head rcu;
	u8 rss_key[ZCNIC_KEY_SIZE];
	u32 indir[ZCNIC_INDIR_SIZE];
	bool ctx_used[ZCNIC_MAX_RSS_CTX];
	u32 ctx_indir[ZCNIC_MAX_RSS_CTX][ZCNIC_INDIR_SIZE];
	struct zcnic_rule rules[ZCNIC_MAX_RULES];
	u32 n_rules;
	u32 hash_fields[4];	/* RXH_* per zcnic_l4_type(): what RSS hashes */
};

struct zcnic_base {
	u64 packets, bytes, alloc_fail, hw_drops, overruns;
	u64 csum_unnecessary, csum_none, csum_bad;
};

/* one RX queue's interrupt vector: it outlives the queue, as MSI-X does */
struct zcnic_vec {
	struct zcnic_priv *priv;
	u32 idx;
	int irq;			/* Linux IRQ number, 0 if none */
	struct irq_data *irq_data;
	unsigned long in_flight;	/* bit 0: @ipi is on its way */
	call_single_data_t ipi;		/* delivers it to another CPU */
	char name[32];
};

struct zcnic_priv {
	struct net_device *dev;
	struct net_device *lower;
	struct faux_device *fdev;
	struct device_dma_parameters dma_parms;
	struct irq_domain *irq_domain;
	struct zcnic_vec vecs[ZCNIC_MAX_QUEUES];
	int id;
	struct dentry *dbg;

	/* configuration, under the netdev instance lock */
	u32 num_queues;
	u32 ring_size;
	bool hds;
	u32 hds_thresh;
	bool uc_added;
	struct zcnic_rq *rq[ZCNIC_MAX_QUEUES];
	struct zcnic_base base;

	/* datapath view of the running queues */
	struct zcnic_rq __rcu *rx_rq[ZCNIC_MAX_QUEUES];

	/* steering tables, read by the rx_handler under RCU */
	struct mutex steer_mutex;	/* serialises changes */
	struct zcnic_steer __rcu *steer;

	atomic64_t rx_no_queue;
	atomic64_t rx_steer_drops;

	/* fault injection (debugfs) */
	u32 fail_queue_mem_alloc;
	u32 fail_queue_start;
	u32 fail_pp_alloc;
	u32 rx_drop;
	u32 frags_per_buffer;	/* mode: fragmented buffers (fbnic-like) */
	u32 header_pool;	/* mode: headers in a page pool of their own */
	atomic_t pp_alloc_cnt;
	atomic_t rx_cnt;
};

static DEFINE_IDA(zcnic_ida);
/* DMA devices of deleted zcnics, kept until unload (see zcnic_release()) */
static DEFINE_XARRAY_ALLOC(zcnic_retired);

static unsigned int fail_register;
module_param(fail_register, uint, 0600);
MODULE_PARM_DESC(fail_register,
		 "the next N links fail to register after ndo_init (-EIO)");

static bool large_buffers = true;
module_param(large_buffers, bool, 0600);
MODULE_PARM_DESC(large_buffers,
		 "links created afterwards take rx-buf-len above PAGE_SIZE (QCFG_RX_PAGE_SIZE)");
static struct dentry *zcnic_dbg_root;
static struct rtnl_link_ops zcnic_link_ops;

/* Fault injection helpers */

static bool zcnic_fault_take(u32 *knob)
{
	u32 v = READ_ONCE(*knob);

	if (!v)
		return false;
	WRITE_ONCE(*knob, v - 1);
	return true;
}

static bool zcnic_fault_nth(const u32 *knob, atomic_t *cnt)
{
	u32 n = READ_ONCE(*knob);

	return n && (u32)atomic_inc_return(cnt) % n == 0;
}

/* Interrupts: one vector per RX queue */

/*
 * The interrupt controller has nothing to program, but it keeps an
 * affinity, so that smp_affinity can be written and the vector follows it.
 */
static int zcnic_irq_set_affinity(struct irq_data *d,
				  const struct cpumask *mask, bool force)
{
	irq_data_update_effective_affinity(d, cpumask_of(cpumask_first(mask)));
	return IRQ_SET_MASK_OK;
}

static void zcnic_irq_noop(struct irq_data *d)
{
}

static struct irq_chip zcnic_irq_chip = {
	.name			= "zcnic",
	.irq_mask		= zcnic_irq_noop,
	.irq_unmask		= zcnic_irq_noop,
	.irq_set_affinity	= zcnic_irq_set_affinity,
};

static int zcnic_irq_map(struct irq_domain *d, unsigned int virq,
			 irq_hw_number_t hw)
{
	irq_set_chip_and_handler(virq, &zcnic_irq_chip, handle_simple_irq);
	return 0;
}

static const struct irq_domain_ops zcnic_irq_domain_ops = {
	.map = zcnic_irq_map,
};

/* the driver's interrupt handler: the queue's NAPI does the work */
static irqreturn_t zcnic_irq_handler(int irq, void *data)
{
	struct zcnic_vec *vec = data;
	struct zcnic_rq *rq;

	rcu_read_lock();
	rq = rcu_dereference(vec->priv->rx_rq[vec->idx]);
	if (rq)
		napi_schedule(&rq->napi);
	rcu_read_unlock();
	return IRQ_HANDLED;
}

/* IPI on the vector's CPU: the interrupt arrives there */
static void zcnic_irq_deliver(void *data)
{
	struct zcnic_vec *vec = data;
	int irq = vec->irq;

	/*
	 * Cleared before the handler runs: a raise from now on sends another
	 * IPI, so a frame queued after NAPI's last look at the FIFO is not
	 * left there.  @vec is not touched after this (see zcnic_irqs_free()).
	 */
	clear_bit(0, &vec->in_flight);
	/* pairs with test_and_set_bit() after the FIFO enqueue */
	smp_mb__after_atomic();
	generic_handle_irq_safe(irq);
}

/**
 * zcnic_raise_irq() - the device signals RX queue @idx
 * @priv: the device
 * @idx: queue index
 *
 * An MSI-X message reaches the CPU its vector's affinity names; here an
 * IPI carries it there from the CPU the frame arrived on (the lower
 * device's).  One IPI in flight per vector is enough: it has not run yet,
 * so its handler will see what was queued before this raise.
 */
static void zcnic_raise_irq(struct zcnic_priv *priv, u32 idx)
{
	struct zcnic_vec *vec = &priv->vecs[idx];
	const struct cpumask *aff;
	unsigned int cpu;

	aff = irq_data_get_effective_affinity_mask(vec->irq_data);
	cpu = cpumask_first_and(aff, cpu_online_mask);
	if (cpu >= nr_cpu_ids || cpu == smp_processor_id()) {
		generic_handle_irq_safe(vec->irq);
		return;
	}
	if (test_and_set_bit(0, &vec->in_flight))
		return;
	if (smp_call_function_single_async(cpu, &vec->ipi)) {
		/* the CPU went offline: take it here */
		clear_bit(0, &vec->in_flight);
		generic_handle_irq_safe(vec->irq);
	}
}

static void zcnic_irqs_free(struct zcnic_priv *priv)
{
	struct fwnode_handle *fwnode;
	u32 i;

	if (!priv->irq_domain)
		return;
	/* the rx_handler is gone: wait for IPIs in flight */
	for (i = 0; i < ZCNIC_MAX_QUEUES; i++)
		while (test_bit(0, &priv->vecs[i].in_flight))
			usleep_range(10, 100);
	/* ... and for their last steps: they run with interrupts off */
	synchronize_rcu();
	for (i = 0; i < ZCNIC_MAX_QUEUES; i++) {
		struct zcnic_vec *vec = &priv->vecs[i];

		if (!vec->irq)
			continue;
		free_irq(vec->irq, vec);
		irq_dispose_mapping(vec->irq);
		vec->irq = 0;
	}
	fwnode = priv->irq_domain->fwnode;
	irq_domain_remove(priv->irq_domain);
	irq_domain_free_fwnode(fwnode);
	priv->irq_domain = NULL;
}

/*
 * A vector per possible queue, for the link's lifetime, spread over the
 * CPUs as drivers spread MSI-X vectors; an affinity set by the user stays
 * across queue count changes and link down/up.
 */
static int zcnic_irqs_init(struct zcnic_priv *priv)
{
	struct fwnode_handle *fwnode;
	u32 i;
	int err;

	fwnode = irq_domain_alloc_named_id_fwnode("zcnic", priv->id);
	if (!fwnode)
		return -ENOMEM;
	priv->irq_domain = irq_domain_create_linear(fwnode, ZCNIC_MAX_QUEUES,
						    &zcnic_irq_domain_ops,
						    priv);
	if (!priv->irq_domain) {
		irq_domain_free_fwnode(fwnode);
		return -ENOMEM;
	}
	for (i = 0; i < ZCNIC_MAX_QUEUES; i++) {
		struct zcnic_vec *vec = &priv->vecs[i];
		unsigned int irq = irq_create_mapping(priv->irq_domain, i);
		unsigned int cpu;

		if (!irq)
			return -ENOMEM;
		vec->priv = priv;
		vec->idx = i;
		INIT_CSD(&vec->ipi, zcnic_irq_deliver, vec);
		snprintf(vec->name, sizeof(vec->name), "zcnic%d-rx-%u",
			 priv->id, i);
		err = request_irq(irq, zcnic_irq_handler, 0, vec->name, vec);
		if (err) {
			irq_dispose_mapping(irq);
			return err;
		}
		vec->irq = irq;
		vec->irq_data = irq_get_irq_data(irq);
		cpu = cpumask_local_spread(i, NUMA_NO_NODE);
		err = irq_set_affinity(irq, cpumask_of(cpu));
		if (err)
			return err;
	}
	return 0;
}

/* Emulated parser, steering and checksum engine */

static void zcnic_parse(const struct sk_buff *skb, struct zcnic_flow *fl)
{
	struct ethhdr _eth;
	const struct ethhdr *eth;
	unsigned int off = ETH_HLEN;

	memset(fl, 0, sizeof(*fl));
	eth = skb_header_pointer(skb, 0, sizeof(_eth), &_eth);
	if (!eth)
		return;
	fl->proto = eth->h_proto;

	if (fl->proto == htons(ETH_P_IP)) {
		struct iphdr _iph;
		const struct iphdr *iph;
		unsigned int ihl, tot;

		iph = skb_header_pointer(skb, off, sizeof(_iph), &_iph);
		if (!iph || iph->version != 4 || iph->ihl < 5)
			goto not_ip;
		fl->saddr4 = iph->saddr;
		fl->daddr4 = iph->daddr;
		fl->l4proto = iph->protocol;
		ihl = iph->ihl * 4;
		tot = ntohs(iph->tot_len);
		if (ip_is_fragment(iph) || tot < ihl || off + tot > skb->len)
			return;
		fl->l4off = off + ihl;
		fl->l4len = tot - ihl;
	} else if (fl->proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr _ip6h;
		const struct ipv6hdr *ip6h;
		unsigned int plen;

		ip6h = skb_header_pointer(skb, off, sizeof(_ip6h), &_ip6h);
		if (!ip6h || ip6h->version != 6)
			goto not_ip;
		fl->saddr6 = ip6h->saddr;
		fl->daddr6 = ip6h->daddr;
		fl->l4proto = ip6h->nexthdr;
		plen = ntohs(ip6h->payload_len);
		if (off + sizeof(*ip6h) + plen > skb->len)
			return;
		fl->l4off = off + sizeof(*ip6h);
		fl->l4len = plen;
	} else {
		return;
	}

	if (fl->l4proto == IPPROTO_TCP) {
		struct tcphdr _th;
		const struct tcphdr *th;

		th = skb_header_pointer(skb, fl->l4off, sizeof(_th), &_th);
		if (!th || th->doff < 5 || th->doff * 4 > fl->l4len)
			return;
		fl->sport = th->source;
		fl->dport = th->dest;
		fl->hdrlen = fl->l4off + th->doff * 4;
		fl->l4 = true;
	} else if (fl->l4proto == IPPROTO_UDP) {
		struct udphdr _uh;
		const struct udphdr *uh;

		uh = skb_header_pointer(skb, fl->l4off, sizeof(_uh), &_uh);
		if (!uh || fl->l4len < sizeof(*uh))
			return;
		fl->sport = uh->source;
		fl->dport = uh->dest;
		fl->hdrlen = fl->l4off + sizeof(*uh);
		fl->l4 = true;
	}
	return;

not_ip:
	fl->proto = 0;
}

/* Hardware checksum validation of TCP/UDP, as a NIC with RX csum offload. */
static u8 zcnic_csum(const struct sk_buff *skb, const struct zcnic_flow *fl)
{
	__wsum sum;

	if (!fl->l4)
		return ZCNIC_CSUM_NONE;
	/* validated (or locally generated) by the lower device */
	if (skb->ip_summed == CHECKSUM_UNNECESSARY ||
	    skb->ip_summed == CHECKSUM_PARTIAL)
		return ZCNIC_CSUM_OK;

	sum = skb_checksum(skb, fl->l4off, fl->l4len, 0);
	if (fl->proto == htons(ETH_P_IP)) {
		if (csum_tcpudp_magic(fl->saddr4, fl->daddr4, fl->l4len,
				      fl->l4proto, sum))
			return ZCNIC_CSUM_BAD;
	} else {
		if (csum_ipv6_magic(&fl->saddr6, &fl->daddr6, fl->l4len,
				    fl->l4proto, sum))
			return ZCNIC_CSUM_BAD;
	}
	return ZCNIC_CSUM_OK;
}

static u32 zcnic_toeplitz(const u8 *key, const u8 *data, unsigned int len)
{
	u32 hash = 0, v = get_unaligned_be32(key);
	unsigned int i;
	int b;

	for (i = 0; i < len; i++) {
		for (b = 7; b >= 0; b--) {
			if (data[i] & BIT(b))
				hash ^= v;
			v <<= 1;
			if (key[i + 4] & BIT(b))
				v |= 1;
		}
	}
	return hash;
}

/* TCP/UDP over IPv4/IPv6 as 0..3, the flow types whose hash fields can change */
static int zcnic_l4_type(__be16 proto, u8 l4proto)
{
	if (l4proto != IPPROTO_TCP && l4proto != IPPROTO_UDP)
		return -1;
	return (proto == htons(ETH_P_IPV6)) * 2 + (l4proto == IPPROTO_UDP);
}

static int zcnic_flow_l4_type(u32 flow_type)
{
	switch (flow_type) {
	case TCP_V4_FLOW:
		return 0;
	case UDP_V4_FLOW:
		return 1;
	case TCP_V6_FLOW:
		return 2;
	case UDP_V6_FLOW:
		return 3;
	}
	return -1;
}

/*
 * Toeplitz over the fields ethtool asked for (rx-flow-hash) of a TCP or UDP
 * flow, over both addresses of any other IP frame.
 */
static u32 zcnic_hash(const struct zcnic_steer *st,
		      const struct zcnic_flow *fl)
{
	int type = zcnic_l4_type(fl->proto, fl->l4proto);
	u32 fields = RXH_IP_SRC | RXH_IP_DST;
	unsigned int n = 0, alen;
	const void *src, *dst;
	u8 in[36];

	if (fl->proto == htons(ETH_P_IP)) {
		src = &fl->saddr4;
		dst = &fl->daddr4;
		alen = 4;
	} else if (fl->proto == htons(ETH_P_IPV6)) {
		src = &fl->saddr6;
		dst = &fl->daddr6;
		alen = 16;
	} else {
		return 0;
	}
	if (fl->l4 && type >= 0)
		fields = st->hash_fields[type];
	if (fields & RXH_IP_SRC) {
		memcpy(in + n, src, alen);
		n += alen;
	}
	if (fields & RXH_IP_DST) {
		memcpy(in + n, dst, alen);
		n += alen;
	}
	if (fl->l4 && (fields & RXH_L4_B_0_1)) {
		memcpy(in + n, &fl->sport, 2);
		n += 2;
	}
	if (fl->l4 && (fields & RXH_L4_B_2_3)) {
		memcpy(in + n, &fl->dport, 2);
		n += 2;
	}
	return zcnic_toeplitz(st->rss_key, in, n);
}

static bool zcnic_rule_match(const struct ethtool_rx_flow_spec *fs,
			     const struct zcnic_flow *fl)
{
	u32 ft = fs->flow_type & ~FLOW_RSS;
	int i;

	if (!fl->l4)
		return false;

	switch (ft) {
	case TCP_V4_FLOW:
	case UDP_V4_FLOW: {
		const struct ethtool_tcpip4_spec *v = &fs->h_u.tcp_ip4_spec;
		const struct ethtool_tcpip4_spec *m = &fs->m_u.tcp_ip4_spec;

		if (fl->proto != htons(ETH_P_IP) ||
		    fl->l4proto != (ft == TCP_V4_FLOW ? IPPROTO_TCP :
						       IPPROTO_UDP))
			return false;
		return !((fl->saddr4 ^ v->ip4src) & m->ip4src) &&
		       !((fl->daddr4 ^ v->ip4dst) & m->ip4dst) &&
		       !((fl->sport ^ v->psrc) & m->psrc) &&
		       !((fl->dport ^ v->pdst) & m->pdst);
	}
	case TCP_V6_FLOW:
	case UDP_V6_FLOW: {
		const struct ethtool_tcpip6_spec *v = &fs->h_u.tcp_ip6_spec;
		const struct ethtool_tcpip6_spec *m = &fs->m_u.tcp_ip6_spec;

		if (fl->proto != htons(ETH_P_IPV6) ||
		    fl->l4proto != (ft == TCP_V6_FLOW ? IPPROTO_TCP :
						       IPPROTO_UDP))
			return false;
		for (i = 0; i < 4; i++) {
			if ((fl->saddr6.s6_addr32[i] ^ v->ip6src[i]) &
			    m->ip6src[i])
				return false;
			if ((fl->daddr6.s6_addr32[i] ^ v->ip6dst[i]) &
			    m->ip6dst[i])
				return false;
		}
		return !((fl->sport ^ v->psrc) & m->psrc) &&
		       !((fl->dport ^ v->pdst) & m->pdst);
	}
	}
	return false;
}

/*
 * Pick the RX queue for a frame: the first matching ntuple rule (by
 * location), else RSS over the default indirection table.  Returns the
 * queue index, or -1 to drop.
 */
static int zcnic_steer(struct zcnic_priv *priv, const struct zcnic_flow *fl,
		       u32 *hash)
{
	const struct zcnic_steer *st = rcu_dereference(priv->steer);
	unsigned int i;
	int q;

	*hash = zcnic_hash(st, fl);
	for (i = 0; i < ZCNIC_MAX_RULES && st->n_rules; i++) {
		const struct zcnic_rule *r = &st->rules[i];

		if (!r->used || !zcnic_rule_match(&r->fs, fl))
			continue;
		if (r->fs.ring_cookie == RX_CLS_FLOW_DISC)
			return -1;
		q = ethtool_get_flow_spec_ring(r->fs.ring_cookie);
		if (r->fs.flow_type & FLOW_RSS) {
			if (r->rss_ctx && r->rss_ctx < ZCNIC_MAX_RSS_CTX &&
			    st->ctx_used[r->rss_ctx])
				q += st->ctx_indir[r->rss_ctx]
					[*hash % ZCNIC_INDIR_SIZE];
			else
				q += st->indir[*hash % ZCNIC_INDIR_SIZE];
		}
		return q;
	}
	return fl->proto ? st->indir[*hash % ZCNIC_INDIR_SIZE] : 0;
}

static struct zcnic_steer *zcnic_steer_locked(struct zcnic_priv *priv)
{
	return rcu_dereference_protected(priv->steer,
					 lockdep_is_held(&priv->steer_mutex));
}

/* A copy of the steering state to change, or NULL (out of memory). */
static struct zcnic_steer *zcnic_steer_edit(struct zcnic_priv *priv)
{
	struct zcnic_steer *st = kvmalloc_obj(*st);

	if (st)
		memcpy(st, zcnic_steer_locked(priv), sizeof(*st));
	return st;
}

/* Publish @st; readers still on the old state finish before it is freed. */
static void zcnic_steer_commit(struct zcnic_priv *priv, struct zcnic_steer *st)
{
	struct zcnic_steer *old = zcnic_steer_locked(priv);

	rcu_assign_pointer(priv->steer, st);
	kvfree_rcu(old, rcu);
}

/*
 * The default indirection table over @nq queues as a new steering state
 * for zcnic_steer_commit(); NULL if the user configured the table (it is
 * kept), ERR_PTR(-ENOMEM) if there is no memory.
 */
static struct zcnic_steer *zcnic_default_indir(struct zcnic_priv *priv,
					       u32 nq)
{
	struct zcnic_steer *st;
	u32 i;

	if (netif_is_rxfh_configured(priv->dev))
		return NULL;
	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	mutex_unlock(&priv->steer_mutex);
	if (!st)
		return ERR_PTR(-ENOMEM);
	for (i = 0; i < ZCNIC_INDIR_SIZE; i++)
		st->indir[i] = ethtool_rxfh_indir_default(i, nq);
	return st;
}

static void zcnic_steer_replace(struct zcnic_priv *priv,
				struct zcnic_steer *st)
{
	if (!st)
		return;
	mutex_lock(&priv->steer_mutex);
	zcnic_steer_commit(priv, st);
	mutex_unlock(&priv->steer_mutex);
}

/**
 * zcnic_handle_frame() - rx_handler of the lower device: the wire side
 * @pskb: frame received by the lower device
 *
 * Plays the NIC's parser: validates checksums, steers the frame to a
 * queue and queues it in that queue's FIFO for NAPI.  A frame that finds
 * the FIFO full is dropped (hw_drop_overruns).
 *
 * Return: RX_HANDLER_CONSUMED, or RX_HANDLER_PASS while zc0 is down.
 */
static rx_handler_result_t zcnic_handle_frame(struct sk_buff **pskb)
{
	struct sk_buff *skb = *pskb;
	struct zcnic_priv *priv = rcu_dereference(skb->dev->rx_handler_data);
	struct zcnic_flow fl;
	struct zcnic_cb *cb;
	struct zcnic_rq *rq;
	unsigned int mac_len;
	u32 hash;
	int q;

	if (skb->pkt_type == PACKET_LOOPBACK || !netif_running(priv->dev))
		return RX_HANDLER_PASS;

	skb = skb_share_check(skb, GFP_ATOMIC);
	if (!skb)
		return RX_HANDLER_CONSUMED;
	*pskb = skb;

	if (!skb_mac_header_was_set(skb))
		goto drop;
	mac_len = skb->data - skb_mac_header(skb);
	if (mac_len != ETH_HLEN)
		goto drop;
	__skb_push(skb, mac_len);

	zcnic_parse(skb, &fl);
	q = zcnic_steer(priv, &fl, &hash);
	if (q < 0) {
		atomic64_inc(&priv->rx_steer_drops);
		goto drop;
	}
	rq = q < ZCNIC_MAX_QUEUES ? rcu_dereference(priv->rx_rq[q]) : NULL;
	if (!rq) {
		atomic64_inc(&priv->rx_no_queue);
		goto drop;
	}

	cb = ZCNIC_CB(skb);
	memset(cb, 0, sizeof(*cb));
	cb->hash = hash;
	cb->len = skb->len;
	if (fl.l4off)	/* strip L2 padding */
		cb->len = min_t(unsigned int, skb->len, fl.l4off + fl.l4len);
	if (skb->len > U16_MAX)
		goto drop;
	cb->hdrlen = fl.hdrlen;
	cb->l4proto = fl.l4proto;
	cb->l4 = fl.l4;
	cb->csum = zcnic_csum(skb, &fl);

	if (skb_queue_len_lockless(&rq->fifo) >= ZCNIC_FIFO_LEN) {
		atomic64_inc(&rq->overruns);
		goto drop;
	}
	skb_queue_tail(&rq->fifo, skb);
	zcnic_raise_irq(priv, q);
	return RX_HANDLER_CONSUMED;

drop:
	dev_dstats_rx_dropped(priv->dev);
	kfree_skb(skb);
	return RX_HANDLER_CONSUMED;
}

/* Posted buffer ring */

static struct zcnic_buf zcnic_ring_pop(struct zcnic_rq *rq)
{
	struct zcnic_buf buf = rq->ring[rq->head];

	rq->ring[rq->head].netmem = 0;
	if (++rq->head == rq->ring_size)
		rq->head = 0;
	rq->posted--;
	return buf;
}

static void zcnic_ring_push(struct zcnic_rq *rq, netmem_ref netmem, u32 offset)
{
	u32 idx = rq->head + rq->posted;

	if (idx >= rq->ring_size)
		idx -= rq->ring_size;
	rq->ring[idx].netmem = netmem;
	rq->ring[idx].offset = offset;
	rq->posted++;
}

/*
 * Refill the posted ring from the page pool (the driver's refill path). A
 * fragmented buffer holds one pool reference per posted fragment, each
 * dropped by whoever ends up with that fragment (an skb, or rq_free).
 */
static void zcnic_refill(struct zcnic_rq *rq)
{
	struct zcnic_priv *priv = rq->priv;
	netmem_ref netmem;
	u32 i;

	while (rq->posted + rq->frags <= rq->ring_size) {
		if (zcnic_fault_nth(&priv->fail_pp_alloc, &priv->pp_alloc_cnt))
			netmem = 0;
		else
			netmem = page_pool_alloc_netmems(rq->pp, GFP_ATOMIC |
							 __GFP_NOWARN);
		if (!netmem) {
			u64_stats_update_begin(&rq->stats.syncp);
			rq->stats.alloc_fail++;
			u64_stats_update_end(&rq->stats.syncp);
			return;
		}
		if (rq->frags > 1)
			page_pool_fragment_netmem(netmem, rq->frags);
		for (i = 0; i < rq->frags; i++)
			zcnic_ring_push(rq, netmem, i * rq->frag_size);
	}
}

/*
 * Emulated DMA engine: write @len bytes of @src at @off into a posted
 * buffer at its DMA address.  zcnic's DMA device is dma-direct (no IOMMU,
 * no bounce buffers), so dma_to_phys() gives the buffer's physical address
 * and the kernel mapping of that pfn is a writable alias of it.  This is
 * the only way to fill unreadable net_iovs (io_uring zcrx areas): the CPU
 * has no page_address() for them, but a device writes them just fine.
 */
static bool zcnic_dma_write(struct page_pool *pool, struct zcnic_buf buf,
			    const struct sk_buff *src, unsigned int off,
			    unsigned int len)
{
	netmem_ref netmem = buf.netmem;
	dma_addr_t dma = page_pool_get_dma_addr_netmem(netmem);
	phys_addr_t phys = dma_to_phys(pool->p.dev, dma);
	unsigned int done, n;
	int err = 0;
	void *va;

	if (!dma || !pfn_valid(PHYS_PFN(phys)))
		return false;
	if (!netmem_is_net_iov(netmem) &&
	    WARN_ON_ONCE(page_to_phys(netmem_to_page(netmem)) != phys))
		return false;
	phys += buf.offset;

	/* a buffer above PAGE_SIZE is physically contiguous: one page at a time */
	for (done = 0; done < len; done += n) {
		n = min_t(unsigned int, len - done,
			  PAGE_SIZE - offset_in_page(phys + done));
		va = kmap_local_pfn(PHYS_PFN(phys + done));
		err = skb_copy_bits(src, off + done,
				    va + offset_in_page(phys + done), n);
		kunmap_local(va);
		if (err)
			break;
	}

	page_pool_dma_sync_netmem_for_cpu(pool, netmem, buf.offset, len);
	return !err;
}

static void zcnic_rq_drop(struct zcnic_rq *rq, u64 *counter)
{
	u64_stats_update_begin(&rq->stats.syncp);
	(*counter)++;
	u64_stats_update_end(&rq->stats.syncp);
	dev_dstats_rx_dropped(rq->priv->dev);
}

/*
 * header_pool mode: "DMA" the headers into a page of the queue's header
 * pool and build the skb around it (its head recycles to that pool).
 */
static struct sk_buff *zcnic_header_skb(struct zcnic_rq *rq,
					const struct sk_buff *orig,
					unsigned int hlen)
{
	const unsigned int headroom = NET_SKB_PAD + NET_IP_ALIGN;
	struct zcnic_buf buf = { .offset = headroom };
	struct sk_buff *skb;
	struct page *page;

	page = page_pool_alloc_pages(rq->hpp, GFP_ATOMIC | __GFP_NOWARN);
	if (!page)
		return NULL;
	buf.netmem = page_to_netmem(page);
	if (!zcnic_dma_write(rq->hpp, buf, orig, 0, hlen))
		goto err;
	skb = napi_build_skb(page_address(page), PAGE_SIZE);
	if (!skb)
		goto err;
	skb_reserve(skb, headroom);
	__skb_put(skb, hlen);
	return skb;
err:
	page_pool_put_full_page(rq->hpp, page, true);
	return NULL;
}

/*
 * How much of a frame goes into the linear part: its headers when TCP
 * header split applies (*@split), the whole frame when it stays linear.
 */
static unsigned int zcnic_hlen(const struct zcnic_rq *rq,
			       const struct zcnic_cb *cb, bool *split)
{
	const struct zcnic_priv *priv = rq->priv;

	*split = false;
	if (cb->l4proto == IPPROTO_TCP && cb->hdrlen &&
	    READ_ONCE(priv->hds) &&
	    cb->len - cb->hdrlen > READ_ONCE(priv->hds_thresh)) {
		*split = true;
		return cb->hdrlen;
	}
	/* frames that are not split stay linear */
	if (rq->unreadable || cb->len <= ZCNIC_COPYBREAK)
		return cb->len;
	return cb->hdrlen ?: ZCNIC_COPYBREAK;
}

/*
 * Receive one frame: copy the headers (or a small frame) into the linear
 * part and DMA the rest into posted buffers, one per frag, as a header
 * split capable NIC does.
 */
static void zcnic_rx_one(struct zcnic_rq *rq, struct sk_buff *orig)
{
	struct zcnic_priv *priv = rq->priv;
	const struct zcnic_cb *cb = ZCNIC_CB(orig);
	unsigned int len = cb->len, hlen, off, nfrags, i;
	struct sk_buff *skb;
	bool split;

	if (zcnic_fault_nth(&priv->rx_drop, &priv->rx_cnt)) {
		zcnic_rq_drop(rq, &rq->stats.fault_drops);
		return;
	}

	hlen = zcnic_hlen(rq, cb, &split);
	if (hlen < ETH_HLEN) {
		zcnic_rq_drop(rq, &rq->stats.too_big_drops);
		return;
	}
	/*
	 * A bad segment goes up with CHECKSUM_NONE for the stack to drop (and
	 * for packet sockets and GRO to see), as hardware does, but never with
	 * unreadable payload: the stack cannot checksum net_iovs.
	 */
	if (split && rq->unreadable && cb->csum == ZCNIC_CSUM_BAD) {
		zcnic_rq_drop(rq, &rq->stats.csum_bad);
		return;
	}

	nfrags = DIV_ROUND_UP(len - hlen, rq->frag_size);
	if (nfrags > MAX_SKB_FRAGS) {
		zcnic_rq_drop(rq, &rq->stats.too_big_drops);
		return;
	}
	if (nfrags > rq->posted)
		zcnic_refill(rq);
	if (nfrags > rq->posted) {
		/* the refill ring ran dry: the device drops the frame */
		zcnic_rq_drop(rq, &rq->stats.no_buf_drops);
		return;
	}

	skb = split && rq->hpp ? zcnic_header_skb(rq, orig, hlen) :
				 napi_alloc_skb(&rq->napi, hlen);
	if (!skb) {
		zcnic_rq_drop(rq, &rq->stats.alloc_fail);
		return;
	}
	skb_mark_for_recycle(skb);
	if (!(split && rq->hpp) &&
	    skb_copy_bits(orig, 0, skb_put(skb, hlen), hlen))
		goto drop_skb;

	for (i = 0, off = hlen; off < len; i++) {
		unsigned int chunk = min_t(unsigned int, len - off,
					   rq->frag_size);
		struct zcnic_buf buf = zcnic_ring_pop(rq);

		if (!zcnic_dma_write(rq->pp, buf, orig, off, chunk)) {
			/* this fragment's reference only */
			page_pool_put_netmem(rq->pp, buf.netmem, -1, true);
			goto drop_skb;
		}
		skb_add_rx_frag_netmem(skb, i, buf.netmem, buf.offset, chunk,
				       rq->frag_size);
		off += chunk;
	}

	if (skb_is_gso(orig)) {
		skb_shinfo(skb)->gso_size = skb_shinfo(orig)->gso_size;
		skb_shinfo(skb)->gso_type = skb_shinfo(orig)->gso_type;
		skb_shinfo(skb)->gso_segs = skb_shinfo(orig)->gso_segs;
	}
	if (skb_vlan_tag_present(orig))
		__vlan_hwaccel_put_tag(skb, orig->vlan_proto,
				       skb_vlan_tag_get(orig));

	u64_stats_update_begin(&rq->stats.syncp);
	if (cb->csum == ZCNIC_CSUM_OK) {
		skb->ip_summed = CHECKSUM_UNNECESSARY;
		rq->stats.csum_unnecessary++;
	} else {
		skb->ip_summed = CHECKSUM_NONE;
		rq->stats.csum_none++;
		if (cb->csum == ZCNIC_CSUM_BAD)
			rq->stats.csum_bad++;
	}
	rq->stats.packets++;
	rq->stats.bytes += len;
	if (split)
		rq->stats.hds_packets++;
	u64_stats_update_end(&rq->stats.syncp);

	skb->protocol = eth_type_trans(skb, priv->dev);
	skb_record_rx_queue(skb, rq->idx);
	if (priv->dev->features & NETIF_F_RXHASH)
		skb_set_hash(skb, cb->hash,
			     cb->l4 ? PKT_HASH_TYPE_L4 : PKT_HASH_TYPE_L3);
	dev_dstats_rx_add(priv->dev, len);
	napi_gro_receive(&rq->napi, skb);
	return;

drop_skb:
	napi_consume_skb(skb, 1);
	zcnic_rq_drop(rq, &rq->stats.too_big_drops);
}

/*
 * A GSO super-frame from the lower device (veth TSO, virtio GRO) is
 * received whole when its payload fits the frags of one skb.  A real
 * NIC's wire never carries one that does not: when it needs more buffers
 * than MAX_SKB_FRAGS (small rx-buf-len, several frames per buffer), cut
 * it into the gso_size segments the wire would have carried and receive
 * each of them as a frame.
 */
static bool zcnic_too_big(const struct zcnic_rq *rq,
			  const struct sk_buff *orig)
{
	const struct zcnic_cb *cb = ZCNIC_CB(orig);
	unsigned int hlen;
	bool split;

	if (!skb_is_gso(orig))
		return false;
	hlen = zcnic_hlen(rq, cb, &split);
	return hlen < cb->len &&
	       DIV_ROUND_UP(cb->len - hlen, rq->frag_size) > MAX_SKB_FRAGS;
}

static void zcnic_rx_segments(struct zcnic_rq *rq, struct sk_buff *orig,
			      int budget)
{
	const struct zcnic_cb cb = *ZCNIC_CB(orig);
	struct sk_buff *segs, *seg, *next;

	/*
	 * Segmentation on a receive path (as openvswitch does), with the
	 * checksum state the lower device gave (validated or partial): the
	 * segments' checksums are as good as the super-frame's.
	 */
	if (orig->ip_summed == CHECKSUM_NONE || skb_cow_head(orig, 0))
		goto drop;
	segs = __skb_gso_segment(orig, NETIF_F_SG | NETIF_F_HW_CSUM, false);
	if (IS_ERR_OR_NULL(segs))
		goto drop;

	skb_list_walk_safe(segs, seg, next) {
		skb_mark_not_on_list(seg);
		*ZCNIC_CB(seg) = cb;
		ZCNIC_CB(seg)->len = seg->len;
		zcnic_rx_one(rq, seg);
		napi_consume_skb(seg, budget);
	}
	return;

drop:
	zcnic_rq_drop(rq, &rq->stats.too_big_drops);
}

static int zcnic_poll(struct napi_struct *napi, int budget)
{
	struct zcnic_rq *rq = container_of(napi, struct zcnic_rq, napi);
	struct sk_buff *orig;
	int done = 0;

	if (!budget)
		return 0;

	zcnic_refill(rq);
	while (done < budget && (orig = skb_dequeue(&rq->fifo))) {
		if (zcnic_too_big(rq, orig))
			zcnic_rx_segments(rq, orig, budget);
		else
			zcnic_rx_one(rq, orig);
		napi_consume_skb(orig, budget);
		done++;
	}

	if (done < budget)
		napi_complete_done(napi, done);
	return done;
}

/* Queue memory and lifecycle */

/*
 * A queue's memory: its ring and a page pool of buffers of the queue's
 * rx-buf-len (@qcfg, or the queue's current configuration when NULL: a
 * memory provider's rx_page_size survives -L/-G and link down/up).
 */
static struct zcnic_rq *zcnic_rq_alloc(struct zcnic_priv *priv, int idx,
				       u32 ring_size,
				       const struct netdev_queue_config *qcfg)
{
	struct page_pool_params pp = {
		.flags		= PP_FLAG_DMA_MAP | PP_FLAG_DMA_SYNC_DEV |
				  PP_FLAG_ALLOW_UNREADABLE_NETMEM,
		.pool_size	= ring_size,
		.nid		= NUMA_NO_NODE,
		.dev		= &priv->fdev->dev,
		.netdev		= priv->dev,
		.queue_idx	= idx,
		.dma_dir	= DMA_FROM_DEVICE,
		.offset		= 0,
	};
	struct netdev_queue_config cur;
	struct zcnic_rq *rq;
	int err = -ENOMEM;
	u32 buf_size, frags;

	if (!qcfg) {
		netdev_queue_config(priv->dev, idx, &cur);
		qcfg = &cur;
	}
	buf_size = qcfg->rx_page_size ?: PAGE_SIZE;
	pp.order = get_order(buf_size);
	pp.max_len = buf_size;
	frags = READ_ONCE(priv->frags_per_buffer);
	frags = frags == 2 || frags == 4 ? frags : 1;

	rq = kzalloc_obj(*rq, GFP_KERNEL);
	if (!rq)
		return ERR_PTR(-ENOMEM);
	rq->ring = kvcalloc(ring_size, sizeof(*rq->ring), GFP_KERNEL);
	if (!rq->ring)
		goto err_free_rq;
	rq->ring_size = ring_size;
	rq->buf_size = buf_size;
	rq->frags = frags;
	rq->frag_size = buf_size / frags;
	rq->idx = idx;
	rq->priv = priv;
	skb_queue_head_init(&rq->fifo);
	u64_stats_init(&rq->stats.syncp);

	netif_napi_add_config_locked(priv->dev, &rq->napi, zcnic_poll, idx);
	netif_napi_set_irq_locked(&rq->napi, priv->vecs[idx].irq);
	pp.napi = &rq->napi;
	rq->pp = page_pool_create(&pp);
	if (IS_ERR(rq->pp)) {
		err = PTR_ERR(rq->pp);
		goto err_del_napi;
	}
	rq->unreadable = page_pool_is_unreadable(rq->pp);
	if (READ_ONCE(priv->header_pool)) {
		/* readable pages: no UNREADABLE flag, so no memory provider */
		pp.flags &= ~PP_FLAG_ALLOW_UNREADABLE_NETMEM;
		pp.order = 0;
		pp.max_len = PAGE_SIZE;
		rq->hpp = page_pool_create(&pp);
		if (IS_ERR(rq->hpp)) {
			err = PTR_ERR(rq->hpp);
			rq->hpp = NULL;
			page_pool_destroy(rq->pp);
			goto err_del_napi;
		}
	}
	return rq;

err_del_napi:
	netif_napi_del_locked(&rq->napi);
	kvfree(rq->ring);
err_free_rq:
	kfree(rq);
	return ERR_PTR(err);
}

/* Fold a queue's counters into the device base stats before freeing it. */
static void zcnic_rq_fold_stats(struct zcnic_priv *priv, struct zcnic_rq *rq)
{
	struct zcnic_rq_stats *s = &rq->stats;
	struct zcnic_base *b = &priv->base;

	b->packets += s->packets;
	b->bytes += s->bytes;
	b->alloc_fail += s->alloc_fail;
	b->hw_drops += s->no_buf_drops + s->fault_drops + s->too_big_drops +
		       skb_queue_len(&rq->fifo);
	b->overruns += atomic64_read(&rq->overruns);
	b->csum_unnecessary += s->csum_unnecessary;
	b->csum_none += s->csum_none;
	b->csum_bad += s->csum_bad;
}

/* @rq may be NULL: a queue whose restart failed has none (see below). */
static void zcnic_rq_free(struct zcnic_priv *priv, struct zcnic_rq *rq)
{
	if (!rq)
		return;
	zcnic_rq_fold_stats(priv, rq);
	while (rq->posted)	/* one pool reference per posted fragment */
		page_pool_put_netmem(rq->pp, zcnic_ring_pop(rq).netmem, -1,
				     false);
	page_pool_destroy(rq->pp);
	if (rq->hpp)
		page_pool_destroy(rq->hpp);
	netif_napi_del_locked(&rq->napi);
	skb_queue_purge(&rq->fifo);
	kvfree(rq->ring);
	kfree(rq);
}

static void zcnic_rq_start(struct zcnic_priv *priv, struct zcnic_rq *rq,
			   int idx)
{
	priv->rq[idx] = rq;
	netif_queue_set_napi(priv->dev, idx, NETDEV_QUEUE_TYPE_RX, &rq->napi);
	napi_enable_locked(&rq->napi);
	rcu_assign_pointer(priv->rx_rq[idx], rq);
	/* kick NAPI so that it posts the first buffers */
	local_bh_disable();
	napi_schedule(&rq->napi);
	local_bh_enable();
}

/*
 * Stop queues [first, nq): no new frames, NAPI off; their rqs go to @out.
 * A queue may have no rq: when the core's restart of a queue fails twice
 * (new memory, then the old one: netdev_rx_queue_restart() WARNs), the
 * queue stays down, frames steered to it are dropped (rx_no_queue), and
 * the next link up or -L/-G builds it again.
 */
static void zcnic_stop_queues(struct zcnic_priv *priv, u32 first, u32 nq,
			      struct zcnic_rq **out)
{
	u32 i;

	for (i = first; i < nq; i++)
		RCU_INIT_POINTER(priv->rx_rq[i], NULL);
	synchronize_net();
	for (i = first; i < nq; i++) {
		struct zcnic_rq *rq = priv->rq[i];

		out[i] = rq;
		if (!rq)
			continue;
		napi_disable_locked(&rq->napi);
		netif_queue_set_napi(priv->dev, i, NETDEV_QUEUE_TYPE_RX, NULL);
		priv->rq[i] = NULL;
	}
}

/*
 * Change the number of queues and/or the ring size.  The new queues are
 * allocated first, so a failure leaves the device as it was.
 */
static int zcnic_reconfig(struct zcnic_priv *priv, u32 nq, u32 ring_size)
{
	struct zcnic_rq *new_rq[ZCNIC_MAX_QUEUES] = {};
	struct zcnic_rq *old_rq[ZCNIC_MAX_QUEUES] = {};
	struct net_device *dev = priv->dev;
	u32 old_nq = priv->num_queues, i;
	struct zcnic_steer *st;
	int err;

	st = zcnic_default_indir(priv, nq);
	if (IS_ERR(st))
		return PTR_ERR(st);

	if (!netif_running(dev)) {
		err = netif_set_real_num_rx_queues(dev, nq);
		if (err) {
			kvfree(st);
			return err;
		}
		priv->num_queues = nq;
		priv->ring_size = ring_size;
		zcnic_steer_replace(priv, st);
		return 0;
	}

	for (i = 0; i < nq; i++) {
		new_rq[i] = zcnic_rq_alloc(priv, i, ring_size, NULL);
		if (IS_ERR(new_rq[i])) {
			err = PTR_ERR(new_rq[i]);
			while (i--)
				zcnic_rq_free(priv, new_rq[i]);
			kvfree(st);
			return err;
		}
	}

	zcnic_stop_queues(priv, 0, old_nq, old_rq);
	err = netif_set_real_num_rx_queues(dev, nq);
	if (err) {
		for (i = 0; i < old_nq; i++)
			if (old_rq[i])
				zcnic_rq_start(priv, old_rq[i], i);
		for (i = 0; i < nq; i++)
			zcnic_rq_free(priv, new_rq[i]);
		kvfree(st);
		return err;
	}
	priv->num_queues = nq;
	priv->ring_size = ring_size;
	zcnic_steer_replace(priv, st);
	for (i = 0; i < nq; i++)
		zcnic_rq_start(priv, new_rq[i], i);
	for (i = 0; i < old_nq; i++)
		zcnic_rq_free(priv, old_rq[i]);
	return 0;
}

/* queue_mgmt_ops */

/**
 * zcnic_queue_mem_alloc() - allocate memory for RX queue @idx
 * @dev: zcnic device
 * @qcfg: queue configuration (unused, no per-queue parameters)
 * @per_queue_mem: a &struct zcnic_qmem to fill
 * @idx: queue index
 *
 * Creates the queue's NAPI and its page pool; if a memory provider is set
 * on the queue (e.g. io_uring zcrx) the pool picks it up here.
 *
 * Return: 0 or a negative errno.
 */
static int zcnic_queue_mem_alloc(struct net_device *dev,
				 struct netdev_queue_config *qcfg,
				 void *per_queue_mem, int idx)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_qmem *qmem = per_queue_mem;
	struct zcnic_rq *rq;

	qmem->rq = NULL;
	if (zcnic_fault_take(&priv->fail_queue_mem_alloc))
		return -ENOMEM;
	rq = zcnic_rq_alloc(priv, idx, priv->ring_size, qcfg);
	if (IS_ERR(rq))
		return PTR_ERR(rq);
	qmem->rq = rq;
	return 0;
}

/**
 * zcnic_queue_mem_free() - free memory of a stopped or never started queue
 * @dev: zcnic device
 * @per_queue_mem: the queue's &struct zcnic_qmem
 */
static void zcnic_queue_mem_free(struct net_device *dev, void *per_queue_mem)
{
	struct zcnic_qmem *qmem = per_queue_mem;

	if (qmem->rq)
		zcnic_rq_free(netdev_priv(dev), qmem->rq);
	qmem->rq = NULL;
}

/**
 * zcnic_queue_start() - start RX queue @idx with memory from mem_alloc
 * @dev: zcnic device
 * @qcfg: queue configuration (unused)
 * @per_queue_mem: the queue's &struct zcnic_qmem
 * @idx: queue index
 *
 * Return: 0, or -EIO when fault injection says so.
 */
static int zcnic_queue_start(struct net_device *dev,
			     struct netdev_queue_config *qcfg,
			     void *per_queue_mem, int idx)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_qmem *qmem = per_queue_mem;

	netdev_assert_locked(dev);
	if (zcnic_fault_take(&priv->fail_queue_start))
		return -EIO;
	zcnic_rq_start(priv, qmem->rq, idx);
	return 0;
}

/**
 * zcnic_queue_stop() - stop RX queue @idx and hand back its memory
 * @dev: zcnic device
 * @per_queue_mem: filled with the stopped queue's memory
 * @idx: queue index
 *
 * Return: 0.
 */
static int zcnic_queue_stop(struct net_device *dev, void *per_queue_mem,
			    int idx)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_qmem *qmem = per_queue_mem;
	struct zcnic_rq *out[ZCNIC_MAX_QUEUES];

	netdev_assert_locked(dev);
	zcnic_stop_queues(priv, idx, idx + 1, out);
	qmem->rq = out[idx];
	return 0;
}

/**
 * zcnic_queue_get_dma_dev() - DMA device of the queues
 * @dev: zcnic device
 * @idx: queue index
 *
 * Return: the faux device with a 64-bit DMA mask that zcnic registered.
 */
static struct device *zcnic_queue_get_dma_dev(struct net_device *dev, int idx)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	return &priv->fdev->dev;
}

/**
 * zcnic_default_qcfg() - a queue's configuration before a provider's
 * @dev: zcnic device
 * @qcfg: filled with PAGE_SIZE buffers
 */
static void zcnic_default_qcfg(struct net_device *dev,
			       struct netdev_queue_config *qcfg)
{
	qcfg->rx_page_size = PAGE_SIZE;
}

/**
 * zcnic_validate_qcfg() - check a queue's rx-buf-len
 * @dev: zcnic device
 * @qcfg: the configuration asked for
 * @extack: error reporting
 *
 * Return: 0, or -EINVAL unless a power of 2 from PAGE_SIZE to 64 pages.
 */
static int zcnic_validate_qcfg(struct net_device *dev,
			       struct netdev_queue_config *qcfg,
			       struct netlink_ext_ack *extack)
{
	u32 size = qcfg->rx_page_size;

	if (!is_power_of_2(size) || size < PAGE_SIZE ||
	    size > ZCNIC_MAX_BUF_SIZE) {
		NL_SET_ERR_MSG_FMT(extack,
				   "rx-buf-len %u: zcnic takes a power of 2 from %lu to %lu",
				   size, PAGE_SIZE, ZCNIC_MAX_BUF_SIZE);
		return -EINVAL;
	}
	return 0;
}

/* like fbnic and bnxt: buffers of any rx-buf-len up to 64 pages */
static const struct netdev_queue_mgmt_ops zcnic_queue_mgmt_ops = {
	.ndo_queue_mem_size	= sizeof(struct zcnic_qmem),
	.ndo_queue_mem_alloc	= zcnic_queue_mem_alloc,
	.ndo_queue_mem_free	= zcnic_queue_mem_free,
	.ndo_queue_start	= zcnic_queue_start,
	.ndo_queue_stop		= zcnic_queue_stop,
	.ndo_default_qcfg	= zcnic_default_qcfg,
	.ndo_validate_qcfg	= zcnic_validate_qcfg,
	.ndo_queue_get_dma_dev	= zcnic_queue_get_dma_dev,
	.supported_params	= QCFG_RX_PAGE_SIZE,
};

/* large_buffers=0: a NIC that does not advertise rx-buf-len (PAGE_SIZE only) */
static const struct netdev_queue_mgmt_ops zcnic_queue_mgmt_ops_page = {
	.ndo_queue_mem_size	= sizeof(struct zcnic_qmem),
	.ndo_queue_mem_alloc	= zcnic_queue_mem_alloc,
	.ndo_queue_mem_free	= zcnic_queue_mem_free,
	.ndo_queue_start	= zcnic_queue_start,
	.ndo_queue_stop		= zcnic_queue_stop,
	.ndo_queue_get_dma_dev	= zcnic_queue_get_dma_dev,
};

/* netdev_stat_ops */

static void zcnic_get_queue_stats_rx(struct net_device *dev, int idx,
				     struct netdev_queue_stats_rx *stats)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_rq *rq = priv->rq[idx];
	struct zcnic_rq_stats *s;
	unsigned int start;

	if (!rq) {
		memset(stats, 0, sizeof(*stats));
		return;
	}
	s = &rq->stats;
	do {
		start = u64_stats_fetch_begin(&s->syncp);
		stats->packets = s->packets;
		stats->bytes = s->bytes;
		stats->alloc_fail = s->alloc_fail;
		stats->hw_drops = s->no_buf_drops + s->fault_drops +
				  s->too_big_drops;
		stats->csum_unnecessary = s->csum_unnecessary;
		stats->csum_none = s->csum_none;
		stats->csum_bad = s->csum_bad;
	} while (u64_stats_fetch_retry(&s->syncp, start));
	stats->hw_drop_overruns = atomic64_read(&rq->overruns);
}

static void zcnic_get_base_stats(struct net_device *dev,
				 struct netdev_queue_stats_rx *rx,
				 struct netdev_queue_stats_tx *tx)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_base *b = &priv->base;

	rx->packets = b->packets;
	rx->bytes = b->bytes;
	rx->alloc_fail = b->alloc_fail;
	rx->hw_drops = b->hw_drops + atomic64_read(&priv->rx_no_queue) +
		       atomic64_read(&priv->rx_steer_drops);
	rx->hw_drop_overruns = b->overruns;
	rx->csum_unnecessary = b->csum_unnecessary;
	rx->csum_none = b->csum_none;
	rx->csum_bad = b->csum_bad;
	tx->packets = 0;	/* the TX queue is never freed: all in queue 0 */
	tx->bytes = 0;
}

/* The one TX queue forwards to the lower device: its counters are the dstats'. */
static void zcnic_get_queue_stats_tx(struct net_device *dev, int idx,
				     struct netdev_queue_stats_tx *stats)
{
	unsigned int start;
	int cpu;

	stats->packets = 0;
	stats->bytes = 0;
	for_each_possible_cpu(cpu) {
		const struct pcpu_dstats *d = per_cpu_ptr(dev->dstats, cpu);
		u64 packets, bytes;

		do {
			start = u64_stats_fetch_begin(&d->syncp);
			packets = u64_stats_read(&d->tx_packets);
			bytes = u64_stats_read(&d->tx_bytes);
		} while (u64_stats_fetch_retry(&d->syncp, start));
		stats->packets += packets;
		stats->bytes += bytes;
	}
}

static const struct netdev_stat_ops zcnic_stat_ops = {
	.get_queue_stats_rx	= zcnic_get_queue_stats_rx,
	.get_queue_stats_tx	= zcnic_get_queue_stats_tx,
	.get_base_stats		= zcnic_get_base_stats,
};

/* net_device_ops */

/**
 * zcnic_open() - ndo_open: allocate and start all RX queues
 * @dev: zcnic device
 *
 * Return: 0 or a negative errno (fault injection included).
 */
static int zcnic_open(struct net_device *dev)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_rq *rqs[ZCNIC_MAX_QUEUES] = {};
	struct net_device *lower = priv->lower;
	u32 i;
	int err;

	for (i = 0; i < priv->num_queues; i++) {
		if (zcnic_fault_take(&priv->fail_queue_mem_alloc))
			rqs[i] = ERR_PTR(-ENOMEM);
		else
			rqs[i] = zcnic_rq_alloc(priv, i, priv->ring_size,
						NULL);
		if (IS_ERR(rqs[i])) {
			err = PTR_ERR(rqs[i]);
			goto err_free;
		}
	}
	if (zcnic_fault_take(&priv->fail_queue_start)) {
		err = -EIO;
		goto err_free;
	}

	err = dev_set_allmulti(lower, 1);
	if (err)
		goto err_free;
	if (!ether_addr_equal(dev->dev_addr, lower->dev_addr)) {
		err = dev_uc_add(lower, dev->dev_addr);
		if (err)
			goto err_allmulti;
		priv->uc_added = true;
	}

	for (i = 0; i < priv->num_queues; i++)
		zcnic_rq_start(priv, rqs[i], i);
	netif_stacked_transfer_operstate(lower, dev);
	return 0;

err_allmulti:
	dev_set_allmulti(lower, -1);
err_free:
	while (i--)
		zcnic_rq_free(priv, rqs[i]);
	return err;
}

/**
 * zcnic_stop() - ndo_stop: stop and free all RX queues
 * @dev: zcnic device
 *
 * Return: 0.
 */
static int zcnic_stop(struct net_device *dev)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_rq *rqs[ZCNIC_MAX_QUEUES] = {};
	u32 i;

	zcnic_stop_queues(priv, 0, priv->num_queues, rqs);
	for (i = 0; i < priv->num_queues; i++)
		zcnic_rq_free(priv, rqs[i]);

	dev_uc_unsync(priv->lower, dev);
	dev_mc_unsync(priv->lower, dev);
	if (priv->uc_added)
		dev_uc_del(priv->lower, dev->dev_addr);
	priv->uc_added = false;
	dev_set_allmulti(priv->lower, -1);
	return 0;
}

/*
 * Emulated DMA read for netmem TX (devmem TCP, NETMEM_TX_DMA): an
 * unreadable skb's payload sits in dma-buf net_iovs the CPU has no address
 * for.  The "hardware" reads each frag at its DMA address (dma_to_phys(),
 * as zcnic_dma_write() does for RX) into a readable copy for the lower
 * device.  The caller then frees the original, which ends the sender's
 * MSG_ZEROCOPY notification as a real TX completion does.
 */
static struct sk_buff *zcnic_dma_read_skb(struct zcnic_priv *priv,
					  struct sk_buff *skb)
{
	struct device *dma_dev = &priv->fdev->dev;
	unsigned int headroom = skb_headroom(skb);
	unsigned int hlen = skb_headlen(skb);
	unsigned int pos = hlen, done, n;
	struct sk_buff *nskb;
	phys_addr_t phys;
	int i, err;
	void *va;

	/* devmem TX builds page frags only; a frag list would go uncopied */
	if (skb_has_frag_list(skb))
		return NULL;
	nskb = alloc_skb_with_frags(headroom + hlen, skb->data_len,
				    PAGE_ALLOC_COSTLY_ORDER, &err, GFP_ATOMIC);
	if (!nskb)
		return NULL;
	skb_reserve(nskb, headroom);
	skb_put(nskb, hlen);
	nskb->len += skb->data_len;
	nskb->data_len = skb->data_len;
	/* the headroom too: __copy_skb_header() keeps header offsets from head */
	memcpy(nskb->head, skb->head, headroom + hlen);
	skb_copy_header(nskb, skb);
	nskb->unreadable = false;	/* copied from skb: the frags are pages */

	for (i = 0; i < skb_shinfo(skb)->nr_frags; i++) {
		const skb_frag_t *frag = &skb_shinfo(skb)->frags[i];
		unsigned int size = skb_frag_size(frag);

		if (skb_frag_is_net_iov(frag))
			phys = dma_to_phys(dma_dev,
					   skb_frag_dma_map(dma_dev, frag));
		else
			phys = page_to_phys(skb_frag_page(frag)) +
			       skb_frag_off(frag);
		for (done = 0; done < size; done += n) {
			n = min_t(unsigned int, size - done,
				  PAGE_SIZE - offset_in_page(phys + done));
			if (!pfn_valid(PHYS_PFN(phys + done)))
				goto fault;
			va = kmap_local_pfn(PHYS_PFN(phys + done));
			err = skb_store_bits(nskb, pos + done,
					     va + offset_in_page(phys + done), n);
			kunmap_local(va);
			if (err)
				goto fault;
		}
		pos += size;
	}
	return nskb;

fault:
	dev_kfree_skb_any(nskb);
	return NULL;
}

static netdev_tx_t zcnic_start_xmit(struct sk_buff *skb,
				    struct net_device *dev)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	unsigned int len = skb->len;
	struct sk_buff *nskb;
	int ret;

	if (!skb_frags_readable(skb)) {
		nskb = zcnic_dma_read_skb(priv, skb);
		if (!nskb) {
			dev_dstats_tx_dropped(dev);
			dev_kfree_skb_any(skb);
			return NETDEV_TX_OK;
		}
		dev_consume_skb_any(skb);
		skb = nskb;
	}
	skb->dev = priv->lower;
	ret = dev_queue_xmit(skb);
	if (likely(dev_xmit_complete(ret)))
		dev_dstats_tx_add(dev, len);
	else
		dev_dstats_tx_dropped(dev);
	return NETDEV_TX_OK;
}

/* Secondary unicast and multicast addresses go to the lower device. */
static int zcnic_set_rx_mode(struct net_device *dev,
			     struct netdev_hw_addr_list *uc,
			     struct netdev_hw_addr_list *mc)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	netif_addr_lock_bh(dev);
	dev_uc_sync(priv->lower, dev);
	dev_mc_sync(priv->lower, dev);
	netif_addr_unlock_bh(dev);
	return 0;
}

static int zcnic_change_mtu(struct net_device *dev, int new_mtu)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	if (new_mtu > READ_ONCE(priv->lower->mtu))
		return -EINVAL;
	WRITE_ONCE(dev->mtu, new_mtu);
	return 0;
}

static int zcnic_get_iflink(const struct net_device *dev)
{
	const struct zcnic_priv *priv = netdev_priv(dev);

	return READ_ONCE(priv->lower->ifindex);
}

static const struct net_device_ops zcnic_netdev_ops = {
	.ndo_open		= zcnic_open,
	.ndo_stop		= zcnic_stop,
	.ndo_start_xmit		= zcnic_start_xmit,
	.ndo_set_rx_mode_async	= zcnic_set_rx_mode,
	.ndo_change_mtu		= zcnic_change_mtu,
	.ndo_set_mac_address	= eth_mac_addr,
	.ndo_validate_addr	= eth_validate_addr,
	.ndo_get_iflink		= zcnic_get_iflink,
};

/* ethtool_ops */

static const char zcnic_gstrings[][ETH_GSTRING_LEN] = {
	"rx_no_queue_drops",
	"rx_steer_drops",
};

static const char zcnic_qstrings[][ETH_GSTRING_LEN] = {
	"packets", "bytes", "hds_packets", "alloc_fail", "no_buf_drops",
	"fault_drops", "too_big_drops", "overruns", "csum_unnecessary",
	"csum_none", "csum_bad", "posted", "ring_size", "unreadable",
};

static void zcnic_get_drvinfo(struct net_device *dev,
			      struct ethtool_drvinfo *info)
{
	strscpy(info->driver, "zcnic", sizeof(info->driver));
	strscpy(info->bus_info, "faux", sizeof(info->bus_info));
}

static int zcnic_get_sset_count(struct net_device *dev, int sset)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	if (sset != ETH_SS_STATS)
		return -EOPNOTSUPP;
	return ARRAY_SIZE(zcnic_gstrings) +
	       priv->num_queues * ARRAY_SIZE(zcnic_qstrings);
}

static void zcnic_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	u32 i, j;

	if (sset != ETH_SS_STATS)
		return;
	for (i = 0; i < ARRAY_SIZE(zcnic_gstrings); i++)
		ethtool_puts(&data, zcnic_gstrings[i]);
	for (i = 0; i < priv->num_queues; i++)
		for (j = 0; j < ARRAY_SIZE(zcnic_qstrings); j++)
			ethtool_sprintf(&data, "rx%u_%s", i,
					zcnic_qstrings[j]);
}

static void zcnic_get_ethtool_stats(struct net_device *dev,
				    struct ethtool_stats *estats, u64 *data)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	unsigned int start;
	u32 i;

	*data++ = atomic64_read(&priv->rx_no_queue);
	*data++ = atomic64_read(&priv->rx_steer_drops);
	for (i = 0; i < priv->num_queues; i++) {
		struct zcnic_rq *rq = priv->rq[i];
		struct zcnic_rq_stats *s;

		if (!rq) {
			memset(data, 0, ARRAY_SIZE(zcnic_qstrings) * 8);
			data += ARRAY_SIZE(zcnic_qstrings);
			continue;
		}
		s = &rq->stats;
		do {
			start = u64_stats_fetch_begin(&s->syncp);
			data[0] = s->packets;
			data[1] = s->bytes;
			data[2] = s->hds_packets;
			data[3] = s->alloc_fail;
			data[4] = s->no_buf_drops;
			data[5] = s->fault_drops;
			data[6] = s->too_big_drops;
			data[8] = s->csum_unnecessary;
			data[9] = s->csum_none;
			data[10] = s->csum_bad;
		} while (u64_stats_fetch_retry(&s->syncp, start));
		data[7] = atomic64_read(&rq->overruns);
		data[11] = READ_ONCE(rq->posted);
		data[12] = rq->ring_size;
		data[13] = rq->unreadable;
		data += ARRAY_SIZE(zcnic_qstrings);
	}
}

static void zcnic_get_ringparam(struct net_device *dev,
				struct ethtool_ringparam *ring,
				struct kernel_ethtool_ringparam *kring,
				struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	ring->rx_max_pending = ZCNIC_MAX_RING;
	ring->rx_pending = priv->ring_size;
	kring->tcp_data_split = priv->hds ? ETHTOOL_TCP_DATA_SPLIT_ENABLED :
					    ETHTOOL_TCP_DATA_SPLIT_DISABLED;
	kring->hds_thresh = priv->hds_thresh;
	kring->hds_thresh_max = ZCNIC_HDS_MAX;
}

static int zcnic_set_ringparam(struct net_device *dev,
			       struct ethtool_ringparam *ring,
			       struct kernel_ethtool_ringparam *kring,
			       struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	int err;

	if (ring->rx_mini_pending || ring->rx_jumbo_pending ||
	    ring->tx_pending) {
		NL_SET_ERR_MSG(extack, "only the rx ring can be sized");
		return -EINVAL;
	}
	if (ring->rx_pending < ZCNIC_MIN_RING) {
		NL_SET_ERR_MSG(extack, "rx ring too small");
		return -EINVAL;
	}
	if (ring->rx_pending != priv->ring_size) {
		err = zcnic_reconfig(priv, priv->num_queues, ring->rx_pending);
		if (err)
			return err;
	}
	/* the split engine reads these per frame, no restart needed */
	WRITE_ONCE(priv->hds, kring->tcp_data_split ==
			      ETHTOOL_TCP_DATA_SPLIT_ENABLED);
	WRITE_ONCE(priv->hds_thresh, kring->hds_thresh);
	return 0;
}

static void zcnic_get_channels(struct net_device *dev,
			       struct ethtool_channels *ch)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	ch->max_combined = ZCNIC_MAX_QUEUES;
	ch->combined_count = priv->num_queues;
}

static int zcnic_set_channels(struct net_device *dev,
			      struct ethtool_channels *ch)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	if (ch->rx_count || ch->tx_count || ch->other_count ||
	    !ch->combined_count)
		return -EINVAL;
	if (ch->combined_count == priv->num_queues)
		return 0;
	return zcnic_reconfig(priv, ch->combined_count, priv->ring_size);
}

static u32 zcnic_get_rx_ring_count(struct net_device *dev)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	return priv->num_queues;
}

static u32 zcnic_get_rxfh_key_size(struct net_device *dev)
{
	return ZCNIC_KEY_SIZE;
}

static u32 zcnic_get_rxfh_indir_size(struct net_device *dev)
{
	return ZCNIC_INDIR_SIZE;
}

static int zcnic_get_rxfh(struct net_device *dev, struct ethtool_rxfh_param *rxfh)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	const struct zcnic_steer *st;

	rxfh->hfunc = ETH_RSS_HASH_TOP;
	rcu_read_lock();
	st = rcu_dereference(priv->steer);
	if (rxfh->indir)
		memcpy(rxfh->indir, st->indir, sizeof(st->indir));
	if (rxfh->key)
		memcpy(rxfh->key, st->rss_key, sizeof(st->rss_key));
	rcu_read_unlock();
	return 0;
}

static int zcnic_check_hfunc(const struct ethtool_rxfh_param *rxfh,
			     struct netlink_ext_ack *extack)
{
	if (rxfh->hfunc != ETH_RSS_HASH_NO_CHANGE &&
	    rxfh->hfunc != ETH_RSS_HASH_TOP) {
		NL_SET_ERR_MSG(extack, "only the Toeplitz hash is supported");
		return -EOPNOTSUPP;
	}
	return 0;
}

static int zcnic_set_rxfh(struct net_device *dev,
			  struct ethtool_rxfh_param *rxfh,
			  struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_steer *st;
	int err;

	err = zcnic_check_hfunc(rxfh, extack);
	if (err)
		return err;
	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	if (!st) {
		mutex_unlock(&priv->steer_mutex);
		return -ENOMEM;
	}
	if (rxfh->indir)
		memcpy(st->indir, rxfh->indir, sizeof(st->indir));
	if (rxfh->key)
		memcpy(st->rss_key, rxfh->key, sizeof(st->rss_key));
	zcnic_steer_commit(priv, st);
	mutex_unlock(&priv->steer_mutex);
	return 0;
}

static int zcnic_get_rxfh_fields(struct net_device *dev,
				 struct ethtool_rxfh_fields *f)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	int type = zcnic_flow_l4_type(f->flow_type);

	if (type >= 0) {
		rcu_read_lock();
		f->data = rcu_dereference(priv->steer)->hash_fields[type];
		rcu_read_unlock();
		return 0;
	}
	switch (f->flow_type) {
	case IPV4_FLOW:
	case IPV6_FLOW:
	case AH_ESP_V4_FLOW:
	case AH_ESP_V6_FLOW:
	case SCTP_V4_FLOW:
	case SCTP_V6_FLOW:
		f->data = RXH_IP_SRC | RXH_IP_DST;
		return 0;
	}
	f->data = 0;
	return 0;
}

/*
 * Hash TCP/UDP flows over any of their addresses and ports, per flow type
 * (ethtool -N rx-flow-hash tcp4 s|d|f|n...); nothing else can change.
 */
static int zcnic_set_rxfh_fields(struct net_device *dev,
				 const struct ethtool_rxfh_fields *f,
				 struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	int type = zcnic_flow_l4_type(f->flow_type);
	struct ethtool_rxfh_fields cur = { .flow_type = f->flow_type };
	struct zcnic_steer *st;

	if (type < 0) {
		zcnic_get_rxfh_fields(dev, &cur);
		return f->data == cur.data ? 0 : -EOPNOTSUPP;
	}
	if (f->data & ~ZCNIC_RXH_L4) {
		NL_SET_ERR_MSG(extack,
			       "zcnic hashes addresses and ports, nothing else");
		return -EOPNOTSUPP;
	}
	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	if (st) {
		st->hash_fields[type] = f->data;
		zcnic_steer_commit(priv, st);
	}
	mutex_unlock(&priv->steer_mutex);
	return st ? 0 : -ENOMEM;
}

static int zcnic_ctx_update(struct zcnic_priv *priv,
			    struct ethtool_rxfh_context *ctx,
			    const struct ethtool_rxfh_param *rxfh, bool create,
			    struct netlink_ext_ack *extack)
{
	u32 id = rxfh->rss_context, i;
	u32 *indir = ethtool_rxfh_context_indir(ctx);
	struct zcnic_steer *st;
	int err;

	if (!id || id >= ZCNIC_MAX_RSS_CTX)
		return -EINVAL;
	err = zcnic_check_hfunc(rxfh, extack);
	if (err)
		return err;
	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	if (!st) {
		mutex_unlock(&priv->steer_mutex);
		return -ENOMEM;
	}
	if (create) {
		ctx->hfunc = ETH_RSS_HASH_TOP;
		memcpy(ethtool_rxfh_context_key(ctx), st->rss_key,
		       ZCNIC_KEY_SIZE);
	}
	for (i = 0; i < ZCNIC_INDIR_SIZE; i++) {
		if (rxfh->indir)
			st->ctx_indir[id][i] = rxfh->indir[i];
		else if (create)
			st->ctx_indir[id][i] =
				ethtool_rxfh_indir_default(i, priv->num_queues);
		indir[i] = st->ctx_indir[id][i];
	}
	st->ctx_used[id] = true;
	zcnic_steer_commit(priv, st);
	mutex_unlock(&priv->steer_mutex);
	return 0;
}

static int zcnic_create_rxfh_context(struct net_device *dev,
				     struct ethtool_rxfh_context *ctx,
				     const struct ethtool_rxfh_param *rxfh,
				     struct netlink_ext_ack *extack)
{
	return zcnic_ctx_update(netdev_priv(dev), ctx, rxfh, true, extack);
}

static int zcnic_modify_rxfh_context(struct net_device *dev,
				     struct ethtool_rxfh_context *ctx,
				     const struct ethtool_rxfh_param *rxfh,
				     struct netlink_ext_ack *extack)
{
	return zcnic_ctx_update(netdev_priv(dev), ctx, rxfh, false, extack);
}

static int zcnic_remove_rxfh_context(struct net_device *dev,
				     struct ethtool_rxfh_context *ctx,
				     u32 rss_context,
				     struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct zcnic_steer *st;

	if (!rss_context || rss_context >= ZCNIC_MAX_RSS_CTX)
		return -EINVAL;
	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	if (st) {
		st->ctx_used[rss_context] = false;
		zcnic_steer_commit(priv, st);
	}
	mutex_unlock(&priv->steer_mutex);
	return st ? 0 : -ENOMEM;
}

static int zcnic_get_rxnfc(struct net_device *dev, struct ethtool_rxnfc *info,
			   u32 *rule_locs)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	const struct zcnic_steer *st;
	u32 i, n = 0;
	int err = 0;

	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_locked(priv);
	switch (info->cmd) {
	case ETHTOOL_GRXCLSRLCNT:
		info->rule_cnt = st->n_rules;
		info->data = ZCNIC_MAX_RULES | RX_CLS_LOC_SPECIAL;
		break;
	case ETHTOOL_GRXCLSRULE:
		i = info->fs.location;
		if (i >= ZCNIC_MAX_RULES || !st->rules[i].used) {
			err = -ENOENT;
			break;
		}
		info->fs = st->rules[i].fs;
		info->rss_context = st->rules[i].rss_ctx;
		break;
	case ETHTOOL_GRXCLSRLALL:
		info->data = ZCNIC_MAX_RULES;
		for (i = 0; i < ZCNIC_MAX_RULES; i++) {
			if (!st->rules[i].used)
				continue;
			if (n == info->rule_cnt) {
				err = -EMSGSIZE;
				break;
			}
			rule_locs[n++] = i;
		}
		info->rule_cnt = n;
		break;
	default:
		err = -EOPNOTSUPP;
	}
	mutex_unlock(&priv->steer_mutex);
	return err;
}

static int zcnic_check_rule(struct zcnic_priv *priv,
			    const struct zcnic_steer *st,
			    const struct ethtool_rxnfc *info)
{
	const struct ethtool_rx_flow_spec *fs = &info->fs;
	u64 ring = fs->ring_cookie;

	switch (fs->flow_type & ~FLOW_RSS) {
	case TCP_V4_FLOW:
	case UDP_V4_FLOW:
		if (fs->m_u.tcp_ip4_spec.tos)
			return -EOPNOTSUPP;
		break;
	case TCP_V6_FLOW:
	case UDP_V6_FLOW:
		if (fs->m_u.tcp_ip6_spec.tclass)
			return -EOPNOTSUPP;
		break;
	default:
		return -EOPNOTSUPP;
	}
	if (ring == RX_CLS_FLOW_DISC)
		return 0;
	if (ethtool_get_flow_spec_ring_vf(ring))
		return -EINVAL;
	if (fs->flow_type & FLOW_RSS) {
		if (info->rss_context &&
		    (info->rss_context >= ZCNIC_MAX_RSS_CTX ||
		     !st->ctx_used[info->rss_context]))
			return -EINVAL;
		return 0;
	}
	if (ethtool_get_flow_spec_ring(ring) >= priv->num_queues)
		return -EINVAL;
	return 0;
}

static int zcnic_set_rxnfc(struct net_device *dev, struct ethtool_rxnfc *info)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	u32 loc = info->fs.location, i;
	struct zcnic_steer *st;
	int err = 0;

	mutex_lock(&priv->steer_mutex);
	st = zcnic_steer_edit(priv);
	if (!st) {
		mutex_unlock(&priv->steer_mutex);
		return -ENOMEM;
	}
	switch (info->cmd) {
	case ETHTOOL_SRXCLSRLINS:
		err = zcnic_check_rule(priv, st, info);
		if (err)
			break;
		if (loc == RX_CLS_LOC_ANY || loc == RX_CLS_LOC_FIRST) {
			for (i = 0; i < ZCNIC_MAX_RULES; i++)
				if (!st->rules[i].used)
					break;
			loc = i;
		} else if (loc == RX_CLS_LOC_LAST) {
			for (i = ZCNIC_MAX_RULES; i > 0; i--)
				if (!st->rules[i - 1].used)
					break;
			loc = i ? i - 1 : ZCNIC_MAX_RULES;
		}
		if (loc >= ZCNIC_MAX_RULES) {
			err = -ENOSPC;
			break;
		}
		if (!st->rules[loc].used)
			st->n_rules++;
		info->fs.location = loc;
		st->rules[loc].fs = info->fs;
		st->rules[loc].rss_ctx = (info->fs.flow_type & FLOW_RSS) ?
					 info->rss_context : 0;
		st->rules[loc].used = true;
		break;
	case ETHTOOL_SRXCLSRLDEL:
		if (loc >= ZCNIC_MAX_RULES || !st->rules[loc].used) {
			err = -ENOENT;
			break;
		}
		st->rules[loc].used = false;
		st->n_rules--;
		break;
	default:
		err = -EOPNOTSUPP;
	}
	if (err)
		kvfree(st);
	else
		zcnic_steer_commit(priv, st);
	mutex_unlock(&priv->steer_mutex);
	return err;
}

static const struct ethtool_ops zcnic_ethtool_ops = {
	.supported_ring_params	= ETHTOOL_RING_USE_TCP_DATA_SPLIT |
				  ETHTOOL_RING_USE_HDS_THRS,
	.rxfh_max_num_contexts	= ZCNIC_MAX_RSS_CTX,
	.get_drvinfo		= zcnic_get_drvinfo,
	.get_link		= ethtool_op_get_link,
	.get_sset_count		= zcnic_get_sset_count,
	.get_strings		= zcnic_get_strings,
	.get_ethtool_stats	= zcnic_get_ethtool_stats,
	.get_ringparam		= zcnic_get_ringparam,
	.set_ringparam		= zcnic_set_ringparam,
	.get_channels		= zcnic_get_channels,
	.set_channels		= zcnic_set_channels,
	.get_rx_ring_count	= zcnic_get_rx_ring_count,
	.get_rxnfc		= zcnic_get_rxnfc,
	.set_rxnfc		= zcnic_set_rxnfc,
	.get_rxfh_key_size	= zcnic_get_rxfh_key_size,
	.get_rxfh_indir_size	= zcnic_get_rxfh_indir_size,
	.get_rxfh		= zcnic_get_rxfh,
	.set_rxfh		= zcnic_set_rxfh,
	.get_rxfh_fields	= zcnic_get_rxfh_fields,
	.set_rxfh_fields	= zcnic_set_rxfh_fields,
	.create_rxfh_context	= zcnic_create_rxfh_context,
	.modify_rxfh_context	= zcnic_modify_rxfh_context,
	.remove_rxfh_context	= zcnic_remove_rxfh_context,
};

/* rtnl_link_ops */

static void zcnic_debugfs_init(struct zcnic_priv *priv)
{
	struct dentry *d;

	d = debugfs_create_dir(netdev_name(priv->dev), zcnic_dbg_root);
	if (IS_ERR(d))
		return;
	priv->dbg = d;
	debugfs_create_u32("fail_queue_mem_alloc", 0600, d,
			   &priv->fail_queue_mem_alloc);
	debugfs_create_u32("fail_queue_start", 0600, d,
			   &priv->fail_queue_start);
	debugfs_create_u32("fail_pp_alloc", 0600, d, &priv->fail_pp_alloc);
	debugfs_create_u32("rx_drop", 0600, d, &priv->rx_drop);
	debugfs_create_u32("frags_per_buffer", 0600, d, &priv->frags_per_buffer);
	debugfs_create_u32("header_pool", 0600, d, &priv->header_pool);
}

/*
 * Free the DMA device and the id.  Idempotent: register_netdevice() calls
 * the destructor itself when it fails after ndo_init (a taken ifindex, a
 * notifier's veto), and zcnic_newlink()'s error path then calls it again.
 */
static void zcnic_release(struct zcnic_priv *priv)
{
	zcnic_irqs_free(priv);
	if (priv->fdev) {
		struct device *dma_dev = get_device(&priv->fdev->dev);
		u32 slot;

		/* dma_parms lives in priv; the device may outlive it (page pools) */
		priv->fdev->dev.dma_parms = NULL;
		faux_device_destroy(priv->fdev);
		priv->fdev = NULL;
		/*
		 * A dma-buf attached to the device (a devmem binding, whose
		 * last reference may go from a workqueue long after the link)
		 * unmaps through it without holding a reference. A real NIC's
		 * PCI device outlives its netdev; this one is kept until unload.
		 */
		if (xa_alloc(&zcnic_retired, &slot, dma_dev, xa_limit_32b, GFP_KERNEL))
			put_device(dma_dev);
	}
	if (priv->id >= 0)
		ida_free(&zcnic_ida, priv->id);
	priv->id = -1;
	/* unregistered, or never registered: no reader is left */
	kvfree(rcu_replace_pointer(priv->steer, NULL, true));
}

static void zcnic_destructor(struct net_device *dev)
{
	zcnic_release(netdev_priv(dev));
}

static void zcnic_setup(struct net_device *dev)
{
	ether_setup(dev);
	dev->netdev_ops = &zcnic_netdev_ops;
	dev->ethtool_ops = &zcnic_ethtool_ops;
	dev->stat_ops = &zcnic_stat_ops;
	dev->queue_mgmt_ops = &zcnic_queue_mgmt_ops;
	dev->needs_free_netdev = true;
	dev->priv_destructor = zcnic_destructor;
	dev->pcpu_stat_type = NETDEV_PCPU_STAT_DSTATS;
	dev->lltx = true;
	dev->priv_flags &= ~IFF_TX_SKB_SHARING;
	dev->priv_flags |= IFF_NO_QUEUE;
	dev->hw_features = NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_HIGHDMA |
			   NETIF_F_GSO_SOFTWARE | NETIF_F_RXCSUM |
			   NETIF_F_RXHASH | NETIF_F_NTUPLE;
	dev->features = dev->hw_features;
	/* TX from dma-buf net_iovs, read by the emulated DMA engine */
	dev->netmem_tx = NETMEM_TX_DMA;
}

static int zcnic_validate(struct nlattr *tb[], struct nlattr *data[],
			  struct netlink_ext_ack *extack)
{
	if (tb[IFLA_ADDRESS]) {
		if (nla_len(tb[IFLA_ADDRESS]) != ETH_ALEN)
			return -EINVAL;
		if (!is_valid_ether_addr(nla_data(tb[IFLA_ADDRESS])))
			return -EADDRNOTAVAIL;
	}
	return 0;
}

static unsigned int zcnic_get_num_rx_queues(void)
{
	return ZCNIC_MAX_QUEUES;
}

static unsigned int zcnic_get_num_tx_queues(void)
{
	return 1;
}

/**
 * zcnic_newlink() - "ip link add NAME link LOWER type zcnic"
 * @dev: the new device
 * @params: netlink attributes
 * @extack: error reporting
 *
 * Return: 0 or a negative errno.
 */
static int zcnic_newlink(struct net_device *dev,
			 struct rtnl_newlink_params *params,
			 struct netlink_ext_ack *extack)
{
	struct zcnic_priv *priv = netdev_priv(dev);
	struct nlattr **tb = params->tb;
	struct zcnic_steer *st;
	struct net_device *lower;
	char name[32];
	int err;
	u32 i;

	if (!tb[IFLA_LINK]) {
		NL_SET_ERR_MSG(extack, "zcnic needs a lower device (link DEV)");
		return -EINVAL;
	}
	lower = __dev_get_by_index(rtnl_newlink_link_net(params),
				   nla_get_u32(tb[IFLA_LINK]));
	if (!lower)
		return -ENODEV;
	if (lower->type != ARPHRD_ETHER || (lower->flags & IFF_LOOPBACK) ||
	    lower->rtnl_link_ops == &zcnic_link_ops) {
		NL_SET_ERR_MSG(extack, "lower device must be an Ethernet device");
		return -EINVAL;
	}
	if (netdev_is_rx_handler_busy(lower)) {
		NL_SET_ERR_MSG(extack, "lower device already has an rx_handler");
		return -EBUSY;
	}

	priv->dev = dev;
	priv->lower = lower;
	if (!READ_ONCE(large_buffers))
		dev->queue_mgmt_ops = &zcnic_queue_mgmt_ops_page;
	priv->num_queues = ZCNIC_DEF_QUEUES;
	priv->ring_size = ZCNIC_DEF_RING;
	mutex_init(&priv->steer_mutex);
	st = kvzalloc_obj(*st);
	if (!st)
		return -ENOMEM;
	netdev_rss_key_fill(st->rss_key, sizeof(st->rss_key));
	for (i = 0; i < ARRAY_SIZE(st->hash_fields); i++)
		st->hash_fields[i] = ZCNIC_RXH_L4;
	for (i = 0; i < ZCNIC_INDIR_SIZE; i++)
		st->indir[i] = ethtool_rxfh_indir_default(i, priv->num_queues);
	RCU_INIT_POINTER(priv->steer, st);

	priv->id = ida_alloc(&zcnic_ida, GFP_KERNEL);
	if (priv->id < 0) {
		err = priv->id;
		goto err_release;
	}
	snprintf(name, sizeof(name), "zcnic-dma%d", priv->id);
	priv->fdev = faux_device_create(name, NULL, NULL);
	if (!priv->fdev) {
		err = -ENODEV;
		goto err_release;
	}
	/* a 64-bit capable DMA master: dma-direct, DMA address == phys */
	err = dma_coerce_mask_and_coherent(&priv->fdev->dev,
					   DMA_BIT_MASK(64));
	if (err)
		goto err_release;
	/*
	 * The emulated DMA engine writes through the kernel mapping of
	 * dma_to_phys(): an IOMMU (dma_ops) or forced bouncing would put the
	 * data somewhere the CPU never reads.
	 */
	if (get_dma_ops(&priv->fdev->dev) ||
	    is_swiotlb_force_bounce(&priv->fdev->dev)) {
		NL_SET_ERR_MSG(extack,
			       "zcnic needs a direct-mapped DMA device (no IOMMU translation, no swiotlb=force)");
		err = -EOPNOTSUPP;
		goto err_release;
	}
	/*
	 * Like real NICs, no limit on scatter-gather segment length: a faux
	 * device has no dma_parms, and without them the DMA core assumes 64K
	 * segments, which a zcrx area mapping exceeds (DMA-API debug warns).
	 */
	priv->fdev->dev.dma_parms = &priv->dma_parms;
	dma_set_max_seg_size(&priv->fdev->dev, UINT_MAX);
	SET_NETDEV_DEV(dev, &priv->fdev->dev);
	err = zcnic_irqs_init(priv);
	if (err)
		goto err_release;

	if (!tb[IFLA_ADDRESS])
		eth_hw_addr_set(dev, lower->dev_addr);
	if (!tb[IFLA_MTU])
		dev->mtu = lower->mtu;
	dev->max_mtu = lower->max_mtu;
	netif_inherit_tso_max(dev, lower);
	err = netif_set_real_num_rx_queues(dev, priv->num_queues);
	if (err)
		goto err_release;

	err = register_netdevice(dev);
	if (err)
		goto err_release;
	/* from here on the destructor frees fdev and the id */

	err = netdev_upper_dev_link(lower, dev, extack);
	if (err)
		goto err_unregister;
	err = netdev_rx_handler_register(lower, zcnic_handle_frame, priv);
	if (err)
		goto err_unlink;

	netif_stacked_transfer_operstate(lower, dev);
	zcnic_debugfs_init(priv);
	return 0;

err_unlink:
	netdev_upper_dev_unlink(lower, dev);
err_unregister:
	unregister_netdevice(dev);
	return err;
err_release:
	zcnic_release(priv);
	return err;
}

static void zcnic_dellink(struct net_device *dev, struct list_head *head)
{
	struct zcnic_priv *priv = netdev_priv(dev);

	debugfs_remove_recursive(priv->dbg);
	priv->dbg = NULL;
	netdev_rx_handler_unregister(priv->lower);
	netdev_upper_dev_unlink(priv->lower, dev);
	unregister_netdevice_queue(dev, head);
}

static struct rtnl_link_ops zcnic_link_ops = {
	.kind			= "zcnic",
	.priv_size		= sizeof(struct zcnic_priv),
	.setup			= zcnic_setup,
	.validate		= zcnic_validate,
	.newlink		= zcnic_newlink,
	.dellink		= zcnic_dellink,
	.get_num_rx_queues	= zcnic_get_num_rx_queues,
	.get_num_tx_queues	= zcnic_get_num_tx_queues,
};

/* Follow the lower device: carrier, and go away with it. */
static int zcnic_device_event(struct notifier_block *nb, unsigned long event,
			      void *ptr)
{
	struct net_device *lower = netdev_notifier_info_to_dev(ptr);
	struct zcnic_priv *priv;
	LIST_HEAD(list_kill);

	/* fault injection: veto a new zcnic (here @lower is that new link) */
	if (event == NETDEV_POST_INIT)
		return lower->rtnl_link_ops == &zcnic_link_ops &&
		       zcnic_fault_take(&fail_register) ?
		       notifier_from_errno(-EIO) : NOTIFY_DONE;

	if (rcu_access_pointer(lower->rx_handler) != zcnic_handle_frame)
		return NOTIFY_DONE;
	priv = rtnl_dereference(lower->rx_handler_data);

	switch (event) {
	case NETDEV_UP:
	case NETDEV_DOWN:
	case NETDEV_CHANGE:
		netif_stacked_transfer_operstate(lower, priv->dev);
		break;
	case NETDEV_UNREGISTER:
		/* twiddle thumbs on netns device moves */
		if (lower->reg_state != NETREG_UNREGISTERING)
			break;
		zcnic_dellink(priv->dev, &list_kill);
		unregister_netdevice_many(&list_kill);
		break;
	}
	return NOTIFY_DONE;
}

static struct notifier_block zcnic_notifier = {
	.notifier_call = zcnic_device_event,
};

static int __init zcnic_init(void)
{
	int err;

	zcnic_dbg_root = debugfs_create_dir("zcnic", NULL);
	err = register_netdevice_notifier(&zcnic_notifier);
	if (err)
		goto err_dbg;
	err = rtnl_link_register(&zcnic_link_ops);
	if (err)
		goto err_notifier;
	return 0;

err_notifier:
	unregister_netdevice_notifier(&zcnic_notifier);
err_dbg:
	debugfs_remove_recursive(zcnic_dbg_root);
	return err;
}

static void __exit zcnic_exit(void)
{
	struct device *dma_dev;
	unsigned long slot;

	rtnl_link_unregister(&zcnic_link_ops);
	xa_for_each(&zcnic_retired, slot, dma_dev)
		put_device(dma_dev);
	xa_destroy(&zcnic_retired);
	unregister_netdevice_notifier(&zcnic_notifier);
	debugfs_remove_recursive(zcnic_dbg_root);
}

module_init(zcnic_init);
module_exit(zcnic_exit);

MODULE_AUTHOR("zcrx-lab");
MODULE_DESCRIPTION("Emulated zero-copy receive NIC stacked on a lower netdev");
MODULE_LICENSE("GPL");
MODULE_ALIAS_RTNL_LINK("zcnic");
