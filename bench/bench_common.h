/* bench/bench_common.h: what every microbenchmark shares: a monotonic clock, a compiler
 * barrier that keeps measured work from being optimised away, the machine line and the
 * median of repeated runs. Header-only; each benchmark is one .c file and its own program. */
#ifndef RH_BENCH_COMMON_H
#define RH_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The compiler must assume p's memory was read and written: the loop body stays. */
static inline void bench_clobber(const void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

/* "machine: 2 CPUs online (nproc), <model>, Linux <release>" and the build flavour: numbers
 * from a Debug build or another machine are not comparable, so every run says which. */
static inline void bench_print_machine(void)
{
    char model[128] = "unknown CPU";
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(model, sizeof(model), "%s", colon + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    }
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    printf("machine: %ld CPUs online (nproc), %s, Linux %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           model, u.release);
#ifdef NDEBUG
    printf("build: optimised, assertions off\n");
#else
    printf("build: assertions on (a Debug build: do not quote these numbers)\n");
#endif
}

/* "reproduce: ..." for a benchmark built by bench/CMakeLists.txt; args as run. */
static inline void bench_print_reproduce(const char *target, int argc, char **argv)
{
    printf("reproduce: cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && "
           "cmake --build build-rel --target %s && taskset -c 0 ./build-rel/bench/%s",
           target, target);
    for (int i = 1; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n samples (sorts them in place). */
static inline double bench_median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define BENCH_REPS 5

/* Runs op(n) BENCH_REPS times after a warm-up of n/10 and prints ns per op: the median, and
 * the min and max so the spread shows. */
static inline void bench_measure(const char *what, void (*op)(uint64_t), uint64_t n)
{
    double ns[BENCH_REPS];
    op(n / 10);
    for (unsigned r = 0; r < BENCH_REPS; r++) {
        uint64_t t0 = bench_now_ns();
        op(n);
        ns[r] = (double)(bench_now_ns() - t0) / (double)n;
    }
    double lo = ns[0], hi = ns[0];
    for (unsigned r = 1; r < BENCH_REPS; r++)
        lo = ns[r] < lo ? ns[r] : lo, hi = ns[r] > hi ? ns[r] : hi;
    printf("  %-40s %6.2f ns/op   (median of %u x %llu; min %.2f max %.2f)\n", what,
           bench_median(ns, BENCH_REPS), BENCH_REPS, (unsigned long long)n, lo, hi);
}

#endif
