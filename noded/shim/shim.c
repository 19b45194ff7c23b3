/*
 * kubelab-shim: the parent of one container (conmon's role, much smaller).
 *
 * usage: kubelab-shim EXIT_FILE LOG_FILE -- runc ... create ... ID
 *
 * 1. The first process forks; it waits for the second to report whether `runc create`
 *    succeeded (one status byte on a sync pipe) and exits with runc's exit code, so noded can
 *    simply wait for it. The second process is a session leader and a child subreaper.
 * 2. It runs `runc create` with stdout/stderr on two pipes it owns. runc hands those pipes to
 *    the container; runc exits, and the container's init is re-parented to us (subreaper).
 * 3. Every line from the pipes is written to LOG_FILE in the CRI log format
 *    "<RFC3339Nano> stdout|stderr F|P <text>\n" (P = partial: a chunk with no newline yet).
 * 4. When the container's init exits, its status is written to EXIT_FILE (atomically:
 *    "<code> <signal> <finishedAt RFC3339Nano>\n"); the shim drains the pipes and exits.
 * noded restarting never disturbs the shim or the container: neither is noded's child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384

static int log_fd = -1;
static int chld_pipe[2] = {-1, -1};

/* SIGCHLD wakes the poll loop at once (self-pipe), so the exit is recorded without delay. */
static void on_chld(int sig) {
  (void)sig;
  int saved = errno;
  if (write(chld_pipe[1], "x", 1) < 0) {
  }
  errno = saved;
}

static void stamp(char *out, size_t n) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, n, "%s.%09ldZ", base, ts.tv_nsec);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void emit(const char *stream, char tag, const char *p, size_t n) {
  char ts[64], head[96];
  stamp(ts, sizeof ts);
  int h = snprintf(head, sizeof head, "%s %s %c ", ts, stream, tag);
  /* One write per line keeps lines whole for concurrent readers (O_APPEND). */
  char *line = malloc((size_t)h + n + 1);
  if (!line) return;
  memcpy(line, head, (size_t)h);
  memcpy(line + h, p, n);
  line[h + n] = '\n';
  write_all(log_fd, line, (size_t)h + n + 1);
  free(line);
}

struct stream {
  int fd;
  const char *name;
  char buf[BUF];
  size_t len;
};

/* Read what is there; emit complete lines as F, a full buffer without newline as P. */
static int pump(struct stream *s) {
  ssize_t r = read(s->fd, s->buf + s->len, BUF - s->len);
  if (r < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
  if (r == 0) {
    if (s->len) emit(s->name, 'P', s->buf, s->len);
    s->len = 0;
    return -1;
  }
  s->len += (size_t)r;
  size_t start = 0;
  for (size_t i = 0; i < s->len; i++) {
    if (s->buf[i] == '\n') {
      emit(s->name, 'F', s->buf + start, i - start);
      start = i + 1;
    }
  }
  memmove(s->buf, s->buf + start, s->len - start);
  s->len -= start;
  if (s->len == BUF) {
    emit(s->name, 'P', s->buf, s->len);
    s->len = 0;
  }
  return 0;
}

static void write_exit(const char *path, int status) {
  int code = 0, sig = 0;
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    sig = WTERMSIG(status);
    code = 128 + sig;
  }
  char ts[64], tmp[4096], line[160];
  stamp(ts, sizeof ts);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  int n = snprintf(line, sizeof line, "%d %d %s\n", code, sig, ts);
  write_all(fd, line, (size_t)n);
  fsync(fd);
  close(fd);
  rename(tmp, path);
}

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: kubelab-shim EXIT_FILE LOG_FILE -- runc ... create ... ID\n");
    return 2;
  }
  const char *exit_file = argv[1];
  const char *log_file = argv[2];
  char **cmd = argv + 4;

  int sync[2];
  if (pipe2(sync, O_CLOEXEC) < 0) return 1;
  pid_t daemon = fork();
  if (daemon < 0) return 1;
  if (daemon > 0) {
    /* Step 1: the first process only relays runc create's result. */
    close(sync[1]);
    unsigned char rc = 1;
    if (read(sync[0], &rc, 1) != 1) rc = 1;
    waitpid(daemon, NULL, WNOHANG);
    return rc;
  }
  close(sync[0]);
  setsid();
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);

  /* Let go of the caller's stdio: whoever started us may be waiting for its pipes to close. */
  int devnull = open("/dev/null", O_RDWR);
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(devnull, 2);
  log_fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

  /* "<exit>.lock" is flock()ed for as long as we live: noded tells "exit not recorded yet" (shim
   * alive) from "never will be" (shim gone, e.g. after a reboot) by trying the lock. */
  char lock_path[4096];
  snprintf(lock_path, sizeof lock_path, "%s.lock", exit_file);
  int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd >= 0) flock(lock_fd, LOCK_EX);

  if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  if (log_fd < 0) log_fd = devnull;

  /* Step 2: runc create with our pipes as its (and so the container's) stdout/stderr. */
  int outp[2], errp[2];
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) return 1;
  pid_t runc = fork();
  if (runc == 0) {
    dup2(devnull, 0);
    dup2(outp[1], 1);
    dup2(errp[1], 2);
    execvp(cmd[0], cmd);
    _exit(127);
  }
  close(outp[1]);
  close(errp[1]);
  if (devnull > 2) close(devnull);
  int st;
  while (waitpid(runc, &st, 0) < 0 && errno == EINTR) {
  }
  unsigned char rc = WIFEXITED(st) ? (unsigned char)WEXITSTATUS(st) : 1;
  if (write(sync[1], &rc, 1) < 0) {
  }
  close(sync[1]);

  /* Step 3/4: relay output; reap; record init's exit. The container init is the only child
   * left that matters (runc init re-parented here); others are reaped as they come. */
  struct stream s[2] = {{outp[0], "stdout", {0}, 0}, {errp[0], "stderr", {0}, 0}};
  int open_streams = 2, exited = rc != 0;
  if (rc != 0) {
    /* runc create failed: its own error text is in the pipes; log it and stop. */
    while (open_streams > 0) {
      for (int i = 0; i < 2; i++)
        if (s[i].fd >= 0 && pump(&s[i]) < 0) {
          close(s[i].fd);
          s[i].fd = -1;
          open_streams--;
        }
    }
    return 0;
  }
  while (open_streams > 0 || !exited) {
    struct pollfd p[3];
    for (int i = 0; i < 2; i++) {
      p[i].fd = s[i].fd;
      p[i].events = POLLIN;
      p[i].revents = 0;
    }
    p[2].fd = chld_pipe[0];
    p[2].events = POLLIN;
    p[2].revents = 0;
    int n = poll(p, 3, 1000);
    if (p[2].revents & POLLIN) {
      char drain[64];
      while (read(chld_pipe[0], drain, sizeof drain) > 0) {
      }
    }
    if (n > 0) {
      for (int i = 0; i < 2; i++) {
        if (s[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          if (pump(&s[i]) < 0) {
            close(s[i].fd);
            s[i].fd = -1;
            open_streams--;
          }
        }
      }
    }
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
      /* The only children we can have are the container's init (re-parented) and orphans. */
      if (!exited) {
        write_exit(exit_file, st);
        exited = 1;
      }
    }
    if (pid < 0 && errno == ECHILD && !exited) {
      /* Nothing left to wait for (init was never ours): record an unknown exit. */
      write_exit(exit_file, 255 << 8);
      exited = 1;
    }
  }
  return 0;
}
