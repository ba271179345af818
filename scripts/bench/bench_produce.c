/*
 * bench_produce: the gateway producer through the C ABI, timed; prints one
 * JSON line per run.
 *
 *   bench_produce enqueue DEAD_PORT N ids|noids
 *     N kuzzle_produce calls on one thread into a memory-mode producer whose
 *     client cannot reach Kuzzle (lazyConnect on a port nothing listens on)
 *     and whose lingerMs, batchDocuments and queue bounds keep every
 *     document in the queue: the cost of accepting a document, alone.
 *   bench_produce deliver PORT INDEX COLLECTION N memory|interval|always THREADS SPOOL_DIR [EXTRA]
 *     N documents produced one by one from THREADS threads (each its share)
 *     into a producer with the default settings (memory mode, or a spool in
 *     SPOOL_DIR synced every 1000 ms or at every call), while this thread
 *     polls the reports: docs/s from the first produce to the last report.
 *     EXTRA: more producer settings, JSON members ("\"maxQueueBytes\":1000000").
 *   bench_produce mwrite PORT INDEX COLLECTION N
 *     the same N documents in one kuzzle_mwrite (the yardstick).
 *   bench_produce fill DEAD_PORT INDEX COLLECTION N SPOOL_DIR
 *     a spool backlog: N documents produced one by one into a producer on
 *     SPOOL_DIR (default settings) whose client cannot reach Kuzzle, then
 *     closed: they stay on disk for drain.
 *   bench_produce drain PORT INDEX COLLECTION N SPOOL_DIR [POLL_MAX]
 *     a new process opens a producer on that spool with Kuzzle reachable
 *     and polls (POLL_MAX reports at a time, default 100000) until N final
 *     reports: docs/s from the open to the last report, peak RSS (VmHWM,
 *     and VmRSS sampled at each poll), then the stored count.
 *
 * deliver, mwrite and drain delete and create INDEX and create COLLECTION first.
 * Documents: {"_id":"gw1-00000000","body":{"sensor":"s-12","temp":21.5,
 * "ts":1733000000000}} with the id counting up (noids: without the _id).
 * The id's digits are counted up in place in one buffer, so the loop times
 * the library, not snprintf. Peak RSS: getrusage's ru_maxrss (this process
 * is started by a shell, so it does not inherit a big parent's).
 */
#define _POSIX_C_SOURCE 200809L

#include <kuzzle.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define BODY "{\"sensor\":\"s-12\",\"temp\":21.5,\"ts\":1733000000000}"
#define WITH_ID "{\"_id\":\"gw1-00000000\",\"body\":" BODY "}"
#define WITHOUT_ID "{\"body\":" BODY "}"
/* Where the 8 digits of the id start in WITH_ID. */
#define DIGITS 12

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 +
         (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
}

static double peak_rss_mb(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)r.ru_maxrss / 1024.0;
}

/* Writes document number i's id into doc (a copy of WITH_ID). */
static void set_id(char *doc, long i) {
  for (int k = DIGITS + 7; k >= DIGITS; k--, i /= 10) doc[k] = (char)('0' + i % 10);
}

/* The next id, counted up in place (the common case touches one byte). */
static void next_id(char *doc) {
  for (int k = DIGITS + 7; k >= DIGITS; k--) {
    if (doc[k] != '9') {
      doc[k]++;
      return;
    }
    doc[k] = '0';
  }
}

static kuzzle_client *connect_to(const char *config) {
  kuzzle_client *client = NULL;
  char *err = NULL;
  if (kuzzle_connect(config, &client, &err) != KUZZLE_OK) {
    fprintf(stderr, "connect (%s): %s\n", config, err ? err : "?");
    kuzzle_free_result(err);
    exit(2);
  }
  return client;
}

static int query(kuzzle_client *client, const char *request, int quiet) {
  char *result = NULL;
  kuzzle_status st = kuzzle_query(client, request, &result);
  if (st != KUZZLE_OK && !quiet) fprintf(stderr, "%s: %s\n", request, result ? result : "?");
  kuzzle_free_result(result);
  return st == KUZZLE_OK;
}

/* An empty collection, in an index of its own (the in-memory storage does
 * not grow from run to run). */
static void fresh_collection(kuzzle_client *client, const char *index, const char *collection) {
  char req[512];
  snprintf(req, sizeof req, "{\"controller\":\"index\",\"action\":\"delete\",\"index\":\"%s\"}", index);
  query(client, req, 1);
  snprintf(req, sizeof req, "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}", index);
  if (!query(client, req, 0)) exit(2);
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"create\",\"index\":\"%s\","
           "\"collection\":\"%s\"}",
           index, collection);
  if (!query(client, req, 0)) exit(2);
}

