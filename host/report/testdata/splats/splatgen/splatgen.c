// SPDX-License-Identifier: GPL-2.0
/*
 * splatgen: makes the kernel report one bug class on purpose, so the splat
 * scanner's test logs (host/testdata/splats/) are our own captures from the
 * lab's debug kernel rather than published reports.
 *
 *   insmod splatgen.ko what=kasan      slab use-after-free read (KASAN)
 *   insmod splatgen.ko what=lockdep    AB-BA mutex order (lockdep)
 *   insmod splatgen.ko what=kmemleak   four lost kmallocs (then: echo scan)
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>

static char *what = "";
module_param(what, charp, 0444);
MODULE_PARM_DESC(what, "kasan, lockdep or kmemleak");

static DEFINE_MUTEX(splatgen_a);
static DEFINE_MUTEX(splatgen_b);

static noinline void splatgen_kasan(void)
{
	char *p = kmalloc(128, GFP_KERNEL);

	if (!p)
		return;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);
	pr_info("splatgen: read after free: %d\n", READ_ONCE(p[8]));
}

static noinline void splatgen_lockdep(void)
{
	/* No deadlock (one thread), but lockdep records both orders. */
	mutex_lock(&splatgen_a);
	mutex_lock(&splatgen_b);
	mutex_unlock(&splatgen_b);
	mutex_unlock(&splatgen_a);

	mutex_lock(&splatgen_b);
	mutex_lock(&splatgen_a);
	mutex_unlock(&splatgen_a);
	mutex_unlock(&splatgen_b);
}

static noinline void splatgen_kmemleak(void)
{
	static const size_t sizes[] = { 32, 96, 512, 2048 };
	void *p;
	int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		p = kmalloc(sizes[i], GFP_KERNEL);
		OPTIMIZER_HIDE_VAR(p);
		p = NULL;
	}
}

static int __init splatgen_init(void)
{
	if (!strcmp(what, "kasan"))
		splatgen_kasan();
	else if (!strcmp(what, "lockdep"))
		splatgen_lockdep();
	else if (!strcmp(what, "kmemleak"))
		splatgen_kmemleak();
	else
		return -EINVAL;
	return 0;
}

static void __exit splatgen_exit(void)
{
}

module_init(splatgen_init);
module_exit(splatgen_exit);
MODULE_DESCRIPTION("Deliberate KASAN, lockdep and kmemleak reports for the splat scanner's tests");
MODULE_LICENSE("GPL");
