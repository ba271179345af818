/*
 * mwrite_file: bulk-write a file of documents into Kuzzle with libkuzzle.
 *
 *   mwrite_file [--host H] [--port P] [--user U --password P | --api-key K]
 *               [--wait-for-refresh] [--spool DIR] INDEX COLLECTION FILE
 *
 * FILE holds either a JSON array of {"_id"?, "body"} documents, or NDJSON: one
 * such document per line. It is streamed, in constant memory whatever its
 * size: each document is read and handed to a libkuzzle producer
 * (kuzzle_produce), whose delivery thread sends them in batches; one report
 * per document comes back (kuzzle_producer_next_report). The index and
 * collection are created when missing. On a terminal, stderr shows progress.
 *
 * --spool DIR: the producer keeps what it accepted in DIR until Kuzzle took
 * it, and DIR/mwrite_file.progress says how far FILE was read; an
 * interrupted import (Ctrl-C, kill, Kuzzle gone) run again with the same
 * arguments delivers what was spooled and goes on where it stopped, never
 * writing a document twice (ids of id-less documents are given when they
 * are accepted, and spooled with them).
 *
 * Test hooks (CTest's resume tests): --crash-after N dies (SIGKILL) right
 * after the Nth document is accepted, --crash-before N right before the
 * Nth is produced (its progress record written).
 *
 * Prints one summary line and the first few rejected documents.
 * Exit status: 0 every document written, 1 some documents rejected,
 * 2 usage, file or connection error, or documents not written at all.
 */
#define _POSIX_C_SOURCE 200809L

#include <cjson/cJSON.h>
#include <kuzzle.h>

#include <signal.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHOW_ERRORS 5
#define MAX_DOC_BYTES (64u << 20) /* a longer document is refused unread */
#define FLUSH_MS 120000           /* the end: wait that long for reports */
#define PROGRESS "mwrite_file.progress"

struct totals {
  size_t written, failed, shown, accepted;
  kuzzle_status worst;
};

static void usage(void) {
  fprintf(stderr,
          "usage: mwrite_file [--host H] [--port P] [--user U --password P | "
          "--api-key K]\n                   [--wait-for-refresh] [--spool DIR] "
          "INDEX COLLECTION FILE\n");
}

static void worse(struct totals *t, kuzzle_status st) {
  /* Anything but OK/PARTIAL outranks PARTIAL, which outranks OK. */
  if (st != KUZZLE_OK && st != KUZZLE_PARTIAL && t->worst <= KUZZLE_PARTIAL)
    t->worst = st;
  else if (st == KUZZLE_PARTIAL && t->worst == KUZZLE_OK)
    t->worst = st;
}

