/* Floor of the adaptive-idle wake-up on this machine: a thread sleeping in poll(2) on
 * an eventfd (CPU 1) is woken by a write from CPU 0 every millisecond; prints the
 * latency from the write to the wake-up, in microseconds (TSC at 2.6 GHz). No DPDK.
 *   gcc -O2 -pthread tests/tools/wake_floor.c -o /tmp/wake && /tmp/wake */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <x86intrin.h>
static int efd; static volatile uint64_t sent; static volatile int done; static uint64_t d[4000];
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static void *sleeper(void *a){pin(1);for(int i=0;i<4000;i++){struct pollfd p={efd,POLLIN,0};poll(&p,1,1000);uint64_t now=__rdtsc();uint64_t v;read(efd,&v,8);d[i]=now-sent;done=i+1;}return 0;}
static int cmp(const void*a,const void*b){uint64_t x=*(uint64_t*)a,y=*(uint64_t*)b;return x<y?-1:x>y;}
int main(){efd=eventfd(0,0);pthread_t t;pthread_create(&t,0,sleeper,0);pin(0);usleep(1000);
for(int i=0;i<4000;i++){while(done<i)usleep(100);usleep(1000);sent=__rdtsc();uint64_t one=1;write(efd,&one,8);}
pthread_join(t,0);qsort(d,4000,8,cmp);double ghz=2.6;
printf("eventfd wake-up of a thread sleeping in poll(2) on an idle CPU: p50 %.1f us p90 %.1f p99 %.1f max %.1f\n",d[2000]/ghz/1e3,d[3600]/ghz/1e3,d[3960]/ghz/1e3,d[3999]/ghz/1e3);}
