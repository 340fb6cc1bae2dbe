/*
 * trivial: the worker of the scale benchmark. It says READY=1 on
 * NOTIFY_SOCKET (the sd_notify protocol) and sleeps until SIGTERM or SIGINT,
 * then exits 0. It costs its supervisor nothing but the process itself.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void) {
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	const char *ns = getenv("NOTIFY_SOCKET");
	if (ns && *ns && strlen(ns) < sizeof(((struct sockaddr_un *)0)->sun_path)) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		size_t len = strlen(ns);
		memcpy(sa.sun_path, ns, len);
		if (sa.sun_path[0] == '@') sa.sun_path[0] = 0;
		int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			static const char msg[] = "READY=1";
			sendto(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + len);
			close(fd);
		}
	}
	int sig;
	sigwait(&set, &sig);
	return 0;
}