static void show(struct totals *t, int status, const char *reason,
                 const char *what) {
  if (t->shown++ < SHOW_ERRORS)
    printf("  rejected (%d): %s: %.120s\n", status, reason, what);
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

/* The input, read one document at a time: NDJSON lines, or the elements of
 * one JSON array (scanned for their ends, never parsed: libkuzzle checks
 * every document). Memory: the longest document. */
struct input {
  FILE *f;
  int array;      /* a JSON array (else NDJSON) */
  int after;      /* array: an element was read; ',' or ']' comes next */
  int seen;       /* array: not at its start (']' there: an empty one) */
  long long pos;  /* offset in FILE of what comes next */
  long long start; /* where the last document began */
  long long size; /* FILE's size, -1 when unknown (a pipe) */
  char *buf, *doc;
  size_t cap, len;
};

static int rd(struct input *in) {
  int c = getc(in->f);
  if (c != EOF) in->pos++;
  return c;
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int rd_non_ws(struct input *in) {
  int c;
  while (is_ws(c = rd(in))) {
  }
  return c;
}

static int keep(struct input *in, int c) {
  if (in->len + 2 > in->cap) {
    size_t cap = in->cap ? in->cap * 2 : 4096;
    char *bigger = realloc(in->buf, cap);
    if (!bigger) return -1;
    in->buf = bigger;
    in->cap = cap;
  }
  in->buf[in->len++] = (char)c;
  return 0;
}

/* The next array element into in->doc: 1, 0 at the end, -1 not an array. */
static int next_element(struct input *in) {
  int c = rd_non_ws(in);
  if (in->after) {
    if (c == ']') return rd_non_ws(in) == EOF ? 0 : -1;
    if (c != ',') return -1;
    c = rd_non_ws(in);
  } else if (c == ']' && !in->seen) {
    return rd_non_ws(in) == EOF ? 0 : -1; /* [] */
  }
  if (c == EOF || c == ',' || c == ']') return -1;
  in->start = in->pos - 1;
  in->len = 0;
  int depth = 0, str = 0, esc = 0;
  for (; c != EOF; c = rd(in)) {
    if (!str && depth == 0 && (c == ',' || c == ']' || is_ws(c))) {
      ungetc(c, in->f); /* a scalar's end: read again as a separator */
      in->pos--;
      break;
    }
    if (keep(in, c) != 0) return -1;
    if (str) {
      if (esc) esc = 0;
      else if (c == '\\') esc = 1;
      else if (c == '"') str = 0;
    } else if (c == '"') {
      str = 1;
    } else if (c == '{' || c == '[') {
      depth++;
    } else if ((c == '}' || c == ']') && --depth <= 0) {
      break;
    }
  }
  if (c == EOF || depth != 0) return -1;
  in->buf[in->len] = '\0';
  in->doc = in->buf;
  in->after = in->seen = 1;
  return 1;
}

/* The next NDJSON line into in->doc: 1, 0 at the end, -1 read error,
 * 2 a line holding a NUL byte (no C string can carry it). */
static int next_line(struct input *in) {
  for (;;) {
    in->start = in->pos;
    ssize_t n = getline(&in->buf, &in->cap, in->f);
    if (n < 0) return ferror(in->f) ? -1 : 0;
    in->pos += n;
    char *s = in->buf, *end = in->buf + n;
    while (s < end && is_ws((unsigned char)*s)) s++;
    while (end > s && is_ws((unsigned char)end[-1])) end--;
    if (s == end) continue;
    *end = '\0';
    in->doc = s;
    in->len = (size_t)(end - s);
    return memchr(s, '\0', in->len) ? 2 : 1;
  }
}

static int next_doc(struct input *in) {
  return in->array ? next_element(in) : next_line(in);
}

/* With --spool, DIR/mwrite_file.progress: the file and target of the
 * import, and the document about to be produced (its offsets in FILE and
 * the seq the spool gives next). Written before each kuzzle_produce: when
 * the import is run again, the spool's nextSeq says whether that document
 * made it in (past that seq) or not (still that seq). */
struct progress {
  int fd;
  char path[4200];
  char index[256], collection[256], mode;
  long long size, mtime, ino;
};

static int progress_write(struct progress *pr, uint64_t seq, long long start,
                          long long end) {
  char rec[1024];
  int n = snprintf(rec, sizeof rec,
                   "mwrite_file 1 %c %s %s %020lld %020lld %020lld %020" PRIu64
                   " %020lld %020lld\n",
                   pr->mode, pr->index, pr->collection, pr->size, pr->mtime,
                   pr->ino, seq, start, end);
  /* One record of a fixed length, rewritten in place: never half old. */
  return n > 0 && (size_t)n < sizeof rec &&
                 pwrite(pr->fd, rec, (size_t)n, 0) == (ssize_t)n
             ? 0
             : -1;
}

/* The spool's next seq, from kuzzle_producer_stats. */
static int spool_next_seq(kuzzle_producer *p, uint64_t *next) {
  char *stats = NULL;
  int rc = -1;
  if (kuzzle_producer_stats(p, &stats) == KUZZLE_OK) {
    cJSON *json = cJSON_Parse(stats);
    const cJSON *spool = cJSON_GetObjectItemCaseSensitive(json, "spool");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(spool, "nextSeq");
    if (cJSON_IsNumber(n) && n->valuedouble >= 1) {
      *next = (uint64_t)n->valuedouble;
      rc = 0;
    }
    cJSON_Delete(json);
  }
  kuzzle_free_result(stats);
  return rc;
}

/* Where to start reading: 0 (a fresh import) or where the last run
 * stopped; -1 (said why) when the spool holds another import. */
static long long progress_resume(struct progress *pr, kuzzle_producer *p,
                                 struct input *in, uint64_t *next) {
  char rec[1024], mode = 0, index[256], collection[256];
  long long size, mtime, ino, start, end;
  uint64_t seq;
  ssize_t n = pread(pr->fd, rec, sizeof rec - 1, 0);
  if (spool_next_seq(p, next) != 0) {
    fprintf(stderr, "the spool's stats have no nextSeq\n");
    return -1;
  }
  if (n <= 0) return 0;
  rec[n] = '\0';
  if (sscanf(rec, "mwrite_file 1 %c %255s %255s %lld %lld %lld %" SCNu64 " %lld %lld",
             &mode, index, collection, &size, &mtime, &ino, &seq, &start,
             &end) != 9 ||
      (mode != 'a' && mode != 'n')) {
    fprintf(stderr, "%s: not a progress record\n", pr->path);
    return -1;
  }
  if (strcmp(index, pr->index) || strcmp(collection, pr->collection) ||
      size != pr->size || mtime != pr->mtime || ino != pr->ino) {
    fprintf(stderr,
            "%s: the spool holds an unfinished import of another file or "
            "into another collection: run that one again, or use another "
            "--spool\n",
            pr->path);
    return -1;
  }
  if (*next < seq) {
    /* Documents the progress record saw accepted are not in the spool
     * (lost with the machine's power before spoolSync): where to resume
     * is not known. */
    fprintf(stderr, "%s: the spool lost documents: cannot resume exactly\n",
            pr->path);
    return -1;
  }
  in->array = mode == 'a';
  in->after = *next > seq; /* that document is in: go on after it */
  in->seen = 1;
  fprintf(stderr, "resuming at byte %lld (documents before it: spooled or delivered)\n",
          in->after ? end : start);
  return in->after ? end : start;
}

static void take(struct totals *t, const kuzzle_report *r) {
  if (r->ok) {
    t->written++;
    return;
  }
  t->failed++;
  show(t, r->status, r->reason, r->id);
  /* No answer, or one that proves nothing: not a rejection, a failure. */
  worse(t, r->status == 0 || r->in_doubt ? KUZZLE_ERR_CONNECTION : KUZZLE_PARTIAL);
}

/* Every report waiting, after waiting up to `wait_ms` for the first. */
static void drain(kuzzle_producer *p, struct totals *t, int wait_ms) {
  kuzzle_report r;
  while (kuzzle_producer_next_report(p, wait_ms, &r) == KUZZLE_OK) {
    take(t, &r);
    wait_ms = 0;
  }
}

/* The reports kuzzle_producer_close hands back (JSON). */
static void take_json(struct totals *t, const char *json) {
  cJSON *reports = cJSON_Parse(json);
  const cJSON *r;
  cJSON_ArrayForEach(r, reports) {
    kuzzle_report one = {0};
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "_id");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(r, "reason");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");
    one.ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "ok"));
    one.in_doubt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "inDoubt"));
    one.status = cJSON_IsNumber(status) ? (uint16_t)status->valueint : 0;
    one.id = cJSON_IsString(id) ? id->valuestring : "?";
    one.reason = cJSON_IsString(reason) ? reason->valuestring : "?";
    take(t, &one);
  }
  cJSON_Delete(reports);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* On a terminal: documents sent, docs/s and, with a known size, the ETA. */
