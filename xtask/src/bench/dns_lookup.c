/*
 * dns-lookup NAME COUNT [PORT]: COUNT lookups of NAME (type A), one after another, from inside
 * a container, to the first nameserver of its /etc/resolv.conf, as a stub resolver
 * asks: one UDP query, wait for its answer. Prints each lookup's time in nanoseconds,
 * one a line, and fails (exit 1) on a lost, mismatched or empty answer, so a number is
 * only ever the time of a real answer. Built static (gcc -static) by the bench's `dns`
 * entry: the container's root filesystem is busybox alone.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int first_nameserver(struct sockaddr_in *out) {
    FILE *f = fopen("/etc/resolv.conf", "r");
    char line[256], addr[64];
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "nameserver %63s", addr) == 1 &&
            inet_pton(AF_INET, addr, &out->sin_addr) == 1) {
            fclose(f);
            out->sin_family = AF_INET;
            out->sin_port = htons(53);
            return 0;
        }
    }
    fclose(f);
    return -1;
}

/* The question section for NAME, type A, class IN; its length, or -1. */
static int question(const char *name, unsigned char *q, size_t cap) {
    size_t n = 0;
    const char *label = name;
    while (*label) {
        const char *dot = strchr(label, '.');
        size_t len = dot ? (size_t)(dot - label) : strlen(label);
        if (len == 0 || len > 63 || n + len + 1 >= cap)
            return -1;
        q[n++] = (unsigned char)len;
        memcpy(q + n, label, len);
        n += len;
        label += len;
        if (*label == '.')
            label++;
    }
    if (n + 5 > cap)
        return -1;
    q[n++] = 0;
    q[n++] = 0, q[n++] = 1; /* A */
    q[n++] = 0, q[n++] = 1; /* IN */
    return (int)n;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    struct sockaddr_in server;
    unsigned char packet[512], reply[1500];
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: dns-lookup NAME COUNT [PORT]\n");
        return 2;
    }
    int count = atoi(argv[2]);
    if (first_nameserver(&server) != 0) {
        fprintf(stderr, "dns-lookup: no IPv4 nameserver in /etc/resolv.conf\n");
        return 1;
    }
    /* Another port of the same server: a second resolver on the gateway (the bench). */
    if (argc == 4)
        server.sin_port = htons((unsigned short)atoi(argv[3]));
    int q = question(argv[1], packet + 12, sizeof packet - 12);
    if (q < 0) {
        fprintf(stderr, "dns-lookup: bad name %s\n", argv[1]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&server, sizeof server) != 0) {
        perror("dns-lookup: socket");
        return 1;
    }
    memset(packet, 0, 12);
    packet[2] = 0x01; /* RD */
    packet[5] = 1;    /* one question */
    for (int i = 0; i < count; i++) {
        unsigned short id = (unsigned short)(i * 7919 + 1);
        packet[0] = id >> 8, packet[1] = id & 0xff;
        long long start = now_ns();
        if (send(s, packet, 12 + q, 0) != 12 + q) {
            perror("dns-lookup: send");
            return 1;
        }
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1) {
            fprintf(stderr, "dns-lookup: no answer to lookup %d of %s\n", i, argv[1]);
            return 1;
        }
        ssize_t n = recv(s, reply, sizeof reply, 0);
        long long took = now_ns() - start;
        if (n < 12 || reply[0] != packet[0] || reply[1] != packet[1] || !(reply[2] & 0x80) ||
            (reply[3] & 0x0f) != 0 || (reply[6] << 8 | reply[7]) == 0) {
            fprintf(stderr, "dns-lookup: lookup %d of %s: no address in the answer\n", i,
                    argv[1]);
            return 1;
        }
        printf("%lld\n", took);
    }
    return 0;
}
