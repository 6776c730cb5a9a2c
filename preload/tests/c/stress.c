/* Multithreaded cross-thread-free stress and C API checks for the slabworks preload library.
 *
 *   stress [rounds] [producers] [consumers] [per_producer]
 *       Each round starts fresh threads (so thread exit is exercised): producers allocate
 *       blocks of seeded random sizes (8 B .. 64 KiB, a few of 5 MiB), fill them with a pattern,
 *       and push them through a bounded queue; consumers pop, check the pattern, sometimes
 *       realloc and check again, and free. In the middle of every round the main thread forks a
 *       child that allocates while the parent's threads keep running (the fork gate). The
 *       output is a deterministic summary (counts and a checksum independent of the
 *       interleaving), so it is byte-identical under glibc and under both allocators.
 *   forkloop [n]
 *       Two threads allocate and free without pause while the main thread forks n children
 *       that allocate; prints how many children hung (killed by alarm after 5 s).
 *   badfree
 *       Frees the address of a static array: the allocator must refuse (abort).
 *   api
 *       Deterministic checks of the C allocation family: alignments 2^0..2^23, calloc and
 *       reallocarray overflow, realloc content across every size class and the mmap boundary,
 *       malloc_usable_size, malloc(0), free(NULL), errno. Prints one "ok" line per check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what, unsigned long a, unsigned long b) {
    fprintf(stderr, "FAIL: %s (%lu, %lu)\n", what, a, b);
    fflush(stderr);
    _exit(1);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- queue ---------------------------------------------------------------------------- */
#define QCAP 256
struct queue {
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
    void *items[QCAP];
    int head, len, producers_left;
};
static struct queue q;

static void push(void *p) {
    pthread_mutex_lock(&q.m);
    while (q.len == QCAP) pthread_cond_wait(&q.not_full, &q.m);
    q.items[(q.head + q.len) % QCAP] = p;
    q.len++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.m);
}

static void *pop(void) {
    pthread_mutex_lock(&q.m);
    while (q.len == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.m);
    void *p = NULL;
    if (q.len > 0) {
        p = q.items[q.head];
        q.head = (q.head + 1) % QCAP;
        q.len--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.m);
    return p;
}

/* A block: header {size, seed}, then bytes i -> (seed + i * 131) & 0xff. */
struct hdr {
    size_t size;
    uint64_t seed;
};

static uint64_t fill(unsigned char *b, size_t size, uint64_t seed) {
    struct hdr h = {size, seed};
    memcpy(b, &h, sizeof h);
    uint64_t sum = 0;
    for (size_t i = sizeof h; i < size; i++) {
        b[i] = (unsigned char)(seed + i * 131);
        sum += b[i];
    }
    return sum + size;
}

static uint64_t check(const unsigned char *b, size_t size_limit) {
    struct hdr h;
    memcpy(&h, b, sizeof h);
    size_t n = h.size < size_limit ? h.size : size_limit;
    uint64_t sum = 0;
    for (size_t i = sizeof h; i < n; i++) {
        if (b[i] != (unsigned char)(h.seed + i * 131)) fail("pattern", i, h.size);
        sum += b[i];
    }
    return sum + h.size;
}

static size_t pick_size(uint64_t *s) {
    uint64_t r = splitmix(s);
    unsigned k = r % 1000;
    if (k == 0) return 5u << 20;                   /* beyond kmalloc: mmap */
    if (k < 20) return 16384 + (r >> 20) % 49152;  /* large kmalloc / pages */
    if (k < 200) return 1024 + (r >> 20) % 7168;
    return 16 + (r >> 20) % 1000;
}

struct prod_arg {
    int id, round;
    long n;
    uint64_t sum;
};

static void *producer(void *a) {
    struct prod_arg *pa = a;
    uint64_t s = (uint64_t)pa->round * 7919 + (uint64_t)pa->id * 104729 + 1;
    for (long i = 0; i < pa->n; i++) {
        size_t size = pick_size(&s);
        unsigned char *b = malloc(size);
        if (!b) fail("malloc", size, 0);
        pa->sum += fill(b, size, splitmix(&s));
        push(b);
    }
    return NULL;
}

struct cons_arg {
    int id;
    long got;
    uint64_t sum;
};

static void *consumer(void *a) {
    struct cons_arg *ca = a;
    for (;;) {
        unsigned char *b = pop();
        if (!b) break;
        struct hdr h;
        memcpy(&h, b, sizeof h);
        if (malloc_usable_size(b) < h.size) fail("usable", malloc_usable_size(b), h.size);
        uint64_t c = check(b, h.size);
        if ((h.seed & 7) == 0) {
            /* grow (moves for most), check the old bytes survived, shrink again */
            unsigned char *g = realloc(b, h.size * 2 + 100);
            if (!g) fail("realloc", h.size, 0);
            if (check(g, h.size) != c) fail("realloc content", h.size, 0);
            b = realloc(g, h.size);
            if (!b) fail("realloc shrink", h.size, 0);
            if (check(b, h.size) != c) fail("shrink content", h.size, 0);
        }
        ca->sum += c;
        ca->got++;
        free(b);
    }
    return NULL;
}

