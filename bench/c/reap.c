/*
 * reap: the orphan generator of the reaping benchmark. Run it as the only
 * child of the init under test, as PID 1 of a new PID namespace:
 *
 *   unshare --pid --fork --mount-proc INIT ... -- reap TOTAL BATCH
 *
 * It makes TOTAL orphan zombies, BATCH at a time (pid_max is often 32768,
 * so they cannot all exist at once): a helper process forks BATCH children
 * that exit at once, waits until every one of them is a zombie, and then
 * exits itself, so the kernel hands all of them to PID 1 in one go. The
 * clock runs from the helper's exit until PID 1 has no child left but this
 * process (read from /proc/1/task/.../children); the creation of the zombies
 * is not timed. To watch without getting in the way of PID 1 (reading
 * /proc/1/task/N/children takes the tasklist lock that reaping needs), it
 * polls the batch's pids with kill(pid, 0), which succeeds on a zombie and
 * fails once it is reaped; the children list is read once per batch, at the
 * end, to confirm. At the end it counts the zombies left in the namespace
 * and prints one JSON line on stdout.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char buf[1 << 20];

/* Children of PID 1, across all of its threads. */
static long init_children(void) {
	DIR *d = opendir("/proc/1/task");
	if (!d) return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.') continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/1/task/%s/children", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0) continue;
		ssize_t r;
		int intok = 0;
		while ((r = read(fd, buf, sizeof buf)) > 0)
			for (ssize_t i = 0; i < r; i++) {
				if (buf[i] == ' ') intok = 0;
				else if (!intok) { intok = 1; n++; }
			}
		close(fd);
	}
	closedir(d);
	return n;
}

static long zombies(void) {
	DIR *d = opendir("/proc");
	if (!d) return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
		char path[300], st[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0) continue;
		ssize_t r = read(fd, st, sizeof st - 1);
		close(fd);
		if (r <= 0) continue;
		st[r] = 0;
		char *p = strrchr(st, ')');
		if (p && p[1] == ' ' && p[2] == 'Z') n++;
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv) {
	long total = argc > 1 ? atol(argv[1]) : 100000;
	long batch = argc > 2 ? atol(argv[2]) : 10000;
	if (total < 1 || batch < 1) { fprintf(stderr, "usage: reap TOTAL BATCH\n"); return 2; }
	if (getppid() != 1) fprintf(stderr, "reap: warning: parent is not PID 1 (ppid %d)\n", (int)getppid());
	long base = init_children();
	long done = 0, batches = 0;
	double reap = 0, create = 0, slowest = 0;
	int timed_out = 0;
	pid_t *pids = malloc(sizeof(pid_t) * batch);
	while (done < total && !timed_out) {
		long b = total - done < batch ? total - done : batch;
		int ready[2], go[2];
		if (pipe(ready) || pipe(go)) { perror("reap: pipe"); return 1; }
		double c0 = now();
		pid_t helper = fork();
		if (helper < 0) { perror("reap: fork"); return 1; }
		if (helper == 0) {
			close(ready[0]);
			close(go[1]);
			long made = 0;
			int retries = 0;
			while (made < b) {
				pid_t c = fork();
				if (c == 0) _exit(0);
				if (c < 0) {
					if (errno == EAGAIN && retries++ < 2000) { usleep(500); continue; }
					break;
				}
				pids[made++] = c;
			}
			siginfo_t si;
			for (long i = 0; i < made; i++)
				while (waitid(P_PID, pids[i], &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
			if (write(ready[1], &made, sizeof made) != sizeof made) _exit(1);
			for (long off = 0; off < made * (long)sizeof(pid_t);) {
				ssize_t w = write(ready[1], (char *)pids + off, made * sizeof(pid_t) - off);
				if (w < 0) { if (errno == EINTR) continue; _exit(1); }
				off += w;
			}
			char x;
			if (read(go[0], &x, 1) < 0) _exit(1);
			_exit(0); /* its zombie children go to PID 1 now */
		}
		close(ready[1]);
		close(go[0]);
		long made = 0;
		if (read(ready[0], &made, sizeof made) != sizeof made) { fprintf(stderr, "reap: helper failed\n"); return 1; }
		for (long off = 0; off < made * (long)sizeof(pid_t);) {
			ssize_t r = read(ready[0], (char *)pids + off, made * sizeof(pid_t) - off);
			if (r <= 0) { if (r < 0 && errno == EINTR) continue; fprintf(stderr, "reap: helper failed\n"); return 1; }
			off += r;
		}
		double t0 = now();
		create += t0 - c0;
		if (write(go[1], "x", 1) != 1) return 1;
		close(go[1]);
		close(ready[0]);
		int st;
		while (waitpid(helper, &st, 0) < 0 && errno == EINTR) {}
		struct timespec pause = {0, 20000};
		for (long i = 0; i < made && !timed_out; i++)
			while (kill(pids[i], 0) == 0) {
				if (now() - t0 > 60) { timed_out = 1; break; }
				nanosleep(&pause, NULL);
			}
		while (!timed_out && init_children() > base) {
			if (now() - t0 > 60) { timed_out = 1; break; }
			nanosleep(&pause, NULL);
		}
		double dt = now() - t0;
		reap += dt;
		if (dt > slowest) slowest = dt;
		done += made;
		batches++;
		if (made < b) { fprintf(stderr, "reap: only %ld of %ld forks succeeded\n", made, b); break; }
	}
	struct timespec settle = {0, 100000000};
	nanosleep(&settle, NULL);
	long left = zombies();
	printf("{\"orphans\":%ld,\"batches\":%ld,\"batch_size\":%ld,\"reap_seconds\":%.6f,\"orphans_per_second\":%.0f,"
	       "\"slowest_batch_ms\":%.3f,\"create_seconds\":%.3f,\"zombies_left\":%ld,\"timed_out\":%s}\n",
	       done, batches, batch, reap, reap > 0 ? done / reap : 0, slowest * 1000, create, left,
	       timed_out ? "true" : "false");
	fflush(stdout);
	return timed_out || left != 0;
}
