/*
 * mwrite_file: bulk-write a file of documents into Kuzzle with libkuzzle.
 *
 *   mwrite_file [--host H] [--port P] [--user U --password P | --api-key K]
 *               [--wait-for-refresh] INDEX COLLECTION FILE
 *
 * FILE holds either a JSON array of {"_id"?, "body"} documents, or NDJSON: one
 * such document per line (for data sets too big to hold as one array; they are
 * sent in batches). The index and collection are created when missing.
 *
 * Prints one summary line and the first few rejected documents.
 * Exit status: 0 every document written, 1 some documents rejected,
 * 2 usage, file or connection error, or documents not written at all.
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <kuzzle.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NDJSON_BATCH_DOCS 50000 /* documents per kuzzle_mwrite from NDJSON */
#define SHOW_ERRORS 5

struct totals {
  size_t written, failed, shown;
  kuzzle_status worst;
};

static void usage(void) {
  fprintf(stderr,
          "usage: mwrite_file [--host H] [--port P] [--user U --password P | "
          "--api-key K]\n                   [--wait-for-refresh] INDEX "
          "COLLECTION FILE\n");
}

/* Kuzzle index and collection names are lowercase, digits, '-', '_': checking
 * that also makes them safe to put in JSON without escaping. */
static int valid_name(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
          *s == '_'))
      return 0;
  return 1;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, r;
  char *buf = malloc(cap + 1);
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *bigger = realloc(buf, cap * 2 + 1);
      if (!bigger) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) {
    buf[n] = '\0';
    *len = n;
  }
  return buf;
}

/* Sends a query and reports failure; the result is freed here. */
static kuzzle_status query(kuzzle_client *client, const char *request,
                           int *is_true) {
  char *result = NULL;
  kuzzle_status st = kuzzle_query(client, request, &result);
  if (st != KUZZLE_OK)
    fprintf(stderr, "query %s failed: %s: %s\n", request,
            kuzzle_status_str(st), result);
  else if (is_true)
    *is_true = strcmp(result, "true") == 0;
  kuzzle_free_result(result);
  return st;
}

static kuzzle_status ensure_collection(kuzzle_client *client, const char *index,
                                       const char *collection) {
  char req[512];
  int exists = 0;
  kuzzle_status st;
  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"exists\",\"index\":\"%s\"}",
           index);
  if ((st = query(client, req, &exists)) != KUZZLE_OK) return st;
  if (!exists) {
    snprintf(req, sizeof req,
             "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}",
             index);
    if ((st = query(client, req, NULL)) != KUZZLE_OK) return st;
  }
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"exists\",\"index\":\"%s\","
           "\"collection\":\"%s\"}",
           index, collection);
  if ((st = query(client, req, &exists)) != KUZZLE_OK) return st;
  if (!exists) {
    snprintf(req, sizeof req,
             "{\"controller\":\"collection\",\"action\":\"create\",\"index\":"
             "\"%s\",\"collection\":\"%s\"}",
             index, collection);
    if ((st = query(client, req, NULL)) != KUZZLE_OK) return st;
  }
  return KUZZLE_OK;
}

/* One kuzzle_mwrite call; counts and shows what came back. */
static void write_batch(kuzzle_client *client, const char *index,
                        const char *collection, const char *docs,
                        const char *options, struct totals *t) {
  char *result = NULL;
  kuzzle_status st =
      kuzzle_mwrite(client, index, collection, docs, options, &result);
  cJSON *json = cJSON_Parse(result);
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(json, "successes");
  const cJSON *errors = cJSON_GetObjectItemCaseSensitive(json, "errors");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
  if (st != KUZZLE_OK && st != KUZZLE_PARTIAL && t->worst <= KUZZLE_PARTIAL)
    t->worst = st;
  else if (st == KUZZLE_PARTIAL && t->worst == KUZZLE_OK)
    t->worst = st;
  if (error) {
    char *text = cJSON_PrintUnformatted(error);
    fprintf(stderr, "mwrite: %s: %s\n", kuzzle_status_str(st), text);
    cJSON_free(text);
  }
  t->written += (size_t)cJSON_GetArraySize(ok);
  t->failed += (size_t)cJSON_GetArraySize(errors);
  const cJSON *e;
  cJSON_ArrayForEach(e, errors) {
    if (t->shown >= SHOW_ERRORS) break;
    char *doc = cJSON_PrintUnformatted(
        cJSON_GetObjectItemCaseSensitive(e, "document"));
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(e, "reason");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(e, "status");
    printf("  rejected (%d): %s: %.120s\n",
           cJSON_IsNumber(status) ? status->valueint : -1,
           cJSON_IsString(reason) ? reason->valuestring : "?",
           doc ? doc : "?");
    cJSON_free(doc);
    t->shown++;
  }
  cJSON_Delete(json);
  kuzzle_free_result(result);
}

