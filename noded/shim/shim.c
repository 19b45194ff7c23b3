/*
 * kubelab-shim: the parent of one container (conmon's role, much smaller).
 *
 * usage: kubelab-shim [-a DIR] [-t] [-i] [-o] EXIT_FILE LOG_FILE -- runc ... create ... ID
 *        kubelab-shim -x PID_FILE -- runc ... exec --detach ... ID ARGV...
 *
 * Container mode (the first form):
 * 1. The first process forks; it waits for the second to report whether `runc create`
 *    succeeded (one status byte on a sync pipe) and exits with runc's exit code, so noded can
 *    simply wait for it. The second process is a session leader and a child subreaper.
 * 2. It runs `runc create` with stdout/stderr on two pipes it owns. runc hands those pipes to
 *    the container; runc exits, and the container's init is re-parented to us (subreaper).
 *    -i (PodSpec `stdin: true`): the container's stdin is a pipe whose write end we keep.
 *    -t (`tty: true`): the container gets a terminal instead of pipes. We listen on DIR/console
 *    (runc's --console-socket, given relative: runc runs with DIR as its working directory) and
 *    receive the pty master over SCM_RIGHTS; the master is then both stdin and stdout.
 * 3. Every line of output is written to LOG_FILE in the CRI log format
 *    "<RFC3339Nano> stdout|stderr F|P <text>\n" (P = partial: a chunk with no newline yet).
 * 4. -a DIR: attach. We listen on DIR/attach (mode 0600). A client (noded's kubelet API) sends
 *    one request byte (bit 0: wants stdin, bit 1: wants the terminal for resizing) and gets one
 *    reply byte (bit 0: the container has a tty, bit 1: stdin granted) carrying, when granted,
 *    the stdin end (pipe write end or pty master) as SCM_RIGHTS: the client writes stdin and
 *    resizes (TIOCSWINSZ) on it itself. From then on every chunk of output is sent to the
 *    client raw, framed as [stream: 1 stdout | 2 stderr][u32 big-endian length][bytes]; when
 *    the container has exited and its output is drained the connection is closed. A client
 *    that disconnects has detached; with -o (`stdinOnce`) the first detach of a client that
 *    had stdin closes the container's stdin (a pipe gets EOF; a terminal grants no stdin any
 *    more). Client sockets are non-blocking: a client that cannot keep up is disconnected
 *    rather than stalling the container's output.
 * 5. When the container's init exits, its status is written to EXIT_FILE (atomically:
 *    "<code> <signal> <finishedAt RFC3339Nano>\n"); the shim drains the output and exits.
 * noded restarting never disturbs the shim or the container: neither is noded's child, and the
 * terminal, the stdin pipe and the attach socket all belong to the shim, so a restarted noded
 * simply connects to DIR/attach again.
 *
 * Exec mode (-x): `runc exec --detach --tty --console-socket S` returns as soon as the process
 * started, so something must stay its parent to learn its exit status: we become a subreaper,
 * run runc, read the process's pid from PID_FILE and wait for it (re-parented to us), then exit
 * with its code (128+signal if killed). If runc itself fails we exit with runc's code. The
 * caller (noded) receives the terminal on S itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384
#define MAX_CLIENTS 16

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

/* ---- attach clients ------------------------------------------------------------------------ */

struct client {
  int fd;
  int had_stdin;
};
static struct client clients[MAX_CLIENTS];
static int n_clients = 0;
static int stdin_fd = -1;    /* pipe write end (-i) or pty master (-t); -1 once closed/none */
static int tty_fd = -1;      /* pty master (-t) */
static int stdin_once = 0;
static int stdin_closed = 0; /* -o and the first stdin client detached */

static void drop_client(int i) {
  close(clients[i].fd);
  if (clients[i].had_stdin && stdin_once && !stdin_closed) {
    stdin_closed = 1;
    /* A pipe gets EOF now; a terminal's master stays open (it is the container's output). */
    if (stdin_fd >= 0 && stdin_fd != tty_fd) close(stdin_fd);
    stdin_fd = -1;
  }
  clients[i] = clients[--n_clients];
}

static void broadcast(unsigned char stream, const char *p, size_t n) {
  unsigned char head[5] = {stream, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                           (unsigned char)n};
  for (int i = 0; i < n_clients;) {
    struct iovec iov[2] = {{head, 5}, {(void *)p, n}};
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    ssize_t w = sendmsg(clients[i].fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w != (ssize_t)(n + 5)) {
      drop_client(i); /* gone, or too slow: a half-sent frame cannot be resumed */
      continue;
    }
    i++;
  }
}

