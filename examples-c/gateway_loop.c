/*
 * gateway_loop: how an embedded gateway uses libkuzzle.
 *
 *   gateway_loop [--host H] [--port P] [--readings N] [--batch B] INDEX COLLECTION
 *
 * Readings are produced in a loop (here: made up) and queued; every B readings
 * the queue is flushed with one kuzzle_mwrite. What comes back decides each
 * reading's fate:
 *   - in "successes": stored, forgotten;
 *   - in "errors" with "inDoubt": true (sent, no conclusive answer), or with
 *     status 0 (no answer: not sent), 429 or 5xx: kept in the queue and sent
 *     again at the next flush (the gateway waits a little first): with a
 *     client-side _id, a resend can never store a reading twice;
 *   - in "errors" with another status (the document itself was refused):
 *     logged and dropped, resending would not help.
 * Nothing is lost silently. Prints "stored S, rejected R, pending P" at the end
 * and exits 0 when every reading was either stored or rejected.
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <kuzzle.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue {
  char **docs; /* each one JSON document {"_id","body"} */
  size_t len, cap;
};

static int push(struct queue *q, char *doc) {
  if (q->len == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    char **bigger = realloc(q->docs, cap * sizeof *bigger);
    if (!bigger) return -1;
    q->docs = bigger;
    q->cap = cap;
  }
  q->docs[q->len++] = doc;
  return 0;
}

/* One reading as a document; the gateway names it itself (gateway id +
 * sequence number), so resending it is always safe. */
static char *make_reading(unsigned long seq) {
  char *doc = malloc(192);
  if (!doc) return NULL;
  snprintf(doc, 192,
           "{\"_id\":\"gw7-%08lu\",\"body\":{\"sensor\":\"s%02lu\","
           "\"seq\":%lu,\"temp\":%.2f,\"ts\":%ld}}",
           seq, seq % 16, seq, 18.0 + (double)(seq % 97) / 10.0,
           (long)time(NULL));
  return doc;
}

static char *join(const struct queue *q) {
  size_t n = 2;
  for (size_t i = 0; i < q->len; i++) n += strlen(q->docs[i]) + 1;
  char *out = malloc(n + 1), *p = out;
  if (!out) return NULL;
  *p++ = '[';
  for (size_t i = 0; i < q->len; i++) {
    if (i) *p++ = ',';
    size_t l = strlen(q->docs[i]);
    memcpy(p, q->docs[i], l);
    p += l;
  }
  *p++ = ']';
  *p = '\0';
  return out;
}

static int retryable(int status, int in_doubt) {
  return in_doubt || status == 0 || status == 429 || status >= 500;
}

/* Sends the queue; keeps only what must be sent again. */
static kuzzle_status flush(kuzzle_client *client, const char *index,
                           const char *collection, struct queue *q,
                           unsigned long *stored, unsigned long *rejected) {
  if (q->len == 0) return KUZZLE_OK;
  char *docs = join(q);
  char *result = NULL;
  if (!docs) return KUZZLE_ERR_INTERNAL;
  kuzzle_status st = kuzzle_mwrite(client, index, collection, docs, NULL, &result);
  free(docs);
  cJSON *json = cJSON_Parse(result);
  const cJSON *errors = cJSON_GetObjectItemCaseSensitive(json, "errors");
  const cJSON *successes = cJSON_GetObjectItemCaseSensitive(json, "successes");
  if (!cJSON_IsArray(errors) || !cJSON_IsArray(successes)) {
    /* Not a result: the call itself was refused (bad argument...). Keep the
     * queue as it is and say why. */
    fprintf(stderr, "mwrite refused: %s: %s\n", kuzzle_status_str(st), result);
    cJSON_Delete(json);
    kuzzle_free_result(result);
    return st;
  }
  *stored += (unsigned long)cJSON_GetArraySize(successes);

  struct queue keep = {0};
  const cJSON *e;
  cJSON_ArrayForEach(e, errors) {
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(e, "reason");
    int code = cJSON_IsNumber(status) ? status->valueint : 0;
    int in_doubt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "inDoubt"));
    char *doc = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "document"));
    if (!doc) continue;
    if (retryable(code, in_doubt)) {
      if (push(&keep, doc) != 0) cJSON_free(doc);
    } else {
      fprintf(stderr, "rejected (%d): %s: %.100s\n", code,
              cJSON_IsString(reason) ? reason->valuestring : "?", doc);
      (*rejected)++;
      cJSON_free(doc);
    }
  }
  for (size_t i = 0; i < q->len; i++) free(q->docs[i]);
  free(q->docs);
  /* Kept documents were allocated by cJSON; copy them to plain malloc so
   * the queue frees everything the same way. */
  q->docs = NULL;
  q->len = q->cap = 0;
  for (size_t i = 0; i < keep.len; i++) {
    char *copy = strdup(keep.docs[i]);
    cJSON_free(keep.docs[i]);
    if (copy && push(q, copy) != 0) free(copy);
  }
  free(keep.docs);
  if (q->len)
    fprintf(stderr, "%s: %zu readings kept for the next flush\n",
            kuzzle_status_str(st), q->len);
  cJSON_Delete(json);
  kuzzle_free_result(result);
  return st;
}