static kuzzle_producer *open_producer(kuzzle_client *client, const char *config) {
  kuzzle_producer *p = NULL;
  char *err = NULL;
  if (kuzzle_producer_open(client, config, &p, &err) != KUZZLE_OK) {
    fprintf(stderr, "producer_open (%s): %s\n", config, err ? err : "?");
    kuzzle_free_result(err);
    exit(2);
  }
  return p;
}

/* A number after "key": in a JSON text (-1 if absent). */
static long long json_num(const char *json, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(json, pat);
  return p ? atoll(p + strlen(pat)) : -1;
}

static int enqueue(int argc, char **argv) {
  if (argc != 5) return -1;
  int port = atoi(argv[2]);
  long n = atol(argv[3]);
  int ids = strcmp(argv[4], "ids") == 0;
  char cfg[256];
  snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d,\"lazyConnect\":true}", port);
  kuzzle_client *client = connect_to(cfg);
  /* Nothing leaves: no linger expires, no batch fills before the last
   * document (batchDocuments' top is 1,000,000), the queue holds them all. */
  snprintf(cfg, sizeof cfg,
           "{\"lingerMs\":1000000,\"batchDocuments\":1000000,\"maxQueueDocuments\":%ld,"
           "\"maxQueueBytes\":17179869184,\"whenFull\":\"reject\"}",
           n + 1);
  kuzzle_producer *p = open_producer(client, cfg);
  char doc[sizeof WITH_ID];
  strcpy(doc, ids ? WITH_ID : WITHOUT_ID);
  if (ids) set_id(doc, 0);
  double rss0 = peak_rss_mb(), c0 = cpu_seconds(), t0 = now();
  for (long i = 0; i < n; i++) {
    kuzzle_status st = kuzzle_produce(p, "pbench", "c", doc, NULL);
    if (st != KUZZLE_OK) {
      fprintf(stderr, "produce %ld: %s: %s\n", i, kuzzle_status_str(st), kuzzle_produce_error());
      return 1;
    }
    if (ids) next_id(doc);
  }
  double t1 = now(), c1 = cpu_seconds();
  char *stats = NULL;
  kuzzle_producer_stats(p, &stats);
  long long accepted = json_num(stats, "accepted"), waiting = json_num(stats, "waiting");
  kuzzle_free_result(stats);
  printf("{\"case\":\"enqueue %s\",\"docs\":%ld,\"seconds\":%.4f,\"docs_per_s\":%.0f,"
         "\"ns_per_call\":%.1f,\"cpu_us_per_doc\":%.3f,\"accepted\":%lld,\"waiting\":%lld,"
         "\"rss_before_mb\":%.1f,\"peak_rss_mb\":%.1f,\"version\":\"%s\"}\n",
         ids ? "ids" : "noids", n, t1 - t0, (double)n / (t1 - t0), (t1 - t0) * 1e9 / (double)n,
         (c1 - c0) * 1e6 / (double)n, accepted, waiting, rss0, peak_rss_mb(), kuzzle_version());
  fflush(stdout);
  /* Not timed, not waited for: the delivery thread would now try the
   * unreachable Kuzzle with the whole queue; exiting ends it. */
  return accepted == n && waiting == n ? 0 : 1;
}

struct job {
  kuzzle_producer *p;
  const char *index, *collection;
  long first, count;
  int failed;
  double end; /* when its last produce returned */
};

static void *produce_share(void *arg) {
  struct job *j = arg;
  char doc[sizeof WITH_ID];
  strcpy(doc, WITH_ID);
  set_id(doc, j->first);
  for (long i = 0; i < j->count; i++) {
    kuzzle_status st = kuzzle_produce(j->p, j->index, j->collection, doc, NULL);
    if (st != KUZZLE_OK) {
      fprintf(stderr, "produce: %s: %s\n", kuzzle_status_str(st), kuzzle_produce_error());
      j->failed = 1;
      return NULL;
    }
    next_id(doc);
  }
  j->end = now();
  return NULL;
}

static long count(const char *s, const char *pat) {
  long k = 0;
  for (const char *p = s; (p = strstr(p, pat)); p += strlen(pat)) k++;
  return k;
}

