/*
 * kubelab CNI thin client, native build (design (c) in netplugin/README.md).
 *
 * The same protocol as netplugin/thin.py, without an interpreter start (~1 ms instead of ~8 ms):
 * find the CNI server of this network namespace at /run/kubelab/cni/<netns inode>.sock, send
 *   "KLCNI1\n" <plugin> "\n" <u32 big-endian env length> <env: K=V joined by NUL> <stdin>
 * shut down the write side, and relay the answer (<1 byte exit status><stdout bytes>).
 *
 * When no server answers the connect, nothing has been read from stdin yet, so the client
 * execs the Python launcher (our own path + ".py", written beside it by netplugin/install.py), which
 * runs the plugin in-process: the server is an accelerator, never a dependency.
 *
 * Built by netplugin/install.py: cc -O2 -DPLUGIN='"kubelab-bridge"' -o kubelab-bridge thinclient.c
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef PLUGIN
#define PLUGIN "kubelab-bridge"
#endif

extern char **environ;

static int write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int wanted(const char *kv) {
    return strncmp(kv, "CNI_", 4) == 0 || strncmp(kv, "KUBELAB_", 8) == 0 || strncmp(kv, "PATH=", 5) == 0;
}

static void fallback(char **argv) {
    /* The Python launcher next to us runs the plugin in-process (design (a)). */
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 4); /* argv[0] may be a bare name */
    if (n <= 0) n = (ssize_t)snprintf(path, sizeof path - 4, "%s", argv[0]);
    memcpy(path + n, ".py", 4);
    execv(path, argv);
    fprintf(stderr, "kubelab thin client: exec %s: %s\n", path, strerror(errno));
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 5, \"msg\": \"cannot run the plugin: %s missing\"}", path);
    exit(1);
}

int main(int argc, char **argv) {
    (void)argc;
    if (getenv("KUBELAB_CNI_NO_SERVER") && strcmp(getenv("KUBELAB_CNI_NO_SERVER"), "1") == 0) fallback(argv);
    struct stat st;
    if (stat("/proc/self/ns/net", &st) != 0) fallback(argv);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/run/kubelab/cni/%lu.sock", (unsigned long)st.st_ino);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (s >= 0) close(s);
        fallback(argv);
    }
    /* header + environment */
    size_t envlen = 0;
    for (char **e = environ; *e; e++)
        if (wanted(*e)) envlen += strlen(*e) + 1;
    char *buf = malloc(64 + envlen);
    if (!buf) return 1;
    size_t n = (size_t)snprintf(buf, 64, "KLCNI1\n%s\n", PLUGIN);
    size_t body = envlen ? envlen - 1 : 0; /* NUL-separated, no trailing NUL */
    buf[n++] = (char)(body >> 24);
    buf[n++] = (char)(body >> 16);
    buf[n++] = (char)(body >> 8);
    buf[n++] = (char)body;
    int first = 1;
    for (char **e = environ; *e; e++) {
        if (!wanted(*e)) continue;
        if (!first) buf[n++] = '\0';
        size_t l = strlen(*e);
        memcpy(buf + n, *e, l);
        n += l;
        first = 0;
    }
    if (write_all(s, buf, n) != 0) goto broken;
    free(buf);
    /* stdin */
    char io[65536];
    for (;;) {
        ssize_t r = read(0, io, sizeof io);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (write_all(s, io, (size_t)r) != 0) goto broken;
    }
    shutdown(s, SHUT_WR);
    /* answer: status byte, then stdout */
    int status = -1;
    for (;;) {
        ssize_t r = read(s, io, sizeof io);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        size_t off = 0;
        if (status < 0) {
            status = (unsigned char)io[0];
            off = 1;
        }
        if (write_all(1, io + off, (size_t)r - off) != 0) return 1;
    }
    close(s);
    if (status < 0) goto broken;
    return status;
broken:
    /* The request may have been (partly) served: never re-run it; ask the runtime to retry. */
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 11, \"msg\": \"CNI server %s gave no answer; try again\"}",
           addr.sun_path);
    return 1;
}