/* NDJSON: turn runs of lines into JSON arrays, NDJSON_BATCH_DOCS at a time.
 * Lines are only copied, never parsed: libkuzzle checks every document. */
static void write_ndjson(kuzzle_client *client, const char *index,
                         const char *collection, char *text, size_t len,
                         const char *options, struct totals *t) {
  char *batch = malloc(len + 3);
  char *line = text, *end = text + len;
  if (!batch) {
    t->worst = KUZZLE_ERR_INTERNAL;
    return;
  }
  while (line < end) {
    size_t n = 1, docs = 0;
    batch[0] = '[';
    while (line < end && docs < NDJSON_BATCH_DOCS) {
      char *nl = memchr(line, '\n', (size_t)(end - line));
      char *stop = nl ? nl : end;
      char *s = line;
      while (s < stop && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
      if (s < stop) {
        if (docs++) batch[n++] = ',';
        memcpy(batch + n, s, (size_t)(stop - s));
        n += (size_t)(stop - s);
      }
      line = nl ? nl + 1 : end;
    }
    batch[n++] = ']';
    batch[n] = '\0';
    if (docs) write_batch(client, index, collection, batch, options, t);
  }
  free(batch);
}

int main(int argc, char **argv) {
  const char *host = "localhost", *user = NULL, *password = NULL, *key = NULL;
  const char *pos[3];
  int port = 7512, npos = 0, refresh = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (!strcmp(a, "--host") && has_value) host = argv[++i];
    else if (!strcmp(a, "--port") && has_value) port = atoi(argv[++i]);
    else if (!strcmp(a, "--user") && has_value) user = argv[++i];
    else if (!strcmp(a, "--password") && has_value) password = argv[++i];
    else if (!strcmp(a, "--api-key") && has_value) key = argv[++i];
    else if (!strcmp(a, "--wait-for-refresh")) refresh = 1;
    else if (a[0] == '-' && a[1] != '\0') {
      usage();
      return 2;
    } else if (npos < 3) pos[npos++] = a;
    else {
      usage();
      return 2;
    }
  }
  if (npos != 3 || (!user) != (!password) || (user && key)) {
    usage();
    return 2;
  }
  const char *index = pos[0], *collection = pos[1], *path = pos[2];
  if (!valid_name(index) || !valid_name(collection)) {
    fprintf(stderr, "index and collection: lowercase letters, digits, - and _\n");
    return 2;
  }

  size_t len = 0;
  char *text = read_file(path, &len);
  if (!text) {
    perror(path);
    return 2;
  }

  /* Build the configuration with cJSON: it escapes the strings for us. */
  cJSON *cfg = cJSON_CreateObject();
  cJSON_AddStringToObject(cfg, "host", host);
  cJSON_AddNumberToObject(cfg, "port", port);
  if (user) {
    cJSON_AddStringToObject(cfg, "username", user);
    cJSON_AddStringToObject(cfg, "password", password);
  }
  if (key) cJSON_AddStringToObject(cfg, "apiKey", key);
  char *cfg_text = cJSON_PrintUnformatted(cfg);
  cJSON_Delete(cfg);

  kuzzle_client *client = NULL;
  char *err = NULL;
  kuzzle_status st = kuzzle_connect(cfg_text, &client, &err);
  cJSON_free(cfg_text);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "cannot connect to %s:%d: %s: %s\n", host, port,
            kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    free(text);
    return 2;
  }
  if (ensure_collection(client, index, collection) != KUZZLE_OK) {
    kuzzle_disconnect(client);
    free(text);
    return 2;
  }

  const char *options = refresh ? "{\"waitForRefresh\":true}" : NULL;
  struct totals t = {0, 0, 0, KUZZLE_OK};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const char *first = text;
  while (*first == ' ' || *first == '\n' || *first == '\r' || *first == '\t')
    first++;
  if (*first == '[')
    write_batch(client, index, collection, text, options, &t);
  else
    write_ndjson(client, index, collection, text, len, options, &t);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

  printf("written %zu, failed %zu, %.3f s, %.0f docs/s (%s)\n", t.written,
         t.failed, secs, secs > 0 ? (double)t.written / secs : 0.0,
         kuzzle_status_str(t.worst));
  kuzzle_disconnect(client);
  free(text);
  if (t.worst == KUZZLE_OK) return 0;
  return t.worst == KUZZLE_PARTIAL ? 1 : 2;
}