static void accept_client(int listen_fd) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  if (n_clients >= MAX_CLIENTS) {
    close(fd);
    return;
  }
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  unsigned char req = 0;
  if (read(fd, &req, 1) != 1) {
    close(fd);
    return;
  }
  int give_stdin = (req & 1) && stdin_fd >= 0 && !stdin_closed;
  int give_tty = (req & 2) && tty_fd >= 0;
  int pass = give_stdin ? stdin_fd : give_tty ? tty_fd : -1;
  unsigned char rep = (unsigned char)((tty_fd >= 0 ? 1 : 0) | (give_stdin ? 2 : 0));
  struct iovec iov = {&rep, 1};
  struct msghdr m = {0};
  char cbuf[CMSG_SPACE(sizeof(int))];
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (pass >= 0) {
    memset(cbuf, 0, sizeof cbuf);
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass, sizeof(int));
  }
  if (sendmsg(fd, &m, MSG_NOSIGNAL) != 1) {
    close(fd);
    return;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  clients[n_clients].fd = fd;
  clients[n_clients].had_stdin = give_stdin;
  n_clients++;
}

/* A listening unix socket at NAME (relative to the working directory: the path stays short). */
static int listen_at(const char *name, int backlog) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", name);
  unlink(name);
  mode_t old = umask(077);
  int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, backlog) == 0;
  umask(old);
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The pty master runc sends on the console socket (already queued if runc create succeeded). */
static int recv_console(int listen_fd) {
  int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) return -1;
  char byte[64];
  struct iovec iov = {byte, sizeof byte};
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = cbuf;
  m.msg_controllen = sizeof cbuf;
  int fd = -1;
  if (recvmsg(conn, &m, MSG_CMSG_CLOEXEC) >= 0) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof(int));
  }
  close(conn);
  return fd;
}

/* ---- output streams ------------------------------------------------------------------------ */

struct stream {
  int fd;
  const char *name;
  unsigned char no; /* 1 stdout, 2 stderr */
  char buf[BUF];
  size_t len;
};

/* Read what is there; send it raw to attached clients; emit complete lines as F, a full buffer
 * without newline as P. A terminal's master reads EIO once no process holds the slave: EOF. */
