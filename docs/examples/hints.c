/* Advising extmemd: the example of docs/HINTS.md, built with the project so it cannot rot.
 *
 *   cc hints.c -o hints -lextmem && ./hints
 *
 * Linked with -lextmem the program is managed when extmemd runs, and runs unmanaged
 * (every call failing with ENODEV, harmlessly) when it does not. */
#include <errno.h>
#include <extmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  const size_t table_bytes = 32u << 20; /* looked up all the time: keep it in memory */
  const size_t log_bytes = 64u << 20;   /* written once, read back in order much later */
  unsigned char* table = malloc(table_bytes);
  unsigned char* log = malloc(log_bytes);
  if (table == NULL || log == NULL) return 1;
  memset(table, 1, table_bytes);
  memset(log, 2, log_bytes);

  if (extmem_advise(table, table_bytes, EXTMEM_HINT_HOT) != 0) {
    if (errno != ENODEV) perror("extmem_advise");
    printf("not managed by extmemd: hints are ignored\n");
  }
  extmem_advise(log, log_bytes, EXTMEM_HINT_COLD);       /* evict the log first */
  extmem_advise(log, log_bytes, EXTMEM_HINT_SEQUENTIAL); /* read it back in large reads */

  /* ... much later: fetch the log back before reading it. */
  extmem_advise(log, log_bytes, EXTMEM_HINT_WILLNEED);
  unsigned long sum = 0;
  for (size_t i = 0; i < log_bytes; i += 4096) sum += log[i];
  printf("log sum %lu\n", sum);

  struct extmem_stats stats = {.size = sizeof(stats)};
  if (extmem_get_stats(&stats) == 0) {
    printf("policy %s, resident %llu MiB, swapped %llu MiB, hints applied %llu\n", stats.policy,
           (unsigned long long)(stats.resident_bytes >> 20),
           (unsigned long long)(stats.swapped_bytes >> 20),
           (unsigned long long)stats.hints_applied);
  }
  free(log);
  free(table);
  return sum == log_bytes / 4096 * 2 ? 0 : 1;
}
