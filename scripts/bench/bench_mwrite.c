/*
 * bench_mwrite: one kuzzle_mwrite of N generated documents through the C ABI,
 * timed; prints one JSON line with docs/s, client CPU per document (user+sys
 * of this process around the call, and user alone), peak RSS, and the
 * client's kuzzle_client_stats after the call ("stats") and just before it
 * ("stats_before").
 *
 *   bench_mwrite PORT INDEX N SHAPE CONFIG_JSON [OPTIONS_JSON]
 *   SHAPE: small (~80-byte sensor readings, client ids "gw1-00001234") or
 *          big (~2 KB documents, client ids; a "note" of words drawn from a
 *          64-word list by xorshift32, so it compresses like text, ~4x with
 *          gzip, not like a run of one letter)
 *
 * raw_load.py and sdk_bench.js generate exactly the same documents
 * (BENCH_DUMP=FILE writes them to FILE instead of sending them).
 */
#define _POSIX_C_SOURCE 200809L

#include <kuzzle.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* CPU seconds of this process so far: user (the library's own work) and
 * sys (the kernel's: sockets, page faults, threads). */
static double cpu_user, cpu_sys;
static double cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  cpu_user = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6;
  cpu_sys = (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec / 1e6;
  return cpu_user + cpu_sys;
}

/* The "big" shape's note: words from WORDS picked by xorshift32 seeded from
 * the document number, cut at 1900 + i % 50 characters. */
static const char *WORDS[64] = {
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "red", "green", "blue", "cyan", "magenta", "yellow",
    "black", "white", "north", "south", "east", "west", "up", "down",
    "left", "right", "zero", "one", "two", "three", "four", "five",
    "six", "seven", "eight", "nine", "sensor", "gateway", "battery", "signal",
    "voltage", "current", "pressure", "humidity", "temperature", "level", "status", "error"};

static size_t big_note(long i, char *out) {
  size_t want = 1900 + (size_t)(i % 50), n = 0;
  uint32_t s = (uint32_t)((uint64_t)i * 2654435761u + 1u);
  if (!s) s = 1;
  while (n < want) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    const char *w = WORDS[s % 64];
    if (n) out[n++] = ' ';
    for (; *w && n < want; w++) out[n++] = *w;
  }
  out[want] = '\0';
  return want;
}

/* Peak RSS of this process, in KiB: VmHWM from /proc/self/status. Not
 * getrusage's ru_maxrss: on Linux that one keeps the parent's RSS at fork
 * time across exec, so a child of a big process reports the parent's size. */
