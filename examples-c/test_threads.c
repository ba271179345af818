/*
 * test_threads: one kuzzle_client shared by 8 threads writing at once.
 *
 *   test_threads HOST PORT
 *
 * Every thread writes its own 2,000 documents (ids "t<thread>-<n>") through
 * the same handle; then a count must find all 16,000. Run under a race
 * checker in CI (valgrind memcheck). Ends with "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L

#include <kuzzle.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS 8
#define DOCS 2000

struct job {
  kuzzle_client *client;
  const char *index;
  int thread;
  kuzzle_status status;
};

static void *writer(void *arg) {
  struct job *job = arg;
  size_t cap = (size_t)DOCS * 80 + 16, n = 0;
  char *docs = malloc(cap);
  if (!docs) {
    job->status = KUZZLE_ERR_INTERNAL;
    return NULL;
  }
  docs[n++] = '[';
  for (int i = 0; i < DOCS; i++)
    n += (size_t)snprintf(docs + n, cap - n,
                          "%s{\"_id\":\"t%d-%d\",\"body\":{\"t\":%d,\"i\":%d}}",
                          i ? "," : "", job->thread, i, job->thread, i);
  snprintf(docs + n, cap - n, "]");
  char *result = NULL;
  job->status = kuzzle_mwrite(job->client, job->index, "c", docs, NULL, &result);
  if (job->status != KUZZLE_OK)
    fprintf(stderr, "thread %d: %s: %.200s\n", job->thread,
            kuzzle_status_str(job->status), result);
  kuzzle_free_result(result);
  free(docs);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_threads HOST PORT\n");
    return 2;
  }
  char cfg[160], index[64], req[256], *out = NULL, *err = NULL;
  snprintf(cfg, sizeof cfg,
           "{\"host\":\"%s\",\"port\":%d,\"maxDocumentsPerRequest\":500}",
           argv[1], atoi(argv[2]));
  snprintf(index, sizeof index, "ctest-threads-%ld", (long)getpid());
  kuzzle_client *client = NULL;
  if (kuzzle_connect(cfg, &client, &err) != KUZZLE_OK) {
    fprintf(stderr, "connect: %s\n", err);
    kuzzle_free_result(err);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  int passed = 0, failed = 0;
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"create\",\"index\":\"%s\","
           "\"collection\":\"c\"}",
           index);
  char create_index[160];
  snprintf(create_index, sizeof create_index,
           "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}",
           index);
  kuzzle_query(client, create_index, &out);
  kuzzle_free_result(out);
  kuzzle_query(client, req, &out);
  kuzzle_free_result(out);

  pthread_t threads[THREADS];
  struct job jobs[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t] = (struct job){client, index, t, KUZZLE_OK};
    pthread_create(&threads[t], NULL, writer, &jobs[t]);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    if (jobs[t].status == KUZZLE_OK) passed++;
    else failed++;
  }

  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"refresh\",\"index\":\"%s\","
           "\"collection\":\"c\"}",
           index);
  kuzzle_query(client, req, &out);
  kuzzle_free_result(out);
  snprintf(req, sizeof req,
           "{\"controller\":\"document\",\"action\":\"count\",\"index\":\"%s\","
           "\"collection\":\"c\",\"body\":{}}",
           index);
  kuzzle_status st = kuzzle_query(client, req, &out);
  char expect[32];
  snprintf(expect, sizeof expect, "\"count\":%d", THREADS * DOCS);
  if (st == KUZZLE_OK && strstr(out, expect)) passed++;
  else {
    failed++;
    fprintf(stderr, "count: %s (want %s)\n", out, expect);
  }
  kuzzle_free_result(out);
  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"delete\",\"index\":\"%s\"}", index);
  kuzzle_query(client, req, &out);
  kuzzle_free_result(out);
  kuzzle_disconnect(client);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
