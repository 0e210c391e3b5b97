/*
 * kernel-entry - what entering the kernel costs the code that runs next.
 *
 * Behind Postfix, a milter's thread shares its CPU with a dozen short-lived
 * Postfix processes, and it enters the kernel for every packet. On a
 * machine where each kernel entry or context switch flushes the TLB (page
 * table isolation without PCID, some paravirtualised guests), code with a
 * large working set, such as the spam plugin's Hyperscan databases and JIT
 * code, pays the page walks again after every entry. This program measures
 * that on the machine it runs on:
 *
 *   kernel-entry                 the cost of a system call, and of touching
 *                                N pages right after one against the same
 *                                pages touched again with no entry between
 *   kernel-entry --neighbour US KB
 *                                runs a neighbour until killed: every US
 *                                microseconds it wakes and touches KB of its
 *                                own memory (run it on the CPU of a program
 *                                to see what such a neighbour costs it)
 *
 * bench/spam/RESULTS.md ("The machine's share") has the figures.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int neighbour(long us, long kb)
{
	size_t n = (size_t)kb << 10;
	volatile unsigned char *a = malloc(n ? n : 1);
	if (!a) {
		perror("malloc");
		return 1;
	}
	memset((void *)a, 1, n);
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	for (;;) {
		for (size_t i = 0; i < n; i += 64)
			a[i]++;
		nanosleep(&ts, NULL);
	}
}

/* ns per round of touching one line in each of pages[0..npages), with a
 * system call before each round or not */
static double rounds(volatile unsigned char *m, const size_t *off, int npages, int n, int entry)
{
	unsigned long sum = 0;
	double t0 = now_ns();
	for (int r = 0; r < n; r++) {
		if (entry)
			syscall(SYS_getppid);
		for (int i = 0; i < npages; i++)
			sum += m[off[i]];
	}
	double t = (now_ns() - t0) / n;
	if (sum == 1) /* never: keeps the reads */
		puts("");
	return t;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--neighbour") == 0)
		return neighbour(atol(argv[2]), atol(argv[3]));
	if (argc != 1) {
		fprintf(stderr, "usage: kernel-entry [--neighbour US KB]\n");
		return 2;
	}
	enum { N = 200000, ROUNDS = 4000, MAXPAGES = 2048 };
	double t0 = now_ns();
	for (int i = 0; i < N; i++)
		syscall(SYS_getppid);
	double sys_ns = (now_ns() - t0) / N;
	printf("system call (getppid): %.0f ns\n", sys_ns);

	size_t span = (size_t)MAXPAGES * 4096 * 8; /* pages spread over 64 MB */
	volatile unsigned char *m = malloc(span);
	size_t *off = malloc(MAXPAGES * sizeof(*off));
	if (!m || !off) {
		perror("malloc");
		return 1;
	}
	memset((void *)m, 1, span);
	/* one line per page, pages in a fixed pseudo-random order, lines
	 * spread over the page so that no two share a cache set */
	uint32_t x = 2463534242u;
	for (int i = 0; i < MAXPAGES; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		off[i] = (size_t)(x % (MAXPAGES * 8)) * 4096 + (size_t)(i % 64) * 64;
	}
	printf("%8s %12s %14s %16s\n", "pages", "no entry ns", "after entry ns", "extra ns/page");
	for (int np = 8; np <= MAXPAGES; np *= 4) {
		rounds(m, off, np, ROUNDS / 10, 0); /* warm */
		double a = rounds(m, off, np, ROUNDS, 0);
		double b = rounds(m, off, np, ROUNDS, 1) - sys_ns;
		printf("%8d %12.0f %14.0f %16.2f\n", np, a, b, (b - a) / np);
	}
	return 0;
}
