/*
 * labguest: the workloads and the status service of the vmmigration.libvirt lab guests.
 * One static binary, several roles (argv[1]):
 *
 *   mem MIB RATE STATUS     rewrite MIB MiB per pass at RATE MiB/s (0 = as fast as it can), and
 *                           verify, word by word, the previous pass's pattern before overwriting it:
 *                           a page lost or stale after a migration shows up as bad words.
 *   disk DEV MS STATUS      append one 512-byte record every MS milliseconds to the block device DEV,
 *                           each carrying the next sequence number (O_DIRECT | O_DSYNC); on start it
 *                           finds the last valid record and continues after it, counting any gap.
 *   serve PORT DIR          answer every TCP connection on PORT with the contents of the files in DIR
 *                           (one "key=value" line each) and close it.
 *   powerwatch              power off cleanly on an ACPI power-button event (/dev/input/event*).
 *   agent IF ADDR...        a minimal QEMU guest agent on the virtio-serial port named
 *                           org.qemu.guest_agent.0: answers guest-sync, guest-ping and
 *                           guest-network-get-interfaces (interface IF with its MAC and the ADDR/LEN
 *                           given, as configured at boot), so that libvirt's agent address source works.
 *
 * Status files are rewritten atomically (write + rename) a few times a second.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REC_MAGIC 0x31434c42414c4d56ULL /* "VMLABLC1" */
#define REC_SIZE 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_status(const char *path, const char *text)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return;
    if (write(fd, text, strlen(text)) < 0) { /* status is best effort */ }
    close(fd);
    rename(tmp, path);
}

static void sleep_until(double t)
{
    double d = t - now();
    if (d > 0) {
        struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static inline uint64_t pattern(uint64_t pass, uint64_t i)
{
    return (pass * 0x9E3779B97F4A7C15ULL) ^ (i * 0xBF58476D1CE4E5B9ULL) ^ 0x5555AAAA5555AAAAULL;
}

static int cmd_mem(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: labguest mem MIB RATE STATUS\n");
        return 2;
    }
    uint64_t mib = strtoull(argv[2], NULL, 10);
    double rate = atof(argv[3]);
    const char *status = argv[4];
    uint64_t words_per_mib = (1024 * 1024) / sizeof(uint64_t);
    uint64_t n = mib * words_per_mib;
    uint64_t *buf = malloc(n * sizeof(uint64_t));
    if (!buf) {
        perror("malloc");
        return 1;
    }
    uint64_t pass = 0, bad = 0, first_bad_pass = 0;
    double t0 = now(), next_status = 0, pace = t0;
    char text[512];
    for (;;) {
        for (uint64_t m = 0; m < mib; m++) {
            uint64_t base = m * words_per_mib;
            for (uint64_t i = base; i < base + words_per_mib; i++) {
                if (pass > 0 && buf[i] != pattern(pass - 1, i)) {
                    if (!bad)
                        first_bad_pass = pass;
                    bad++;
                }
                buf[i] = pattern(pass, i);
            }
            if (rate > 0) {
                pace += 1.0 / rate;
                sleep_until(pace);
            }
            double t = now();
            if (t >= next_status) {
                snprintf(text, sizeof text,
                         "mem_mib=%llu\nmem_rate=%g\nmem_passes=%llu\nmem_bad_words=%llu\n"
                         "mem_first_bad_pass=%llu\n",
                         (unsigned long long)mib, rate, (unsigned long long)pass,
                         (unsigned long long)bad, (unsigned long long)first_bad_pass);
                write_status(status, text);
                next_status = t + 0.2;
            }
        }
        pass++;
    }
}

struct rec {
    uint64_t magic;
    uint64_t seq;
    uint64_t check;
    uint8_t pad[REC_SIZE - 24];
};

static uint64_t rec_check(uint64_t seq) { return (seq * 0xD6E8FEB86659FD93ULL) ^ REC_MAGIC; }

static int cmd_disk(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: labguest disk DEV MS STATUS\n");
        return 2;
    }
    const char *dev = argv[2];
    double interval = atof(argv[3]) / 1000.0;
    const char *status = argv[4];
    int fd = open(dev, O_RDWR | O_DIRECT | O_DSYNC);
    if (fd < 0) {
        perror(dev);
        return 1;
    }
    struct rec *r;
    if (posix_memalign((void **)&r, 4096, REC_SIZE))
        return 1;
    off_t size = lseek(fd, 0, SEEK_END);
    uint64_t nrec = size / REC_SIZE, slot = 0, last = 0, gaps = 0;
    /* Recover: walk the valid records from the start; they must count 1, 2, 3, ... */
    for (slot = 0; slot < nrec; slot++) {
        if (pread(fd, r, REC_SIZE, slot * REC_SIZE) != REC_SIZE)
            break;
        if (r->magic != REC_MAGIC || r->check != rec_check(r->seq))
            break;
        if (r->seq != last + 1)
            gaps++;
        last = r->seq;
    }
    uint64_t recovered = last, errors = 0;
    double next = now(), next_status = 0;
    char text[512];
    memset(r, 0, REC_SIZE);
    for (;;) {
        if (slot < nrec) {
            r->magic = REC_MAGIC;
            r->seq = last + 1;
            r->check = rec_check(r->seq);
            if (pwrite(fd, r, REC_SIZE, slot * REC_SIZE) == REC_SIZE) {
                last++;
                slot++;
            } else {
                errors++;
            }
        }
        double t = now();
        if (t >= next_status) {
            snprintf(text, sizeof text,
                     "disk_seq=%llu\ndisk_recovered=%llu\ndisk_gaps=%llu\ndisk_errors=%llu\n"
                     "disk_full=%d\n",
                     (unsigned long long)last, (unsigned long long)recovered,
                     (unsigned long long)gaps, (unsigned long long)errors, slot >= nrec);
            write_status(status, text);
            next_status = t + 0.2;
        }
        next += interval;
        sleep_until(next);
    }
}

