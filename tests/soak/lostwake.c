/* lostwake.c — the lost wake-up behind the hang of issue 17 (item 4),
 * step by step; built with -Dsoak=true, run by hand: build/tests/soak/lost-wake.
 *
 * glibc's robust process-shared mutex: a waiter sets FUTEX_WAITERS and
 * sleeps in FUTEX_WAIT; the unlocker exchanges the word for 0 and, if the
 * waiters bit was set, calls FUTEX_WAKE.  An unlocker SIGKILLed between the
 * exchange and the wake leaves the wake to the kernel's robust-list cleanup
 * at its exit, which wakes a waiter only if the word is still 0 then.  Here
 * the release is done for U (the exchange), then N, a third process, takes
 * the free word (without the waiters bit) before U's exit is cleaned up, and
 * releases it: nobody ever wakes W, which sleeps on a word that reads 0 until
 * a ptrace attach (as gdb's) interrupts its wait.  A woken waiter killed
 * before it takes the word loses the wake-up the same way.  The spool's
 * answer: writer.lock (libspool/queue/env.c). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void)
{
	pthread_mutex_t *mu = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(mu, &a);
	_Atomic unsigned *word = (_Atomic unsigned *)(void *)mu;
	/* U: holds the mutex, in its own process */
	int up[2];
	pipe(up);
	pid_t u = fork();
	if (u == 0) {
		pthread_mutex_lock(mu);
		write(up[1], "l", 1);
		pause();
		_exit(0);
	}
	char c;
	read(up[0], &c, 1);
	/* W: waits */
	pid_t w = fork();
	if (w == 0) {
		int r = pthread_mutex_lock(mu);
		printf("W: got the mutex (%d)\n", r);
		_exit(0);
	}
	while (!(atomic_load(word) & 0x80000000u))
		usleep(1000);
	printf("W waits: word 0x%08x\n", atomic_load(word));
	/* U "dies" right after its release and before its wake: the release
	 * (exchange to 0) is done here for it; then it is killed, and the
	 * kernel's cleanup finds the word ... */
	atomic_exchange(word, 0);
	/* ... already taken by N, a third process, which takes the free word
	 * (without the waiters bit, which the release cleared) */
	int np[2], nq[2];
	pipe(np);
	pipe(nq);
	pid_t n = fork();
	if (n == 0) {
		pthread_mutex_lock(mu);
		write(np[1], "l", 1);
		read(nq[0], &c, 1);
		pthread_mutex_unlock(mu);
		_exit(0);
	}
	read(np[0], &c, 1);
	kill(u, SIGKILL);
	waitpid(u, NULL, 0);
	printf("U killed while N holds it: word 0x%08x\n", atomic_load(word));
	write(nq[1], "u", 1);
	waitpid(n, NULL, 0);
	printf("N released it: word 0x%08x\n", atomic_load(word));
	sleep(3);
	int st;
	printf("3 s later W %s, word 0x%08x\n",
	       waitpid(w, &st, WNOHANG) == w ? "has it" : "still sleeps", atomic_load(word));
	ptrace(PTRACE_SEIZE, w, 0, 0);
	ptrace(PTRACE_INTERRUPT, w, 0, 0);
	waitpid(w, &st, __WALL);
	ptrace(PTRACE_DETACH, w, 0, 0);
	usleep(200000);
	printf("after a ptrace attach W %s\n", waitpid(w, &st, WNOHANG) == w ? "got it and exited" : "still sleeps");
	return 0;
}
