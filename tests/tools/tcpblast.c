/* A TCP bulk transfer whose every byte is checked, for the test guests (linked
 * statically into scripts/vm.sh's initramfs, where only busybox lives).
 *
 *   tcpblast recv PORT SEED          accept one connection, read to EOF, compare every
 *                                    byte with the stream SEED makes; prints
 *                                    "PMDS-BLAST bytes=N secs=S mbps=R bad=B first_bad=O"
 *                                    and exits 0 only if bytes came and none was wrong
 *   tcpblast send HOST PORT MB SEED  connect (retrying up to 30 s while refused), send
 *                                    MB MiB of that stream, and return once the
 *                                    receiver has closed (so it got everything)
 *
 * The stream repeats a pattern of a prime length (1048573 bytes) made by xorshift64 from
 * SEED, so that a segment that is lost, duplicated, reordered or changed shows as a
 * mismatch at its offset; the pattern is made before the clock starts, so the guest
 * spends the transfer in the network stack and two copies, not in a generator or a
 * file system. The receiver's clock runs from the first byte to EOF.
 *
 *   gcc -O2 -static tests/tools/tcpblast.c -o tcpblast */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PERIOD 1048573u
#define CHUNK (256u * 1024u)

static unsigned char *pattern(uint64_t seed) {
    /* Twice the period plus a chunk: any offset's next CHUNK bytes are contiguous. */
    unsigned char *p = malloc(2 * PERIOD + CHUNK);
    if (!p) { perror("tcpblast: malloc"); exit(2); }
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (uint32_t i = 0; i < PERIOD; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (unsigned char)(x >> 24);
    }
    memcpy(p + PERIOD, p, PERIOD);
    memcpy(p + 2 * PERIOD, p, CHUNK);
    return p;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int recv_side(int port, uint64_t seed) {
    unsigned char *p = pattern(seed), *buf = malloc(CHUNK);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (!buf || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1)) { perror("tcpblast: listen"); return 2; }
    int c = accept(l, 0, 0);
    if (c < 0) { perror("tcpblast: accept"); return 2; }
    uint64_t got = 0, bad = 0, first_bad = 0;
    double t0 = 0;
    for (;;) {
        ssize_t n = read(c, buf, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("tcpblast: read"); return 2; }
        if (n == 0) break;
        if (!got) t0 = now();
        const unsigned char *want = p + got % PERIOD;
        if (memcmp(buf, want, n)) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != want[i]) { if (!bad) first_bad = got + i; bad++; }
        }
        got += n;
    }
    double secs = got ? now() - t0 : 0;
    close(c);   /* our FIN: the sender waits for it before it lets its guest stop */
    printf("PMDS-BLAST bytes=%llu secs=%.3f mbps=%.1f bad=%llu first_bad=%llu\n", (unsigned long long)got, secs,
           secs > 0 ? got * 8 / secs / 1e6 : 0.0, (unsigned long long)bad, (unsigned long long)first_bad);
    return got > 0 && bad == 0 ? 0 : 1;
}

static int send_side(const char *host, int port, uint64_t mb, uint64_t seed) {
    unsigned char *p = pattern(seed);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "tcpblast: bad address %s\n", host); return 2; }
    int s = -1;
    for (int i = 0; i < 300; i++) {
        s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) break;
        close(s); s = -1;
        usleep(100000);
    }
    if (s < 0) { perror("tcpblast: connect"); return 2; }
    uint64_t total = mb << 20, sent = 0;
    while (sent < total) {
        size_t n = total - sent < CHUNK ? total - sent : CHUNK;
        ssize_t w = write(s, p + sent % PERIOD, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { perror("tcpblast: write"); return 2; }
        sent += w;
    }
    /* Done only when the receiver has it all: a guest powers off when this returns, and
     * close() would leave the socket's unsent tail to a kernel about to stop. So: our
     * FIN, then wait for the receiver's close. */
    if (shutdown(s, SHUT_WR)) { perror("tcpblast: shutdown"); return 2; }
    /* The receiver's verdict is its own report; this wait only keeps the guest up, so
     * a FIN that never comes ends it after 20 s, not as a failure. */
    struct timeval tv = {.tv_sec = 20};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[64];
    for (;;) {
        ssize_t n = read(s, b, sizeof b);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) { fprintf(stderr, "tcpblast: no close from the receiver in 20 s\n"); break; }
        if (n < 0) { perror("tcpblast: read"); return 2; }
        if (n == 0) break;
    }
    return close(s) ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "recv")) return recv_side(atoi(argv[2]), strtoull(argv[3], 0, 10));
    if (argc == 6 && !strcmp(argv[1], "send"))
        return send_side(argv[2], atoi(argv[3]), strtoull(argv[4], 0, 10), strtoull(argv[5], 0, 10));
    fprintf(stderr, "usage: tcpblast recv PORT SEED | tcpblast send HOST PORT MB SEED\n");
    return 2;
}