static int cmd_serve(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: labguest serve PORT DIR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    int one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(atoi(argv[2]));
    a.sin6_addr = in6addr_any;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) {
        perror("serve");
        return 1;
    }
    char buf[8192];
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        size_t len = 0;
        FILE *f = fopen("/proc/uptime", "r");
        if (f) {
            double up = 0;
            if (fscanf(f, "%lf", &up) == 1)
                len += snprintf(buf + len, sizeof buf - len, "uptime=%.2f\n", up);
            fclose(f);
        }
        f = fopen("/proc/sys/kernel/random/boot_id", "r");
        if (f) {
            char id[64] = "";
            if (fgets(id, sizeof id, f))
                len += snprintf(buf + len, sizeof buf - len, "boot_id=%s", id);
            fclose(f);
        }
        DIR *d = opendir(argv[3]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp"))
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", argv[3], e->d_name);
            int fd = open(p, O_RDONLY);
            if (fd < 0)
                continue;
            ssize_t r = read(fd, buf + len, sizeof buf - len - 1);
            if (r > 0)
                len += r;
            close(fd);
        }
        if (d)
            closedir(d);
        if (write(c, buf, len) < 0) { /* client went away */ }
        close(c);
    }
}

static int cmd_powerwatch(void)
{
    struct pollfd fds[8];
    int n = 0;
    for (int i = 0; i < 8; i++) {
        char p[64];
        snprintf(p, sizeof p, "/dev/input/event%d", i);
        int fd = open(p, O_RDONLY);
        if (fd >= 0) {
            fds[n].fd = fd;
            fds[n].events = POLLIN;
            n++;
        }
    }
    for (;;) {
        if (n == 0 || poll(fds, n, -1) < 0) {
            sleep(1);
            continue;
        }
        for (int i = 0; i < n; i++) {
            struct input_event ev;
            if ((fds[i].revents & POLLIN) && read(fds[i].fd, &ev, sizeof ev) == sizeof ev &&
                ev.type == EV_KEY && ev.code == KEY_POWER) {
                sync();
                reboot(RB_POWER_OFF);
            }
        }
    }
    return 0;
}

