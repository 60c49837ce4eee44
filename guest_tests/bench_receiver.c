// SPDX-License-Identifier: GPL-2.0
/*
 * The receive benchmark's C receiver (host/bench.py, guest_tests/bench.py): the kernel
 * paths without the Python client's overhead.  Takes a listening TCP socket as stdin,
 * accepts one connection and receives it to EOF either by zcrx (RECV_ZC multishot on
 * IFINDEX's QUEUE, every buffer returned through the refill ring as soon as it is read)
 * or by recv() into one 64 KiB buffer.  Both read every byte (a byte sum), so the two
 * rates compare the kernel's receive paths.
 *
 *   bench_receiver zcrx IFINDEX QUEUE AREA_PAGES   (prints "ready" once registered)
 *   bench_receiver recv
 *
 * Prints one JSON line: {"bytes": N, "sum": S, "ns": T}, T from accept() to EOF.
 */
#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FD STDIN_FILENO
#define RQ_ENTRIES 4096
#define ZCRX_CQE(cqe) ((struct io_uring_zcrx_cqe *)((cqe) + 1))

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_receiver: %s: %s\n", what, strerror(err));
	exit(1);
}

static uint64_t byte_sum(const unsigned char *p, size_t n)
{
	uint64_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static void by_recv(uint64_t *start, uint64_t *bytes, uint64_t *sum)
{
	static unsigned char buf[1 << 16];
	int fd = accept(LISTEN_FD, NULL, NULL);
	ssize_t n;

	if (fd < 0)
		die("accept", errno);
	*start = now_ns();
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		*bytes += n;
		*sum += byte_sum(buf, n);
	}
	if (n < 0)
		die("recv", errno);
	close(fd);
}

static void arm_recv_zc(struct io_uring *ring, int fd, unsigned int zcrx_id)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	io_uring_prep_rw(IORING_OP_RECV_ZC, sqe, fd, NULL, 0, 0);
	sqe->ioprio |= IORING_RECV_MULTISHOT;
	sqe->zcrx_ifq_idx = zcrx_id;
}

static void by_zcrx(int ifindex, int queue, size_t area_pages, uint64_t *start, uint64_t *bytes,
		    uint64_t *sum)
{
	size_t page = sysconf(_SC_PAGESIZE), area_len = area_pages * page;
	size_t ring_len = page + RQ_ENTRIES * sizeof(struct io_uring_zcrx_rqe);
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQE32 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	};
	struct io_uring_zcrx_area_reg area_reg = { .len = area_len };
	struct io_uring_region_desc region = { .size = ring_len, .flags = IORING_MEM_REGION_TYPE_USER };
	struct io_uring_zcrx_ifq_reg reg = {
		.if_idx = ifindex, .if_rxq = queue, .rq_entries = RQ_ENTRIES,
		.area_ptr = (uintptr_t)&area_reg, .region_ptr = (uintptr_t)&region,
	};
	struct io_uring_zcrx_rqe *rqes;
	struct io_uring ring;
	unsigned int rq_tail, mask;
	unsigned char *area;
	uint32_t *ktail;
	void *rq_ring;
	int fd, ret, done = 0;

	ret = io_uring_queue_init_params(512, &ring, &p);
	if (ret)
		die("io_uring_queue_init", -ret);
	area = mmap(NULL, area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	rq_ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (area == MAP_FAILED || rq_ring == MAP_FAILED)
		die("mmap", errno);
	area_reg.addr = (uintptr_t)area;
	region.user_addr = (uintptr_t)rq_ring;
	ret = io_uring_register_ifq(&ring, &reg);
	if (ret)
		die("IORING_REGISTER_ZCRX_IFQ", -ret);
	ktail = (uint32_t *)((char *)rq_ring + reg.offsets.tail);
	rqes = (struct io_uring_zcrx_rqe *)((char *)rq_ring + reg.offsets.rqes);
	rq_tail = *ktail;
	mask = reg.rq_entries - 1;
	printf("ready\n");
	fflush(stdout);

	fd = accept(LISTEN_FD, NULL, NULL);
	if (fd < 0)
		die("accept", errno);
	*start = now_ns();
	arm_recv_zc(&ring, fd, reg.zcrx_id);
	while (!done) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;
		int rearm = 0;

		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_submit_and_wait", -ret);
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			if (cqe->res > 0) {
				uint64_t off = ZCRX_CQE(cqe)->off;
				struct io_uring_zcrx_rqe *rqe = &rqes[rq_tail++ & mask];

				*bytes += cqe->res;
				*sum += byte_sum(area + (off & ~IORING_ZCRX_AREA_MASK), cqe->res);
				rqe->off = off;	/* read: give the buffer back at once */
				rqe->len = cqe->res;
			} else if (cqe->res == 0) {
				done = 1;	/* EOF */
			} else if (cqe->res != -ENOMEM) {
				die("RECV_ZC", -cqe->res);
			}
			if (!(cqe->flags & IORING_CQE_F_MORE))
				rearm = 1;	/* the multishot request ended (EOF or -ENOMEM) */
		}
		io_uring_cq_advance(&ring, seen);
		__atomic_store_n(ktail, rq_tail, __ATOMIC_RELEASE);
		if (rearm && !done)
			arm_recv_zc(&ring, fd, reg.zcrx_id);
	}
	close(fd);
	io_uring_queue_exit(&ring);
}

int main(int argc, char **argv)
{
	uint64_t bytes = 0, sum = 0, start = 0;

	if (argc == 5 && !strcmp(argv[1], "zcrx")) {
		by_zcrx(atoi(argv[2]), atoi(argv[3]), strtoul(argv[4], NULL, 0), &start, &bytes, &sum);
	} else if (argc == 2 && !strcmp(argv[1], "recv")) {
		by_recv(&start, &bytes, &sum);
	} else {
		fprintf(stderr, "usage: %s zcrx IFINDEX QUEUE AREA_PAGES | recv\n", argv[0]);
		return 2;
	}
	printf("{\"bytes\": %llu, \"sum\": %llu, \"ns\": %llu}\n", (unsigned long long)bytes,
	       (unsigned long long)sum, (unsigned long long)(now_ns() - start));
	return 0;
}