static void show_progress(const struct totals *t, const struct input *in,
                          long long from, double t0, double *last, int last_one) {
  double at = now(), secs = at - t0;
  if (!last_one && at - *last < 0.5) return;
  *last = at;
  fprintf(stderr, "\r%zu sent, %zu written, %.0f docs/s", t->accepted,
          t->written, secs > 0 ? (double)t->accepted / secs : 0.0);
  if (in->size > 0 && in->pos > from && t->written > 0 && !last_one) {
    /* The producer queues ahead of Kuzzle: the documents the whole file
     * holds (extrapolated from what was read) at the rate written. */
    double total = (double)t->accepted * (double)(in->size - from) /
                   (double)(in->pos - from);
    double left = total - (double)t->written;
    if (left > 0)
      fprintf(stderr, ", ETA %.0f s", left * secs / (double)t->written);
  }
  fprintf(stderr, "    %s", last_one ? "\n" : "");
}

/* A JSON config from cJSON (it escapes the strings), then freed. */
static char *print_json(cJSON *obj) {
  char *text = cJSON_PrintUnformatted(obj);
  cJSON_Delete(obj);
  return text;
}

int main(int argc, char **argv) {
  const char *host = "localhost", *user = NULL, *password = NULL, *key = NULL;
  const char *pos[3], *spool = NULL;
  int port = 7512, npos = 0, refresh = 0;
  size_t crash_after = 0, crash_before = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has_value = i + 1 < argc;
    if (!strcmp(a, "--host") && has_value) host = argv[++i];
    else if (!strcmp(a, "--port") && has_value) port = atoi(argv[++i]);
    else if (!strcmp(a, "--user") && has_value) user = argv[++i];
    else if (!strcmp(a, "--password") && has_value) password = argv[++i];
    else if (!strcmp(a, "--api-key") && has_value) key = argv[++i];
    else if (!strcmp(a, "--spool") && has_value) spool = argv[++i];
    else if (!strcmp(a, "--crash-after") && has_value)
      crash_after = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(a, "--crash-before") && has_value)
      crash_before = strtoul(argv[++i], NULL, 10);
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
  if (!valid_name(index) || !valid_name(collection) || strlen(index) > 255 ||
      strlen(collection) > 255) {
    fprintf(stderr, "index and collection: lowercase letters, digits, - and _\n");
    return 2;
  }
  struct progress pr = {.fd = -1};
  if (spool && (size_t)snprintf(pr.path, sizeof pr.path, "%s/%s", spool,
                                PROGRESS) >= sizeof pr.path) {
    fprintf(stderr, "--spool: path too long\n");
    return 2;
  }

  struct input in = {.size = -1};
  struct stat sb;
  in.f = fopen(path, "rb");
  if (!in.f || fstat(fileno(in.f), &sb) != 0) {
    perror(path);
    if (in.f) fclose(in.f);
    return 2;
  }
  if (S_ISREG(sb.st_mode)) in.size = (long long)sb.st_size;

  cJSON *cfg = cJSON_CreateObject();
  cJSON_AddStringToObject(cfg, "host", host);
  cJSON_AddNumberToObject(cfg, "port", port);
  if (user) {
    cJSON_AddStringToObject(cfg, "username", user);
    cJSON_AddStringToObject(cfg, "password", password);
  }
  if (key) cJSON_AddStringToObject(cfg, "apiKey", key);
  char *cfg_text = print_json(cfg);

  kuzzle_client *client = NULL;
  kuzzle_producer *producer = NULL;
  char *err = NULL;
  int rc = 2;
  kuzzle_status st = kuzzle_connect(cfg_text, &client, &err);
  cJSON_free(cfg_text);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "cannot connect to %s:%d: %s: %s\n", host, port,
            kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    goto out;
  }
  if (ensure_collection(client, index, collection) != KUZZLE_OK) goto out;

  /* whenFull "reject": this one thread also polls the reports that make
   * room, so it must never block inside kuzzle_produce waiting for room. */
  cfg = cJSON_CreateObject();
  cJSON_AddStringToObject(cfg, "whenFull", "reject");
  if (refresh) cJSON_AddTrueToObject(cfg, "waitForRefresh");
  if (spool) cJSON_AddStringToObject(cfg, "spoolDir", spool);
  cfg_text = print_json(cfg);
  st = kuzzle_producer_open(client, cfg_text, &producer, &err);
  cJSON_free(cfg_text);
  if (st != KUZZLE_OK) {
    fprintf(stderr, "producer: %s: %s\n", kuzzle_status_str(st), err);
    kuzzle_free_result(err);
    goto out;
  }

  /* Where to start: a spool's progress record says how far the last run
   * got (the producer, open, holds the spool's lock: no other run races). */
  long long from = 0;
  uint64_t next_seq = 0;
  if (spool) {
    snprintf(pr.index, sizeof pr.index, "%s", index);
    snprintf(pr.collection, sizeof pr.collection, "%s", collection);
    pr.size = (long long)sb.st_size;
    pr.mtime = (long long)sb.st_mtime;
    pr.ino = (long long)sb.st_ino;
    pr.fd = open(pr.path, O_RDWR | O_CREAT, 0644);
    if (pr.fd < 0) {
      perror(pr.path);
      goto out;
    }
    if ((from = progress_resume(&pr, producer, &in, &next_seq)) < 0) goto out;
  }
  if (from > 0) {
    if (fseeko(in.f, (off_t)from, SEEK_SET) != 0) {
      perror(path);
      goto out;
    }
    in.pos = in.start = from;
  } else {
    int c = rd_non_ws(&in);
    in.array = c == '[';
    if (!in.array && c != EOF) {
      ungetc(c, in.f); /* NDJSON: the first line starts here */
      in.pos--;
    }
    in.start = in.pos;
  }
  pr.mode = in.array ? 'a' : 'n';

  struct totals t = {0, 0, 0, 0, KUZZLE_OK};
  int tty = isatty(STDERR_FILENO), more;
  double t0 = now(), last = t0;
  while ((more = next_doc(&in)) > 0) {
    if (more == 2) {
      t.failed++;
      show(&t, 400, "a NUL byte in the line", in.doc);
      worse(&t, KUZZLE_PARTIAL);
      continue;
    }
    if (pr.fd >= 0 && progress_write(&pr, next_seq, in.start, in.pos) != 0) {
      perror(pr.path);
      break;
    }
    if (crash_before && t.accepted + 1 == crash_before) raise(SIGKILL);
    uint64_t seq = 0;
    while ((st = kuzzle_produce(producer, index, collection, in.doc, &seq)) ==
           KUZZLE_ERR_QUEUE_FULL)
      drain(producer, &t, 100); /* room comes with the reports taken */
    if (st == KUZZLE_OK) {
      t.accepted++;
      next_seq = seq + 1;
      if (t.accepted == crash_after) raise(SIGKILL);
    } else if (st == KUZZLE_ERR_INVALID_ARGUMENT || st == KUZZLE_ERR_JSON) {
      t.failed++; /* refused before sending, as kuzzle_mwrite's 400s */
      show(&t, 400, kuzzle_produce_error(), in.doc);
      worse(&t, KUZZLE_PARTIAL);
    } else {
      fprintf(stderr, "produce: %s: %s\n", kuzzle_status_str(st),
              kuzzle_produce_error());
      worse(&t, st);
      break;
    }
    drain(producer, &t, 0);
    if (tty && t.accepted % 256 == 0) show_progress(&t, &in, from, t0, &last, 0);
  }
  if (more < 0) {
    fprintf(stderr, "%s: %s at byte %lld\n", path,
            in.array ? "not a JSON array of documents" : "read error", in.pos);
    worse(&t, in.array ? KUZZLE_ERR_JSON : KUZZLE_ERR_INTERNAL);
  }

  /* The end: wait for the last reports, showing progress meanwhile. */
  int delivered = 0;
  for (int waited = 0; waited < FLUSH_MS; waited += 1000) {
    st = kuzzle_producer_flush(producer, 1000);
    drain(producer, &t, 0);
    if (tty) show_progress(&t, &in, from, t0, &last, 0);
    if ((delivered = st != KUZZLE_ERR_TIMEOUT)) break;
  }
  if (!delivered) worse(&t, KUZZLE_ERR_TIMEOUT);
  char *left = NULL;
  kuzzle_producer_close(producer, 5000, &left);
  producer = NULL;
  take_json(&t, left);
  kuzzle_free_result(left);
  if (tty) show_progress(&t, &in, from, t0, &last, 1);
  double secs = now() - t0;

  if (spool && !delivered)
    fprintf(stderr, "not delivered yet: kept in %s; run again with the same "
            "arguments to deliver them and go on\n", spool);
  else if (spool && more == 0)
    unlink(pr.path); /* done: the next run is a new import */
  printf("written %zu, failed %zu, %.3f s, %.0f docs/s (%s)\n", t.written,
         t.failed, secs, secs > 0 ? (double)t.written / secs : 0.0,
         kuzzle_status_str(t.worst));
  rc = t.worst == KUZZLE_OK ? 0 : t.worst == KUZZLE_PARTIAL ? 1 : 2;

out:
  kuzzle_producer_close(producer, 5000, NULL);
  kuzzle_disconnect(client);
  if (pr.fd >= 0) close(pr.fd);
  free(in.buf);
  fclose(in.f);
  return rc;
}