/* The virtio-serial port whose name is NAME, as /dev/vportNpM, or -1. */
static int open_port(const char *name)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    int fd = -1;
    while (d && fd < 0 && (e = readdir(d))) {
        char p[256], got[128] = "";
        snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        if (fgets(got, sizeof got, f) && !strncmp(got, name, strlen(name))) {
            snprintf(p, sizeof p, "/dev/%s", e->d_name);
            fd = open(p, O_RDWR | O_NOCTTY);
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return fd;
}

static void reply(int fd, const char *text)
{
    if (write(fd, text, strlen(text)) < 0) { /* host side not connected */ }
}

static int cmd_agent(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: labguest agent IF [ADDR/LEN...]\n");
        return 2;
    }
    int fd;
    while ((fd = open_port("org.qemu.guest_agent.0")) < 0)
        sleep(1);
    char mac[32] = "", path[128];
    snprintf(path, sizeof path, "/sys/class/net/%s/address", argv[2]);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(mac, sizeof mac, f))
            mac[0] = 0;
        fclose(f);
        mac[strcspn(mac, "\n")] = 0;
    }
    char ifaces[2048];
    size_t n = snprintf(ifaces, sizeof ifaces, "{\"return\": [{\"name\": \"%s\", \"hardware-address\": \"%s\", "
                        "\"ip-addresses\": [", argv[2], mac);
    for (int i = 3; i < argc; i++) {
        char addr[128];
        snprintf(addr, sizeof addr, "%s", argv[i]);
        char *slash = strchr(addr, '/');
        int len = slash ? atoi(slash + 1) : 0;
        if (slash)
            *slash = 0;
        n += snprintf(ifaces + n, sizeof ifaces - n, "%s{\"ip-address-type\": \"%s\", \"ip-address\": \"%s\", "
                      "\"prefix\": %d}", i > 3 ? ", " : "", strchr(addr, ':') ? "ipv6" : "ipv4", addr, len);
    }
    snprintf(ifaces + n, sizeof ifaces - n, "]}]}\n");
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - have - 1);
        if (r <= 0) {       /* host side closed (migration, libvirtd restart): wait and read on */
            usleep(200000);
            continue;
        }
        have += r;
        buf[have] = 0;
        char *nl;
        while ((nl = strchr(buf, '\n')) || (nl = strchr(buf, '}'))) {
            char line[4096];
            size_t l = nl - buf + 1;
            memcpy(line, buf, l);
            line[l] = 0;
            memmove(buf, buf + l, have - l + 1);
            have -= l;
            if (strstr(line, "\"guest-sync")) {
                char *id = strstr(line, "\"id\"");
                char out[128];
                long long v = id ? strtoll(strchr(id, ':') + 1, NULL, 10) : 0;
                if (strstr(line, "guest-sync-delimited"))
                    reply(fd, "\xff");
                snprintf(out, sizeof out, "{\"return\": %lld}\n", v);
                reply(fd, out);
            } else if (strstr(line, "\"guest-network-get-interfaces\"")) {
                reply(fd, ifaces);
            } else if (strstr(line, "\"guest-ping\"")) {
                reply(fd, "{\"return\": {}}\n");
            } else if (strstr(line, "\"execute\"")) {
                reply(fd, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"not in the lab agent\"}}\n");
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "mem"))
        return cmd_mem(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "disk"))
        return cmd_disk(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return cmd_serve(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "powerwatch"))
        return cmd_powerwatch();
    if (argc >= 2 && !strcmp(argv[1], "agent"))
        return cmd_agent(argc, argv);
    fprintf(stderr, "usage: labguest mem|disk|serve|powerwatch|agent ...\n");
    return 2;
}