static int child_work(void) {
    /* Runs in a forked child of a process whose other threads were allocating. */
    void *ptrs[1000];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 1000; i++) {
            ptrs[i] = malloc(16 + i * 7);
            if (!ptrs[i]) return 3;
            memset(ptrs[i], i & 0xff, 16 + i * 7);
        }
        for (int i = 0; i < 1000; i++) {
            if (((unsigned char *)ptrs[i])[15 + i * 7] != (i & 0xff)) return 4;
            free(ptrs[i]);
        }
    }
    return 0;
}

static int stress(int rounds, int np, int nc, long per) {
    uint64_t produced = 0, consumed = 0;
    long total = 0;
    for (int r = 0; r < rounds; r++) {
        pthread_t pt[64], ct[64];
        struct prod_arg pa[64];
        struct cons_arg ca[64];
        q.head = q.len = 0;
        q.producers_left = np;
        for (int i = 0; i < nc; i++) {
            ca[i] = (struct cons_arg){i, 0, 0};
            pthread_create(&ct[i], NULL, consumer, &ca[i]);
        }
        for (int i = 0; i < np; i++) {
            pa[i] = (struct prod_arg){i, r, per, 0};
            pthread_create(&pt[i], NULL, producer, &pa[i]);
        }
        /* fork while everybody allocates */
        usleep(2000);
        pid_t pid = fork();
        if (pid == 0) _exit(child_work());
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("forked child", (unsigned long)pid, (unsigned long)st);
        for (int i = 0; i < np; i++) {
            pthread_join(pt[i], NULL);
            produced += pa[i].sum;
        }
        pthread_mutex_lock(&q.m);
        q.producers_left = 0;
        pthread_cond_broadcast(&q.not_empty);
        pthread_mutex_unlock(&q.m);
        for (int i = 0; i < nc; i++) {
            pthread_join(ct[i], NULL);
            consumed += ca[i].sum;
            total += ca[i].got;
        }
    }
    if (produced != consumed) fail("checksum", produced, consumed);
    printf("stress rounds=%d producers=%d consumers=%d blocks=%ld checksum=%llu\n", rounds, np,
           nc, total, (unsigned long long)consumed);
    return 0;
}

/* ---- API checks --------------------------------------------------------------------------- */
static void ok(const char *what) { printf("ok %s\n", what); }