static long peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (f) {
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "VmHWM:", 6) == 0) {
        kb = atol(line + 6);
        break;
      }
    fclose(f);
  }
  if (kb < 0) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    kb = r.ru_maxrss;
  }
  return kb;
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: bench_mwrite PORT INDEX N small|big CONFIG_JSON [OPTIONS_JSON]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  const char *index = argv[2];
  long n = atol(argv[3]);
  int big = strcmp(argv[4], "big") == 0;
  size_t per = big ? 2200 : 120, cap = (size_t)n * per + 16, len = 0;
  char *docs = malloc(cap);
  char note[2001];
  if (!docs) return 2;
  docs[len++] = '[';
  for (long i = 0; i < n; i++) {
    if (big) {
      big_note(i, note);
      len += (size_t)snprintf(docs + len, cap - len,
                              "%s{\"_id\":\"gw1-%08ld\",\"body\":{\"sensor\":\"s%03ld\","
                              "\"seq\":%ld,\"note\":\"%s\"}}",
                              i ? "," : "", i, i % 500, i, note);
    } else
      len += (size_t)snprintf(docs + len, cap - len,
                              "%s{\"_id\":\"gw1-%08ld\",\"body\":{\"sensor\":\"s%03ld\","
                              "\"temp\":%.1f,\"hum\":%ld,\"ts\":%ld}}",
                              i ? "," : "", i, i % 500, 15.0 + (double)(i % 200) / 10.0,
                              30 + i % 50, 1764000000L + i);
  }
  docs[len++] = ']';
  docs[len] = '\0';

  /* BENCH_DUMP=FILE: write the generated documents there and stop (used to
   * check that the other clients generate the very same documents). */
  const char *dump = getenv("BENCH_DUMP");
  if (dump && *dump) {
    FILE *f = fopen(dump, "wb");
    int bad = !f || fwrite(docs, 1, len, f) != len;
    if (f && fclose(f)) bad = 1;
    free(docs);
    return bad ? 2 : 0;
  }

  /* The config JSON gets host and port added in front, unless it names
   * its "hosts" (then PORT is not used). */
  char cfg[1024];
  const char *extra = argv[5];
  while (*extra == ' ' || *extra == '{') extra++;
  if (strstr(extra, "\"hosts\""))
    snprintf(cfg, sizeof cfg, "{%s", extra);
  else
    snprintf(cfg, sizeof cfg, "{\"host\":\"127.0.0.1\",\"port\":%d%s%s", port,
             *extra && *extra != '}' ? "," : "", *extra && *extra != '}' ? extra : "}");
  kuzzle_client *client = NULL;
  char *err = NULL;
  if (kuzzle_connect(cfg, &client, &err) != KUZZLE_OK) {
    fprintf(stderr, "connect (%s): %s\n", cfg, err);
    return 2;
  }
  /* BENCH_WARMUP=K: K untimed calls with the same documents first, on the
   * same client (a long-running gateway's client, its adaptive limits
   * already learnt). */
  const char *warmup = getenv("BENCH_WARMUP");
  for (long k = warmup ? atol(warmup) : 0; k > 0; k--) {
    char *r = NULL;
    kuzzle_status w = kuzzle_mwrite(client, index, "c", docs, argc == 7 ? argv[6] : NULL, &r);
    kuzzle_free_result(r);
    if (w != KUZZLE_OK) {
      fprintf(stderr, "warm-up mwrite: %s\n", kuzzle_status_str(w));
      return 1;
    }
  }
  /* The stats before the timed call too: with BENCH_WARMUP they count the
   * warm-up calls, which the timed call's share (after - before) leaves out. */
  char *stats_before = NULL;
  kuzzle_client_stats(client, &stats_before);
  long rss_before = peak_rss_kb();
  /* BENCH_TIMED=K: K timed calls in a row (1 by default), the figures for
   * all of them: a long-lived client's steady state, where "auto" settings
   * try other values now and then. */
  const char *timed_env = getenv("BENCH_TIMED");
  long timed = timed_env && atol(timed_env) > 0 ? atol(timed_env) : 1;
  double c0 = cpu(), t0 = now(), u0 = cpu_user;
  char *result = NULL;
  kuzzle_status st = KUZZLE_OK;
  long ok = 0;
  for (long k = 0; k < timed && st == KUZZLE_OK; k++) {
    kuzzle_free_result(result);
    result = NULL;
    st = kuzzle_mwrite(client, index, "c", docs, argc == 7 ? argv[6] : NULL, &result);
    /* Count successes without a JSON parser: each one starts with {"_id": */
    const char *errs = strstr(result, "],\"errors\":[");
    for (const char *p = result; (p = strstr(p, "{\"_id\":")) && (!errs || p < errs); p++) ok++;
    if (st != KUZZLE_OK)
      fprintf(stderr, "mwrite: %s: %.300s\n", kuzzle_status_str(st),
              errs ? errs : result);
  }
  double t1 = now(), c1 = cpu(), u1 = cpu_user;
  char *stats = NULL;
  kuzzle_client_stats(client, &stats);
  printf("{\"stats\":%s,\"stats_before\":%s,\"docs\":%ld,\"written\":%ld,\"seconds\":%.4f,\"docs_per_s\":%.0f,"
         "\"cpu_us_per_doc\":%.3f,\"user_us_per_doc\":%.3f,\"peak_rss_mb\":%.1f,\"rss_before_mb\":%.1f,"
         "\"input_mb\":%.1f,\"result_mb\":%.1f,\"status\":\"%s\",\"version\":\"%s\"}\n",
         stats, stats_before, n, ok / timed, t1 - t0, (double)ok / (t1 - t0),
         (c1 - c0) * 1e6 / (double)(n * timed), (u1 - u0) * 1e6 / (double)(n * timed),
         (double)peak_rss_kb() / 1024.0, (double)rss_before / 1024.0,
         (double)len / 1048576.0, (double)strlen(result) / 1048576.0, kuzzle_status_str(st),
         kuzzle_version());
  kuzzle_free_result(stats);
  kuzzle_free_result(stats_before);
  kuzzle_free_result(result);
  kuzzle_disconnect(client);
  free(docs);
  return st == KUZZLE_OK ? 0 : 1;
}