static int pump(struct stream *s) {
  ssize_t r = read(s->fd, s->buf + s->len, BUF - s->len);
  if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
  if (r <= 0) {
    if (s->len) emit(s->name, 'P', s->buf, s->len);
    s->len = 0;
    return -1;
  }
  if (n_clients) broadcast(s->no, s->buf + s->len, (size_t)r);
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

static int exit_code(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static void write_exit(const char *path, int status) {
  int code = exit_code(status), sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
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

/* ---- exec mode ----------------------------------------------------------------------------- */

static int exec_mode(const char *pid_file, char **cmd) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t runc = fork();
  if (runc < 0) return 255;
  if (runc == 0) {
    execvp(cmd[0], cmd);
    _exit(127);
  }
  int st;
  while (waitpid(runc, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return exit_code(st);
  char buf[32] = {0};
  int fd = open(pid_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 255;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  pid_t pid = n > 0 ? (pid_t)atoi(buf) : 0;
  if (pid <= 0) return 255;
  for (;;) {
    pid_t w = waitpid(-1, &st, 0);
    if (w < 0) {
      if (errno == EINTR) continue;
      return 255; /* not re-parented to us: the status is lost */
    }
    if (w == pid) return exit_code(st);
  }
}

/* ---- container mode ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  const char *attach_dir = NULL, *exec_pid_file = NULL;
  int want_tty = 0, want_stdin = 0, opt;
  while ((opt = getopt(argc, argv, "+a:tiox:")) != -1) {
    switch (opt) {
      case 'a': attach_dir = optarg; break;
      case 't': want_tty = 1; break;
      case 'i': want_stdin = 1; break;
      case 'o': stdin_once = 1; break;
      case 'x': exec_pid_file = optarg; break;
      default: return 2;
    }
  }
  if (exec_pid_file) {
    if (optind >= argc) return 2;
    return exec_mode(exec_pid_file, argv + optind);
  }
  if (argc - optind < 4 || strcmp(argv[optind + 2], "--") != 0 || (want_tty && !attach_dir)) {
    fprintf(stderr, "usage: kubelab-shim [-a DIR] [-t] [-i] [-o] EXIT_FILE LOG_FILE -- runc ... create ... ID\n"
                    "       kubelab-shim -x PID_FILE -- runc ... exec --detach ... ID ARGV...\n"
                    "(-t needs -a: the console socket lives in DIR)\n");
    return 2;
  }
  const char *exit_file = argv[optind];
  const char *log_file = argv[optind + 1];
  char **cmd = argv + optind + 3;

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

  /* Sockets live in DIR under short relative names (sun_path holds 108 bytes; bundle paths can
   * be longer). runc runs with DIR as its working directory, so "--console-socket console"
   * resolves there too. */
  int attach_fd = -1, console_fd = -1;
  if (attach_dir) {
    if (chdir(attach_dir) < 0) return 1;
    attach_fd = listen_at("attach", 8);
    if (want_tty && (console_fd = listen_at("console", 1)) < 0) return 1;
  }

  /* Step 2: runc create with our pipes as its (and so the container's) stdio. */
  int outp[2], errp[2], inp[2] = {-1, -1};
  if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) return 1;
  if (want_stdin && !want_tty && pipe2(inp, O_CLOEXEC) < 0) return 1;
  pid_t runc = fork();
  if (runc == 0) {
    dup2(inp[0] >= 0 ? inp[0] : devnull, 0);
    dup2(outp[1], 1);
    dup2(errp[1], 2);
    execvp(cmd[0], cmd);
    _exit(127);
  }
  close(outp[1]);
  close(errp[1]);
  if (inp[0] >= 0) close(inp[0]);
  stdin_fd = inp[1];
  if (devnull > 2) close(devnull);
  int st;
  while (waitpid(runc, &st, 0) < 0 && errno == EINTR) {
  }
  unsigned char rc = WIFEXITED(st) ? (unsigned char)WEXITSTATUS(st) : 1;
  struct stream s[3] = {{outp[0], "stdout", 1, {0}, 0}, {errp[0], "stderr", 2, {0}, 0}, {-1, "stdout", 1, {0}, 0}};
  int open_streams = 2;
  if (console_fd >= 0) {
    if (rc == 0) {
      tty_fd = recv_console(console_fd);
      if (tty_fd >= 0) {
        fcntl(tty_fd, F_SETFL, fcntl(tty_fd, F_GETFL) | O_NONBLOCK);
        s[2].fd = tty_fd;
        open_streams++;
        if (want_stdin) stdin_fd = tty_fd;
      } else {
        const char *msg = "kubelab-shim: runc sent no terminal on the console socket";
        emit("stderr", 'F', msg, strlen(msg));
      }
    }
    close(console_fd);
    unlink("console");
  }
  if (write(sync[1], &rc, 1) < 0) {
  }
  close(sync[1]);

  /* Step 3/4/5: relay output; serve attach; reap; record init's exit. The container init is the
   * only child left that matters (runc init re-parented here); others are reaped as they come. */
  int exited = rc != 0;
  if (rc != 0) {
    /* runc create failed: its own error text is in the pipes; log it and stop. */
    while (open_streams > 0) {
      for (int i = 0; i < 3; i++)
        if (s[i].fd >= 0 && pump(&s[i]) < 0) {
          close(s[i].fd);
          s[i].fd = -1;
          open_streams--;
        }
    }
    if (attach_fd >= 0) unlink("attach");
    return 0;
  }
  while (open_streams > 0 || !exited) {
    struct pollfd p[5 + MAX_CLIENTS];
    for (int i = 0; i < 3; i++) p[i] = (struct pollfd){s[i].fd, POLLIN, 0};
    p[3] = (struct pollfd){chld_pipe[0], POLLIN, 0};
    p[4] = (struct pollfd){attach_fd, POLLIN, 0};
    int nc = n_clients;
    for (int i = 0; i < nc; i++) p[5 + i] = (struct pollfd){clients[i].fd, POLLIN, 0};
    int n = poll(p, (nfds_t)(5 + nc), 1000);
    if (p[3].revents & POLLIN) {
      char drain[64];
      while (read(chld_pipe[0], drain, sizeof drain) > 0) {
      }
    }
    if (n > 0) {
      for (int i = 0; i < 3; i++) {
        if (s[i].fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          if (pump(&s[i]) < 0) {
            close(s[i].fd);
            s[i].fd = -1;
            open_streams--;
          }
        }
      }
      /* Clients send nothing after their request: readable means gone (EOF) or misbehaving. */
      for (int i = nc - 1; i >= 0; i--) {
        if (i < n_clients && clients[i].fd == p[5 + i].fd && (p[5 + i].revents & (POLLIN | POLLHUP | POLLERR))) {
          char junk[64];
          ssize_t r = read(clients[i].fd, junk, sizeof junk);
          if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) drop_client(i);
        }
      }
      if (attach_fd >= 0 && (p[4].revents & POLLIN)) accept_client(attach_fd);
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
  /* Output drained: attached clients see EOF (the container ended). */
  if (attach_fd >= 0) {
    close(attach_fd);
    unlink("attach");
  }
  while (n_clients) drop_client(n_clients - 1);
  return 0;
}