int main(int argc, char **argv) {
  const char *host = "localhost", *pos[2];
  int port = 7512, npos = 0;
  unsigned long readings = 2000, batch = 250;
  for (int i = 1; i < argc; i++) {
    int v = i + 1 < argc;
    if (!strcmp(argv[i], "--host") && v) host = argv[++i];
    else if (!strcmp(argv[i], "--port") && v) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--readings") && v) readings = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--batch") && v) batch = strtoul(argv[++i], NULL, 10);
    else if (npos < 2 && argv[i][0] != '-') pos[npos++] = argv[i];
    else npos = 3;
  }
  if (npos != 2 || batch == 0) {
    fprintf(stderr,
            "usage: gateway_loop [--host H] [--port P] [--readings N] "
            "[--batch B] INDEX COLLECTION\n");
    return 2;
  }

  char cfg[256], *err = NULL;
  /* Short retries inside the library; the gateway's own queue covers long
   * outages. */
  snprintf(cfg, sizeof cfg,
           "{\"host\":\"%s\",\"port\":%d,\"retries\":2,\"retryBackoffMs\":100}",
           host, port);
  kuzzle_client *client = NULL;
  kuzzle_status st = kuzzle_connect(cfg, &client, &err);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "connect: %s: %s\n", kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    return 2;
  }

  /* Index and collection: created when missing (index:create answers
   * "already exists" otherwise; collection:create is idempotent). */
  char req[256], *out = NULL;
  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}",
           pos[0]);
  kuzzle_query(client, req, &out);
  kuzzle_free_result(out);
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"create\",\"index\":"
           "\"%s\",\"collection\":\"%s\"}",
           pos[0], pos[1]);
  st = kuzzle_query(client, req, &out);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "collection: %s: %s\n", kuzzle_status_str(st), out);
    kuzzle_free_result(out);
    kuzzle_disconnect(client);
    return 2;
  }
  kuzzle_free_result(out);

  struct queue q = {0};
  unsigned long stored = 0, rejected = 0;
  for (unsigned long seq = 0; seq < readings; seq++) {
    char *doc = make_reading(seq);
    if (!doc || push(&q, doc) != 0) {
      free(doc);
      break;
    }
    /* Every 500th reading is broken on purpose, as a faulty sensor would. */
    if (seq % 500 == 499) {
      char *bad = strdup("{\"_id\":\"gw7-broken\",\"body\":\"NaN\"}");
      if (bad && push(&q, bad) != 0) free(bad);
    }
    if (q.len >= batch) {
      st = flush(client, pos[0], pos[1], &q, &stored, &rejected);
      if (st == KUZZLE_ERR_CONNECTION || st == KUZZLE_ERR_TIMEOUT) {
        struct timespec pause = {1, 0}; /* retry later, keep producing */
        nanosleep(&pause, NULL);
      }
    }
  }
  /* Final flushes: a few tries for what is still pending. */
  for (int tries = 0; q.len > 0 && tries < 5; tries++)
    flush(client, pos[0], pos[1], &q, &stored, &rejected);

  printf("stored %lu, rejected %lu, pending %zu\n", stored, rejected, q.len);
  int rc = q.len == 0 ? 0 : 1;
  for (size_t i = 0; i < q.len; i++) free(q.docs[i]);
  free(q.docs);
  kuzzle_disconnect(client);
  return rc;
}