static int deliver(int argc, char **argv) {
  if (argc != 9 && argc != 10) return -1;
  int port = atoi(argv[2]);
  const char *index = argv[3], *collection = argv[4], *mode = argv[6], *dir = argv[8];
  long n = atol(argv[5]);
  int threads = atoi(argv[7]);
  if (threads < 1 || threads > 64) return -1;
  char cfg[1024];
  snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d}", port);
  kuzzle_client *client = connect_to(cfg);
  fresh_collection(client, index, collection);
  /* The defaults, but for the spool asked for (and EXTRA). */
  const char *extra = argc == 10 ? argv[9] : "";
  const char *sep = *extra ? "," : "";
  if (strcmp(mode, "memory") == 0)
    snprintf(cfg, sizeof cfg, "{%s}", extra);
  else if (strcmp(mode, "interval") == 0)
    snprintf(cfg, sizeof cfg, "{\"spoolDir\":\"%s\",\"spoolSync\":1000%s%s}", dir, sep, extra);
  else if (strcmp(mode, "always") == 0)
    snprintf(cfg, sizeof cfg, "{\"spoolDir\":\"%s\",\"spoolSync\":\"always\"%s%s}", dir, sep, extra);
  else
    return -1;
  kuzzle_producer *p = open_producer(client, cfg);

  struct job jobs[64];
  pthread_t tids[64];
  double rss0 = peak_rss_mb(), c0 = cpu_seconds(), t0 = now();
  for (int t = 0; t < threads; t++) {
    long share = n / threads, first = t * share;
    jobs[t] = (struct job){p, index, collection, first, t == threads - 1 ? n - first : share, 0, 0};
    if (pthread_create(&tids[t], NULL, produce_share, &jobs[t])) {
      fprintf(stderr, "pthread_create failed\n");
      return 2;
    }
  }
  /* Reports, polled here while the producers run, many at a time. */
  long ok = 0, failed = 0, polls = 0;
  double deadline = t0 + 300;
  while (ok + failed < n && now() < deadline) {
    char *reports = NULL;
    kuzzle_status st = kuzzle_producer_poll(p, 100000, 1000, &reports);
    if (st != KUZZLE_OK) {
      fprintf(stderr, "poll: %s: %s\n", kuzzle_status_str(st), reports ? reports : "?");
      kuzzle_free_result(reports);
      break;
    }
    long bad_now = count(reports, "\"ok\":false");
    ok += count(reports, "\"ok\":true");
    if (bad_now && !failed) fprintf(stderr, "failures: %.300s\n", reports);
    failed += bad_now;
    polls++;
    kuzzle_free_result(reports);
  }
  double t1 = now(), c1 = cpu_seconds();
  int bad = 0;
  double produced = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tids[t], NULL);
    bad |= jobs[t].failed;
    if (jobs[t].end > produced) produced = jobs[t].end;
  }
  char *stats = NULL;
  kuzzle_producer_stats(p, &stats);
  long long fsyncs = json_num(stats, "fsyncs"), written = json_num(stats, "bytesWritten"),
            retried = json_num(stats, "retriedBatches");
  double tc = now();
  char *left = NULL;
  kuzzle_status cst = kuzzle_producer_close(p, 10000, &left);
  double close_s = now() - tc;
  kuzzle_free_result(left);
  double secs = t1 - t0;
  printf("{\"case\":\"%s x%d\",\"docs\":%ld,\"ok\":%ld,\"failed\":%ld,\"seconds\":%.4f,"
         "\"docs_per_s\":%.0f,\"produce_s\":%.4f,\"cpu_us_per_doc\":%.3f,\"polls\":%ld,\"retried_batches\":%lld,"
         "\"fsyncs\":%lld,\"fsyncs_per_s\":%.1f,\"bytes_written\":%lld,\"bytes_per_doc\":%.1f,"
         "\"close_s\":%.3f,\"rss_before_mb\":%.1f,\"peak_rss_mb\":%.1f,\"stats\":%s}\n",
         mode, threads, n, ok, failed, secs, (double)ok / secs, produced - t0, (c1 - c0) * 1e6 / (double)n, polls,
         retried, fsyncs, fsyncs >= 0 ? (double)fsyncs / secs : -1.0, written,
         written >= 0 ? (double)written / (double)n : -1.0, close_s, rss0, peak_rss_mb(), stats);
  kuzzle_free_result(stats);
  kuzzle_disconnect(client);
  return ok == n && !bad && cst == KUZZLE_OK ? 0 : 1;
}

