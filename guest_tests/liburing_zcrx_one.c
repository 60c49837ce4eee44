// SPDX-License-Identifier: MIT
/*
 * One sub-test of liburing's test/zcrx.c, chosen by name: `zcrx-one NAME` (`--list`
 * prints the names). liburing's binary runs them all in one process and cannot pick
 * one (any argument makes it exit T_EXIT_SKIP), so this file includes zcrx.c itself,
 * unmodified, and repeats its main() and run_tests() for the one sub-test: the same
 * set-up (query, the NODEV check, setup()), the same feature gates, the same verdicts
 * (T_EXIT_PASS, T_EXIT_FAIL, T_EXIT_SKIP with the reason printed).
 *
 * Built by host/kernels/liburing.py with zcrx.c, helpers.c and helpers.h beside it.
 * The sub-tests listed here are those run_tests() calls in liburing 2.15; the guest
 * test test_liburing.py::test_case_list compares them with run_tests() of the source
 * the binary was built from.
 */
#define main liburing_zcrx_main
#include "zcrx.c"
#undef main

static int abnormal_exit(void)
{
	return test_abnormal_exit(false, false);
}

static int abnormal_exit_iowq(void)
{
	return test_abnormal_exit(true, false);
}

static int abnormal_exit_pinned(void)
{
	return test_abnormal_exit(false, true);
}

static int abnormal_exit_iowq_pinned(void)
{
	return test_abnormal_exit(true, true);
}

enum gate {
	ALWAYS,
	RX_PAGE_SIZE,	/* query.features & ZCRX_FEATURE_RX_PAGE_SIZE */
	IMPORT,		/* query.register_flags & ZCRX_REG_IMPORT */
};

static const struct sub {
	const char *name;
	int (*fn)(void);
	enum gate gate;
} subs[] = {
	{ "register_basic", test_register_basic, ALWAYS },
	{ "rq", test_rq, ALWAYS },
	{ "area", test_area, ALWAYS },
	{ "area_ro", test_area_ro, ALWAYS },
	{ "invalid_rx_page", test_invalid_rx_page, RX_PAGE_SIZE },
	{ "ro_params", test_ro_params, ALWAYS },
	{ "invalid_recv", test_invalid_recv, ALWAYS },
	{ "exit_with_inflight", test_exit_with_inflight, ALWAYS },
	{ "zcrx_invalid_clone", test_zcrx_invalid_clone, IMPORT },
	{ "zcrx_clone", test_zcrx_clone, IMPORT },
	{ "rq_flush", test_rq_flush, ALWAYS },
	{ "invalid_rqes", test_invalid_rqes, ALWAYS },
	{ "invalid_rq_pointers", test_invalid_rq_pointers, ALWAYS },
	{ "recv", test_recv, ALWAYS },
	{ "abnormal_exit", abnormal_exit, ALWAYS },
	{ "abnormal_exit_iowq", abnormal_exit_iowq, ALWAYS },
	{ "abnormal_exit_pinned", abnormal_exit_pinned, IMPORT },
	{ "abnormal_exit_iowq_pinned", abnormal_exit_iowq_pinned, IMPORT },
};

int main(int argc, char *argv[])
{
	const struct sub *s = NULL;
	unsigned i;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME | --list\n", argv[0]);
		return T_EXIT_FAIL;
	}
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (!strcmp(argv[1], "--list"))
			printf("%s\n", subs[i].name);
		else if (!strcmp(argv[1], subs[i].name))
			s = &subs[i];
	}
	if (!strcmp(argv[1], "--list"))
		return T_EXIT_PASS;
	if (!s) {
		fprintf(stderr, "no sub-test %s\n", argv[1]);
		return T_EXIT_FAIL;
	}

	/* zcrx.c's main() */
	page_size = sysconf(_SC_PAGESIZE);
	if (page_size < 0) {
		perror("sysconf(_SC_PAGESIZE)");
		return T_EXIT_FAIL;
	}
	query_zcrx();
	if (!zcrx_supported) {
		printf("zcrx and query are not supported, skip\n");
		return T_EXIT_SKIP;
	}
	if (!(query.register_flags & ZCRX_REG_NODEV)) {
		printf("zcrx nodev mode not supported, skip\n");
		return T_EXIT_SKIP;
	}
	setup();

	/* run_tests()'s gates and verdicts for this one */
	if (s->gate == RX_PAGE_SIZE && !(query.features & ZCRX_FEATURE_RX_PAGE_SIZE)) {
		printf("IORING_REGISTER_QUERY reports no ZCRX_FEATURE_RX_PAGE_SIZE, skip\n");
		return T_EXIT_SKIP;
	}
	if (s->gate == IMPORT && !(query.register_flags & ZCRX_REG_IMPORT)) {
		printf("zcrx import is not supported, skip\n");
		return T_EXIT_SKIP;
	}
	ret = s->fn();
	if (s->fn == test_register_basic && ret == -EPERM) {
		printf("-EPERM, zcrx requires NET_ADMIN, skip\n");
		return T_EXIT_SKIP;
	}
	if (ret) {
		fprintf(stderr, "%s() failed %i\n", s->name, ret);
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}
