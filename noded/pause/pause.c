/*
 * kubelab pause: the process that holds a pod's namespaces.
 *
 * Without arguments it sleeps until a signal arrives (the pod sandbox). With arguments it is a
 * minimal init: it starts argv[1..] as its child and stays PID 1 (the "hello" image uses it to
 * run busybox httpd, which as PID 1 would ignore SIGTERM).
 *
 * Invariants:
 *  - SIGTERM and SIGINT end it at once (exit 0): the kernel then kills every other process of
 *    the PID namespace, so a pod's deletion never waits out a grace period because of us.
 *  - It reaps every zombie (it is PID 1 of the container, the orphans' reaper); when its own
 *    child exits it exits with the child's status (128+signal for a signalled child).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) { (void)sig; }

int main(int argc, char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  /* Block the signals we wait for and only take them inside sigsuspend(), so a signal that
   * arrives between the checks below and the wait is never lost. */
  sigset_t block, orig;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGCHLD);
  sigprocmask(SIG_BLOCK, &block, &orig);

  pid_t child = -1;
  if (argc > 1) {
    child = fork();
    if (child < 0) {
      perror("pause: fork");
      return 1;
    }
    if (child == 0) {
      /* The child gets default signal handling back (execvp resets handlers) and an
       * unblocked mask. */
      sigprocmask(SIG_SETMASK, &orig, NULL);
      execvp(argv[1], argv + 1);
      fprintf(stderr, "pause: exec %s: %s\n", argv[1], strerror(errno));
      _exit(127);
    }
  }

  for (;;) {
    if (stop_signal) {
      if (child > 0) kill(child, stop_signal);
      return 0;
    }
    int status;
    pid_t pid;
    /* Reap every exited child; only our own child decides our exit. */
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == child) {
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      }
    }
    if (!stop_signal) sigsuspend(&orig);
  }
}