static int api(void) {
    char buf[128];
    /* alignment for every power of two, through each entry point */
    for (int k = 0; k <= 23; k++) {
        size_t a = (size_t)1 << k;
        size_t sizes[] = {1, 24, a, a + 1, 3 * a + 5};
        for (int j = 0; j < 5; j++) {
            size_t n = sizes[j];
            if (n > (64u << 20)) continue;
            void *p = NULL;
            if (a >= sizeof(void *)) {
                if (posix_memalign(&p, a, n) != 0) fail("posix_memalign", a, n);
                if ((uintptr_t)p % a) fail("posix_memalign align", a, n);
                memset(p, 0xab, n);
                if (malloc_usable_size(p) < n) fail("usable pm", a, n);
                free(p);
            }
            p = aligned_alloc(a, n);
            if (!p || (uintptr_t)p % a) fail("aligned_alloc", a, n);
            memset(p, 0xcd, n);
            p = realloc(p, n + 100); /* realloc of an aligned pointer */
            if (!p) fail("realloc aligned", a, n);
            free(p);
            p = memalign(a, n);
            if (!p || (uintptr_t)p % a) fail("memalign", a, n);
            free(p);
        }
    }
    ok("alignment 2^0..2^23 via posix_memalign aligned_alloc memalign");
    void *p = NULL;
    if (posix_memalign(&p, 3 * sizeof(void *), 8) != EINVAL) fail("posix_memalign EINVAL", 0, 0);
    if (posix_memalign(&p, 4, 8) != EINVAL) fail("posix_memalign EINVAL 4", 0, 0);
    ok("posix_memalign EINVAL");
    p = valloc(100);
    if (!p || (uintptr_t)p % 4096) fail("valloc", 0, 0);
    free(p);
    p = pvalloc(5000);
    if (!p || (uintptr_t)p % 4096 || malloc_usable_size(p) < 8192) fail("pvalloc", 0, 0);
    free(p);
    ok("valloc pvalloc");
    errno = 0;
    volatile size_t big = (size_t)1 << 33, half = SIZE_MAX / 2; /* opaque: no warnings */
    if (calloc(big, big) != NULL || errno != ENOMEM)
        fail("calloc overflow", errno, 0);
    ok("calloc overflow ENOMEM");
    errno = 0;
    if (reallocarray(NULL, half, 3) != NULL || errno != ENOMEM)
        fail("reallocarray overflow", errno, 0);
    ok("reallocarray overflow ENOMEM");
    errno = 0;
    if (malloc(big * big - 4096 - 1) != NULL || errno != ENOMEM) fail("malloc huge ENOMEM", errno, 0);
    ok("malloc(2^66 - 4097 mod 2^64) ENOMEM");
    for (size_t n = 1; n <= (12u << 20); n = n * 3 / 2 + 1) {
        unsigned char *c = calloc(1, n);
        if (!c) fail("calloc", n, 0);
        for (size_t i = 0; i < n; i += 61)
            if (c[i]) fail("calloc zero", n, i);
        memset(c, 0x5a, n);
        free(c);
        c = calloc(n, 1); /* reused memory must be zeroed again */
        for (size_t i = 0; i < n; i += 61)
            if (c[i]) fail("calloc zero again", n, i);
        free(c);
    }
    ok("calloc zeroes 1 B .. 12 MiB");
    /* realloc growth through every class and past the mmap boundary, then back */
    unsigned char *r = NULL;
    size_t n = 0;
    for (size_t m = 1; m <= (20u << 20); m = m * 2 + 3) {
        r = realloc(r, m);
        if (!r) fail("realloc grow", m, 0);
        for (size_t i = n; i < m; i++) r[i] = (unsigned char)(i * 7);
        for (size_t i = 0; i < m; i += 97)
            if (r[i] != (unsigned char)(i * 7)) fail("realloc grow content", m, i);
        if (malloc_usable_size(r) < m) fail("usable grow", m, 0);
        n = m;
    }
    for (size_t m = n; m > 0; m /= 3) {
        r = realloc(r, m);
        if (!r) fail("realloc shrink", m, 0);
        for (size_t i = 0; i < m; i += 89)
            if (r[i] != (unsigned char)(i * 7)) fail("realloc shrink content", m, i);
    }
    free(r);
    ok("realloc keeps content 1 B .. 20 MiB and back");
    errno = 0;
    void *z1 = malloc(0), *z2 = malloc(0);
    if (!z1 || !z2 || z1 == z2) fail("malloc(0)", 0, 0);
    free(z1);
    free(z2);
    free(NULL);
    ok("malloc(0) unique, free(NULL)");
    if (malloc_usable_size(NULL) != 0) fail("usable NULL", 0, 0);
    for (size_t m = 1; m < 70000; m = m * 5 / 4 + 1) {
        void *x = malloc(m);
        if (!x || malloc_usable_size(x) < m) fail("usable", m, 0);
        if (m > 8 && (uintptr_t)x % 16) fail("16-byte alignment", m, (uintptr_t)x % 16);
        free(x);
    }
    ok("malloc_usable_size >= size; 16-byte alignment above 8 bytes");
    snprintf(buf, sizeof buf, "%s", "strdup through libc");
    char *d = strdup(buf);
    if (!d || strcmp(d, buf)) fail("strdup", 0, 0);
    free(d);
    ok("strdup/free");
    return 0;
}

/* forkloop: two threads allocate and free without pause while the main thread forks N
 * children that allocate; a child stuck on a lock copied mid-operation is killed by alarm(). */
static volatile int stop_churn;
static void *churn(void *a) {
    uint64_t s = (uint64_t)(uintptr_t)a;
    void *keep[256] = {0};
    while (!stop_churn) {
        unsigned k = splitmix(&s) % 256;
        free(keep[k]);
        keep[k] = malloc(16 + splitmix(&s) % 20000);
    }
    for (int i = 0; i < 256; i++) free(keep[i]);
    return NULL;
}

static int forkloop(int n) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    int hung = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(5);
            _exit(child_work());
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) hung++;
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("forkloop child", (unsigned long)st, 0);
    }
    stop_churn = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    printf("forkloop forks=%d hung=%d\n", n, hung);
    return hung != 0;
}

int main(int argc, char **argv) {
    pthread_mutex_init(&q.m, NULL);
    pthread_cond_init(&q.not_empty, NULL);
    pthread_cond_init(&q.not_full, NULL);
    if (argc >= 2 && strcmp(argv[1], "api") == 0) return api();
    if (argc >= 2 && strcmp(argv[1], "forkloop") == 0) return forkloop(argc > 2 ? atoi(argv[2]) : 200);
    if (argc >= 2 && strcmp(argv[1], "badfree") == 0) {
        static char not_heap[64];
        char *volatile p = not_heap + 16;
        free(p); /* must abort */
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "stress") == 0) {
        int rounds = argc > 2 ? atoi(argv[2]) : 4;
        int np = argc > 3 ? atoi(argv[3]) : 4;
        int nc = argc > 4 ? atoi(argv[4]) : 4;
        long per = argc > 5 ? atol(argv[5]) : 20000;
        if (np < 1 || np > 64 || nc < 1 || nc > 64) fail("thread counts", np, nc);
        return stress(rounds, np, nc, per);
    }
    fprintf(stderr, "usage: %s api | stress [rounds producers consumers per_producer]\n", argv[0]);
    return 2;
}
