/*
 * gateway_loop: how an embedded gateway uses libkuzzle's producer.
 *
 *   gateway_loop [--host H] [--port P] [--readings N] [--batch B]
 *                [--spool DIR] INDEX COLLECTION
 *
 * Readings are made up in a loop and handed to a producer one by one
 * (kuzzle_produce); its delivery thread batches them (up to B a request)
 * and retries what Kuzzle did not take yet. The gateway only reads one
 * final report per reading (kuzzle_producer_next_report: no JSON parser).
 * The client is opened with lazyConnect, so the gateway boots with its
 * uplink down; with --spool, readings wait on disk (across restarts) until
 * Kuzzle is back. A reading the library refuses at once (every 500th is
 * broken on purpose, as a faulty sensor's) is logged and counted failed.
 * Prints "stored S, failed F, pending P" at the end (P: still spooled for
 * the next run) and exits 0 when nothing is pending.
 */
#define _POSIX_C_SOURCE 200809L

#include <kuzzle.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLUSH_MS 30000 /* the end: how long to wait for the last reports */

struct counts {
  unsigned long stored, failed, mine; /* mine: reports of this run's seqs */
  uint64_t first_seq;                 /* this run's first seq (0: none yet) */
};

static void count(struct counts *c, const kuzzle_report *r) {
  if (r->ok) {
    c->stored++;
  } else {
    c->failed++;
    fprintf(stderr, "failed (%u%s): %s: %s\n", (unsigned)r->status,
            r->in_doubt ? ", in doubt" : "", r->id, r->reason);
  }
  if (c->first_seq && r->seq >= c->first_seq) c->mine++;
}

/* Every report already waiting (timeout 0: never blocks). */
static void drain(kuzzle_producer *p, struct counts *c) {
  kuzzle_report r;
  while (kuzzle_producer_next_report(p, 0, &r) == KUZZLE_OK) count(c, &r);
}

/* The reports kuzzle_producer_close hands back, as JSON: counted by their
 * "ok" fields (a string value cannot hold an unescaped quote). */
static void count_left(const char *json, struct counts *c) {
  for (const char *s = json; s && (s = strstr(s, "\"ok\":true")); s++) c->stored++;
  for (const char *s = json; s && (s = strstr(s, "\"ok\":false")); s++) c->failed++;
}

static void produce(kuzzle_producer *p, const char *const pos[2],
                    const char *doc, struct counts *c, unsigned long *accepted) {
  uint64_t seq = 0;
  kuzzle_status st = kuzzle_produce(p, pos[0], pos[1], doc, &seq);
  if (st == KUZZLE_OK) {
    (*accepted)++;
    if (!c->first_seq) c->first_seq = seq;
  } else {
    c->failed++; /* refused at the door, or no room: never queued */
    fprintf(stderr, "refused (%s): %s\n", kuzzle_status_str(st),
            kuzzle_produce_error());
  }
}

/* A string as JSON, escaped, into out (NULL when too long). */
static char *json_str(const char *s, char *out, size_t cap) {
  size_t n = 0;
  if (cap < 3) return NULL;
  out[n++] = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (n + 8 > cap) return NULL;
    if (ch == '"' || ch == '\\') n += (size_t)sprintf(out + n, "\\%c", ch);
    else if (ch < 0x20) n += (size_t)sprintf(out + n, "\\u%04x", ch);
    else out[n++] = (char)ch;
  }
  out[n++] = '"';
  out[n] = '\0';
  return out;
}