static int mwrite(int argc, char **argv) {
  if (argc != 6) return -1;
  int port = atoi(argv[2]);
  const char *index = argv[3], *collection = argv[4];
  long n = atol(argv[5]);
  size_t cap = (size_t)n * (sizeof WITH_ID + 1) + 16, len = 0;
  char *docs = malloc(cap), doc[sizeof WITH_ID];
  if (!docs) return 2;
  strcpy(doc, WITH_ID);
  set_id(doc, 0);
  docs[len++] = '[';
  for (long i = 0; i < n; i++, next_id(doc)) {
    if (i) docs[len++] = ',';
    memcpy(docs + len, doc, sizeof WITH_ID - 1);
    len += sizeof WITH_ID - 1;
  }
  docs[len++] = ']';
  docs[len] = '\0';
  char cfg[256];
  snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d}", port);
  kuzzle_client *client = connect_to(cfg);
  fresh_collection(client, index, collection);
  double rss0 = peak_rss_mb(), c0 = cpu_seconds(), t0 = now();
  char *result = NULL;
  /* As the producer sends (source:false): successes without _source. */
  kuzzle_status st = kuzzle_mwrite(client, index, collection, docs, "{\"source\":false}", &result);
  double t1 = now(), c1 = cpu_seconds();
  const char *errs = strstr(result, "],\"errors\":[");
  long ok = 0;
  for (const char *p = result; (p = strstr(p, "{\"_id\":")) && (!errs || p < errs); p++) ok++;
  if (st != KUZZLE_OK) fprintf(stderr, "mwrite: %s: %.300s\n", kuzzle_status_str(st), errs ? errs : result);
  printf("{\"case\":\"mwrite\",\"docs\":%ld,\"ok\":%ld,\"seconds\":%.4f,\"docs_per_s\":%.0f,"
         "\"cpu_us_per_doc\":%.3f,\"input_mb\":%.1f,\"rss_before_mb\":%.1f,\"peak_rss_mb\":%.1f}\n",
         n, ok, t1 - t0, (double)ok / (t1 - t0), (c1 - c0) * 1e6 / (double)n,
         (double)len / 1048576.0, rss0, peak_rss_mb());
  kuzzle_free_result(result);
  kuzzle_disconnect(client);
  free(docs);
  return st == KUZZLE_OK && ok == n ? 0 : 1;
}

/* A "Vm...:" line of /proc/self/status, in MB (-1 if unreadable). */
static double vm_mb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  size_t k = strlen(key);
  double mb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, k) == 0 && line[k] == ':') {
      mb = atof(line + k + 1) / 1024.0; /* in kB there */
      break;
    }
  fclose(f);
  return mb;
}

/* Bytes of the regular files in dir (the spool keeps no subdirectory). */
static long long dir_bytes(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  long long total = 0;
  char path[4096];
  struct dirent *e;
  while ((e = readdir(d))) {
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) total += st.st_size;
  }
  closedir(d);
  return total;
}

static int fill(int argc, char **argv) {
  if (argc != 7) return -1;
  int port = atoi(argv[2]);
  const char *index = argv[3], *collection = argv[4], *dir = argv[6];
  long n = atol(argv[5]);
  char cfg[1024];
  snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d,\"lazyConnect\":true}", port);
  kuzzle_client *client = connect_to(cfg);
  snprintf(cfg, sizeof cfg, "{\"spoolDir\":\"%s\"}", dir);
  kuzzle_producer *p = open_producer(client, cfg);
  char doc[sizeof WITH_ID];
  strcpy(doc, WITH_ID);
  set_id(doc, 0);
  double t0 = now();
  for (long i = 0; i < n; i++, next_id(doc)) {
    kuzzle_status st = kuzzle_produce(p, index, collection, doc, NULL);
    if (st != KUZZLE_OK) {
      fprintf(stderr, "produce %ld: %s: %s\n", i, kuzzle_status_str(st), kuzzle_produce_error());
      return 1;
    }
  }
  double t1 = now();
  char *stats = NULL;
  kuzzle_producer_stats(p, &stats);
  long long pending = json_num(stats, "pending"), delivered = json_num(stats, "delivered");
  kuzzle_free_result(stats);
  /* Nothing to wait for (Kuzzle is out of reach): what is on disk stays. */
  kuzzle_producer_close(p, 0, NULL);
  kuzzle_disconnect(client);
  printf("{\"case\":\"fill\",\"docs\":%ld,\"seconds\":%.4f,\"docs_per_s\":%.0f,\"pending\":%lld,"
         "\"delivered\":%lld,\"spool_bytes\":%lld,\"peak_rss_mb\":%.1f}\n",
         n, t1 - t0, (double)n / (t1 - t0), pending, delivered, dir_bytes(dir), peak_rss_mb());
  return pending == n && delivered == 0 ? 0 : 1;
}

