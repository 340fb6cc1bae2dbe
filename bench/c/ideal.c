/*
 * ideal: the "ideal launcher" of the benchmarks. No init at all: it binds
 * one TCP listener, forks N children, and each child execs the app with the
 * socket on fd 3 and LISTEN_FDS=1 / LISTEN_PID=<its pid> (systemd socket
 * activation). The parent only forwards TERM/INT to the children and waits.
 * It is the floor gm2-init is measured against in the data-path benchmark:
 * whatever gm2-init costs on top of this, it costs.
 *
 *   ideal -n N -l HOST:PORT -- COMMAND [ARGS...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t kids[1024];
static int nkids;

static void forward(int sig) {
	for (int i = 0; i < nkids; i++)
		if (kids[i] > 0)
			kill(kids[i], sig);
}

int main(int argc, char **argv) {
	int n = 1, i;
	char *addr = NULL;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-l") && i + 1 < argc) addr = argv[++i];
		else if (!strcmp(argv[i], "--")) { i++; break; }
		else break;
	}
	if (!addr || i >= argc || n < 1 || n > 1024) {
		fprintf(stderr, "usage: ideal -n N -l HOST:PORT -- COMMAND [ARGS...]\n");
		return 2;
	}
	char host[64];
	char *colon = strrchr(addr, ':');
	if (!colon || colon - addr >= (long)sizeof host) { fprintf(stderr, "ideal: bad address %s\n", addr); return 2; }
	memcpy(host, addr, colon - addr);
	host[colon - addr] = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
	if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &sa.sin_addr) != 1) { fprintf(stderr, "ideal: bad host %s\n", host); return 2; }

	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) { perror("ideal: listen"); return 1; }

	struct sigaction act = {.sa_handler = forward};
	sigemptyset(&act.sa_mask);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);

	for (int k = 0; k < n; k++) {
		pid_t pid = fork();
		if (pid < 0) { perror("ideal: fork"); forward(SIGTERM); return 1; }
		if (pid == 0) {
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			if (fd != 3) { dup2(fd, 3); close(fd); }
			fcntl(3, F_SETFD, 0);
			char buf[32];
			snprintf(buf, sizeof buf, "%d", (int)getpid());
			setenv("LISTEN_FDS", "1", 1);
			setenv("LISTEN_PID", buf, 1);
			execvp(argv[i], argv + i);
			perror("ideal: exec");
			_exit(127);
		}
		kids[nkids++] = pid;
	}
	close(fd);
	int left = nkids, code = 0, st;
	while (left > 0) {
		pid_t pid = wait(&st);
		if (pid < 0) { if (errno == EINTR) continue; break; }
		for (int k = 0; k < nkids; k++)
			if (kids[k] == pid) { kids[k] = 0; left--; }
		if (WIFEXITED(st) && WEXITSTATUS(st)) code = WEXITSTATUS(st);
	}
	return code;
}