int main(int argc, char **argv) {
  const char *host = "localhost", *spool = NULL, *pos[2];
  int port = 7512, npos = 0;
  unsigned long readings = 2000, batch = 250;
  for (int i = 1; i < argc; i++) {
    int v = i + 1 < argc;
    if (!strcmp(argv[i], "--host") && v) host = argv[++i];
    else if (!strcmp(argv[i], "--port") && v) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--readings") && v) readings = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--batch") && v) batch = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--spool") && v) spool = argv[++i];
    else if (npos < 2 && argv[i][0] != '-') pos[npos++] = argv[i];
    else npos = 3;
  }
  char hostj[300], spoolj[4200], cfg[4800], *err = NULL;
  if (npos != 2 || batch == 0 || !json_str(host, hostj, sizeof hostj) ||
      (spool && !json_str(spool, spoolj, sizeof spoolj))) {
    fprintf(stderr,
            "usage: gateway_loop [--host H] [--port P] [--readings N] "
            "[--batch B] [--spool DIR] INDEX COLLECTION\n");
    return 2;
  }

  /* lazyConnect: no I/O here, so a gateway booting offline still starts. */
  snprintf(cfg, sizeof cfg, "{\"host\":%s,\"port\":%d,\"lazyConnect\":true}",
           hostj, port);
  kuzzle_client *client = NULL;
  kuzzle_status st = kuzzle_connect(cfg, &client, &err);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "connect: %s: %s\n", kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    return 2;
  }

  /* Index and collection, created when missing (index:create says "already
   * exists" otherwise; collection:create is idempotent). Offline, that
   * fails: go on, they must exist by the time Kuzzle is back. */
  char req[512], *out = NULL;
  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}",
           pos[0]);
  kuzzle_query(client, req, &out);
  kuzzle_free_result(out);
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"create\",\"index\":"
           "\"%s\",\"collection\":\"%s\"}",
           pos[0], pos[1]);
  if ((st = kuzzle_query(client, req, &out)) != KUZZLE_OK)
    fprintf(stderr, "collection not created (%s), producing anyway: %s\n",
            kuzzle_status_str(st), out);
  kuzzle_free_result(out);

  snprintf(cfg, sizeof cfg, "{\"batchDocuments\":%lu%s%s}", batch,
           spool ? ",\"spoolDir\":" : "", spool ? spoolj : "");
  kuzzle_producer *producer = NULL;
  st = kuzzle_producer_open(client, cfg, &producer, &err);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "producer: %s: %s\n", kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    kuzzle_disconnect(client);
    return 2;
  }

  struct counts c = {0, 0, 0, 0};
  unsigned long accepted = 0;
  char doc[192];
  for (unsigned long n = 0; n < readings; n++) {
    /* Named by the gateway (id + sequence number): the producer would give
     * id-less documents an id of its own, kept across resends all the same. */
    snprintf(doc, sizeof doc,
             "{\"_id\":\"gw7-%08lu\",\"body\":{\"sensor\":\"s%02lu\","
             "\"seq\":%lu,\"temp\":%.2f,\"ts\":%ld}}",
             n, n % 16, n, 18.0 + (double)(n % 97) / 10.0, (long)time(NULL));
    produce(producer, pos, doc, &c, &accepted);
    if (n % 500 == 499)
      produce(producer, pos, "{\"_id\":\"gw7-broken\",\"body\":\"NaN\"}", &c,
              &accepted);
    drain(producer, &c);
  }

  st = kuzzle_producer_flush(producer, FLUSH_MS);
  if (st == KUZZLE_ERR_TIMEOUT)
    fprintf(stderr, "flush: not everything delivered in %d ms%s\n", FLUSH_MS,
            spool ? " (kept in the spool for the next run)" : "");
  drain(producer, &c);
  char *left = NULL;
  kuzzle_producer_close(producer, 5000, &left);
  unsigned long before = c.stored + c.failed;
  count_left(left, &c);
  c.mine += c.stored + c.failed - before; /* after the drain: this run's */
  kuzzle_free_result(left);
  kuzzle_disconnect(client);

  unsigned long pending = accepted - (c.mine < accepted ? c.mine : accepted);
  printf("stored %lu, failed %lu, pending %lu\n", c.stored, c.failed, pending);
  return pending == 0 ? 0 : 1;
}