static int drain(int argc, char **argv) {
  if (argc != 7 && argc != 8) return -1;
  int port = atoi(argv[2]);
  const char *index = argv[3], *collection = argv[4], *dir = argv[6];
  long n = atol(argv[5]);
  long poll_max = argc == 8 ? atol(argv[7]) : 100000;
  char cfg[1024];
  snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d}", port);
  kuzzle_client *client = connect_to(cfg);
  fresh_collection(client, index, collection);
  long long spool0 = dir_bytes(dir);
  double rss0 = vm_mb("VmRSS"), c0 = cpu_seconds(), t0 = now();
  snprintf(cfg, sizeof cfg, "{\"spoolDir\":\"%s\"}", dir);
  kuzzle_producer *p = open_producer(client, cfg);
  double opened = now() - t0, max_rss = vm_mb("VmRSS");
  long ok = 0, failed = 0, polls = 0;
  double deadline = t0 + 3600, first_report = 0;
  while (ok + failed < n && now() < deadline) {
    char *reports = NULL;
    kuzzle_status st = kuzzle_producer_poll(p, (size_t)poll_max, 1000, &reports);
    if (st != KUZZLE_OK) {
      fprintf(stderr, "poll: %s: %s\n", kuzzle_status_str(st), reports ? reports : "?");
      kuzzle_free_result(reports);
      break;
    }
    long bad_now = count(reports, "\"ok\":false");
    long ok_now = count(reports, "\"ok\":true");
    if (bad_now && !failed) fprintf(stderr, "failures: %.300s\n", reports);
    if (ok_now + bad_now && first_report == 0) first_report = now() - t0;
    ok += ok_now;
    failed += bad_now;
    polls++;
    /* Sampled while this poll's text is still held: the app's share too. */
    double rss = vm_mb("VmRSS");
    if (rss > max_rss) max_rss = rss;
    kuzzle_free_result(reports);
  }
  double t1 = now(), c1 = cpu_seconds();
  char *stats = NULL;
  kuzzle_producer_stats(p, &stats);
  long long retried = json_num(stats, "retriedBatches");
  kuzzle_free_result(stats);
  kuzzle_status cst = kuzzle_producer_close(p, 10000, NULL);
  double hwm = vm_mb("VmHWM");
  char req[512], *result = NULL;
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"refresh\",\"index\":\"%s\",\"collection\":\"%s\"}",
           index, collection);
  query(client, req, 0);
  snprintf(req, sizeof req,
           "{\"controller\":\"document\",\"action\":\"count\",\"index\":\"%s\",\"collection\":\"%s\","
           "\"body\":{}}",
           index, collection);
  long long stored = -1;
  if (kuzzle_query(client, req, &result) == KUZZLE_OK) stored = json_num(result, "count");
  else fprintf(stderr, "count: %s\n", result ? result : "?");
  kuzzle_free_result(result);
  double secs = t1 - t0;
  printf("{\"case\":\"drain\",\"docs\":%ld,\"ok\":%ld,\"failed\":%ld,\"stored\":%lld,\"seconds\":%.4f,"
         "\"docs_per_s\":%.0f,\"open_s\":%.3f,\"first_report_s\":%.3f,\"cpu_us_per_doc\":%.3f,"
         "\"polls\":%ld,\"poll_max\":%ld,\"retried_batches\":%lld,\"spool_bytes\":%lld,"
         "\"spool_bytes_after\":%lld,\"rss_before_mb\":%.1f,\"max_sampled_rss_mb\":%.1f,"
         "\"peak_rss_mb\":%.1f}\n",
         n, ok, failed, stored, secs, (double)ok / secs, opened, first_report,
         (c1 - c0) * 1e6 / (double)n, polls, poll_max, retried, spool0, dir_bytes(dir), rss0, max_rss,
         hwm);
  kuzzle_disconnect(client);
  return ok == n && failed == 0 && stored == n && cst == KUZZLE_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  int rc = -1;
  if (argc >= 2 && strcmp(argv[1], "enqueue") == 0) rc = enqueue(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "deliver") == 0) rc = deliver(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "mwrite") == 0) rc = mwrite(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "fill") == 0) rc = fill(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "drain") == 0) rc = drain(argc, argv);
  if (rc == -1) {
    fprintf(stderr,
            "usage: bench_produce enqueue DEAD_PORT N ids|noids\n"
            "       bench_produce deliver PORT INDEX COLLECTION N memory|interval|always THREADS "
            "SPOOL_DIR [EXTRA]\n"
            "       bench_produce mwrite PORT INDEX COLLECTION N\n"
            "       bench_produce fill DEAD_PORT INDEX COLLECTION N SPOOL_DIR\n"
            "       bench_produce drain PORT INDEX COLLECTION N SPOOL_DIR [POLL_MAX]\n");
    return 2;
  }
  return rc;
}
