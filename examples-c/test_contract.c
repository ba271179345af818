/*
 * test_contract: the C API contract, from C, against a real Kuzzle.
 *
 *   test_contract HOST PORT
 *
 * Result ownership (every string freed with kuzzle_free_result; run under
 * valgrind in CI), every status code that can be triggered locally (all but
 * KUZZLE_ERR_INTERNAL, which only a libkuzzle bug returns), status strings,
 * NULL arguments. Ends with "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200809L

#include <kuzzle.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failed++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

static char config[256];

static kuzzle_client *connect_ok(void) {
  kuzzle_client *c = NULL;
  char *err = NULL;
  kuzzle_status st = kuzzle_connect(config, &c, &err);
  CHECK(st == KUZZLE_OK && c != NULL && err == NULL, "connect: %s %s",
        kuzzle_status_str(st), err ? err : "");
  kuzzle_free_result(err);
  return c;
}

/* A loopback listener that accepts connections and never answers. */
static int silent_listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(fd, 16) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
    return -1;
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_static_strings(void) {
  for (int s = KUZZLE_OK; s <= KUZZLE_ERR_SPOOL; s++) {
    const char *text = kuzzle_status_str(s);
    CHECK(text && *text && strcmp(text, "unknown status") != 0, "status %d", s);
  }
  CHECK(strcmp(kuzzle_status_str(13), "unknown status") == 0, "13");
  CHECK(strcmp(kuzzle_status_str(-1), "unknown status") == 0, "-1");
  CHECK(strcmp(kuzzle_version(), KUZZLE_VERSION) == 0, "version %s vs %s",
        kuzzle_version(), KUZZLE_VERSION);
  kuzzle_free_result(NULL);
  kuzzle_disconnect(NULL);
}

static void test_connect_errors(void) {
  kuzzle_client *c = (kuzzle_client *)&passed; /* must be reset to NULL */
  char *err = NULL;
  kuzzle_status st = kuzzle_connect(NULL, &c, &err);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && c == NULL && err, "NULL config");
  kuzzle_free_result(err);

  st = kuzzle_connect("{}", NULL, NULL);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT, "NULL out_client");

  st = kuzzle_connect("{\"hots\":\"x\"}", &c, &err);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && err && strstr(err, "hots"),
        "unknown key: %s", err ? err : "");
  kuzzle_free_result(err);

  st = kuzzle_connect("{\"host\":", &c, &err);
  CHECK(st == KUZZLE_ERR_JSON && err, "bad JSON");
  kuzzle_free_result(err);

  st = kuzzle_connect("{\"host\":\"\xff\"}", &c, &err);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && err && strstr(err, "UTF-8"),
        "non-UTF-8");
  kuzzle_free_result(err);

  /* Nothing listens on port 1 of loopback. */
  st = kuzzle_connect("{\"host\":\"127.0.0.1\",\"port\":1}", &c, &err);
  CHECK(st == KUZZLE_ERR_CONNECTION && c == NULL && err, "refused: %s",
        kuzzle_status_str(st));
  kuzzle_free_result(err);

  /* Error out-parameter is optional. */
  st = kuzzle_connect("{\"host\":\"127.0.0.1\",\"port\":1}", &c, NULL);
  CHECK(st == KUZZLE_ERR_CONNECTION, "refused without error out");

  int port = 0, fd = silent_listener(&port);
  CHECK(fd >= 0, "listener");
  char cfg[160];
  snprintf(cfg, sizeof cfg,
           "{\"host\":\"127.0.0.1\",\"port\":%d,\"timeoutMs\":300}", port);
  st = kuzzle_connect(cfg, &c, &err);
  CHECK(st == KUZZLE_ERR_TIMEOUT, "silent server: %s %s",
        kuzzle_status_str(st), err ? err : "");
  kuzzle_free_result(err);
  if (fd >= 0) close(fd);
}

static void test_mwrite(kuzzle_client *c) {
  char *out = NULL;
  char index[64];
  snprintf(index, sizeof index, "ctest-contract-%ld", (long)getpid());
  char req[256];
  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"create\",\"index\":\"%s\"}",
           index);
  CHECK(kuzzle_query(c, req, &out) == KUZZLE_OK, "index create: %s", out);
  kuzzle_free_result(out);
  snprintf(req, sizeof req,
           "{\"controller\":\"collection\",\"action\":\"create\",\"index\":"
           "\"%s\",\"collection\":\"c\"}",
           index);
  CHECK(kuzzle_query(c, req, &out) == KUZZLE_OK, "collection create: %s", out);
  kuzzle_free_result(out);

  kuzzle_status st = kuzzle_mwrite(
      c, index, "c", "[{\"_id\":\"a\",\"body\":{\"v\":1}},{\"body\":{\"v\":2}}]",
      NULL, &out);
  CHECK(st == KUZZLE_OK && strstr(out, "\"successes\":[{\"_id\":\"a\""),
        "mwrite ok: %s", out);
  kuzzle_free_result(out);

  st = kuzzle_mwrite(c, index, "c",
                     "[{\"_id\":\"b\",\"body\":{\"v\":1}},{\"_id\":\"x\"}]",
                     "{\"waitForRefresh\":true}", &out);
  CHECK(st == KUZZLE_PARTIAL && strstr(out, "body must be an object"),
        "partial: %s", out);
  kuzzle_free_result(out);

  st = kuzzle_mwrite(c, index, "c", "{\"not\":\"an array\"}", NULL, &out);
  CHECK(st == KUZZLE_ERR_JSON && strstr(out, "\"error\""), "json: %s", out);
  kuzzle_free_result(out);

  st = kuzzle_mwrite(c, index, "c", "[]", "{\"bogus\":1}", &out);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && strstr(out, "bogus"),
        "option: %s", out);
  kuzzle_free_result(out);

  st = kuzzle_mwrite(c, NULL, "c", "[]", NULL, &out);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && strstr(out, "index"), "NULL index");
  kuzzle_free_result(out);

  st = kuzzle_mwrite(NULL, index, "c", "[]", NULL, &out);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && out, "NULL client");
  kuzzle_free_result(out);

  st = kuzzle_mwrite(c, index, "c", "[]", NULL, NULL);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT, "NULL out");

  st = kuzzle_mwrite(c, "ctest-no-such-index", "c",
                     "[{\"_id\":\"a\",\"body\":{}}]", NULL, &out);
  CHECK(st == KUZZLE_ERR_SERVER && strstr(out, "services.storage.unknown_index"),
        "server error: %s", out);
  kuzzle_free_result(out);

  snprintf(req, sizeof req,
           "{\"controller\":\"document\",\"action\":\"count\",\"index\":\"%s\","
           "\"collection\":\"c\",\"body\":{}}",
           index);
  st = kuzzle_query(c, req, &out);
  CHECK(st == KUZZLE_OK && strstr(out, "\"count\":3"), "count: %s", out);
  kuzzle_free_result(out);

  st = kuzzle_query(c, "{\"action\":\"info\"}", &out);
  CHECK(st == KUZZLE_ERR_JSON, "query without controller");
  kuzzle_free_result(out);

  snprintf(req, sizeof req,
           "{\"controller\":\"index\",\"action\":\"delete\",\"index\":\"%s\"}",
           index);
  CHECK(kuzzle_query(c, req, &out) == KUZZLE_OK, "index delete: %s", out);
  kuzzle_free_result(out);
}

/* KUZZLE_ERR_TLS, KUZZLE_ERR_AUTH and KUZZLE_ERR_FORBIDDEN, on the local
 * stack: an unreadable caFile, an API key Kuzzle does not know, and a user
 * whose role may log in and read but not write. */
static void test_tls_auth_forbidden(kuzzle_client *admin) {
  char cfg[400], *err = NULL, *out = NULL;
  kuzzle_client *c = NULL;
  snprintf(cfg, sizeof cfg, "%.*s,\"ssl\":true,\"caFile\":\"/nonexistent/ca.pem\"}",
           (int)strlen(config) - 1, config);
  kuzzle_status st = kuzzle_connect(cfg, &c, &err);
  CHECK(st == KUZZLE_ERR_TLS && c == NULL, "TLS: %s %s", kuzzle_status_str(st),
        err ? err : "");
  kuzzle_free_result(err);

  snprintf(cfg, sizeof cfg, "%.*s,\"apiKey\":\"not-a-key\"}",
           (int)strlen(config) - 1, config);
  st = kuzzle_connect(cfg, &c, &err);
  CHECK(st == KUZZLE_ERR_AUTH && err && strstr(err, "\"status\":401") &&
            !strstr(err, "not-a-key"),
        "AUTH: %s %s", kuzzle_status_str(st), err ? err : "");
  kuzzle_free_result(err);

  const char *setup[] = {
      "{\"controller\":\"security\",\"action\":\"createOrReplaceRole\",\"_id\":"
      "\"ctest-reader\",\"body\":{\"controllers\":{\"auth\":{\"actions\":{\"*\":"
      "true}},\"document\":{\"actions\":{\"get\":true}}}}}",
      "{\"controller\":\"security\",\"action\":\"createOrReplaceProfile\",\"_id\":"
      "\"ctest-reader\",\"body\":{\"policies\":[{\"roleId\":\"ctest-reader\"}]}}",
  };
  for (size_t i = 0; i < 2; i++) {
    st = kuzzle_query(admin, setup[i], &out);
    CHECK(st == KUZZLE_OK, "security setup %zu: %s", i, out);
    kuzzle_free_result(out);
  }
  char user[64], req[512];
  snprintf(user, sizeof user, "ctest-reader-%ld", (long)getpid());
  snprintf(req, sizeof req,
           "{\"controller\":\"security\",\"action\":\"createUser\",\"_id\":\"%s\","
           "\"body\":{\"content\":{\"profileIds\":[\"ctest-reader\"]},"
           "\"credentials\":{\"local\":{\"username\":\"%s\",\"password\":"
           "\"Reader-Pass-1\"}}}}",
           user, user);
  st = kuzzle_query(admin, req, &out);
  CHECK(st == KUZZLE_OK, "createUser: %s", out);
  kuzzle_free_result(out);

  snprintf(cfg, sizeof cfg,
           "%.*s,\"username\":\"%s\",\"password\":\"Reader-Pass-1\"}",
           (int)strlen(config) - 1, config, user);
  st = kuzzle_connect(cfg, &c, &err);
  CHECK(st == KUZZLE_OK, "reader login: %s %s", kuzzle_status_str(st), err ? err : "");
  kuzzle_free_result(err);
  if (c) {
    st = kuzzle_mwrite(c, "ctest-anything", "c", "[{\"body\":{\"v\":1}}]", NULL, &out);
    CHECK(st == KUZZLE_ERR_FORBIDDEN && strstr(out, "\"status\":403"),
          "FORBIDDEN: %s %s", kuzzle_status_str(st), out);
    kuzzle_free_result(out);
    kuzzle_disconnect(c);
  }
  snprintf(req, sizeof req,
           "{\"controller\":\"security\",\"action\":\"deleteUser\",\"_id\":\"%s\"}",
           user);
  kuzzle_query(admin, req, &out);
  kuzzle_free_result(out);
}

static void test_info(kuzzle_client *c) {
  char *out = (char *)&passed; /* must be set */
  kuzzle_status st = kuzzle_client_info(c, &out);
  CHECK(st == KUZZLE_OK && out && strstr(out, "\"compression\":") &&
            strstr(out, "\"concurrency\":") && strstr(out, "\"auth\":\"anonymous\""),
        "info: %s", st == KUZZLE_OK && out ? out : "");
  kuzzle_free_result(out);
  st = kuzzle_client_info(NULL, &out);
  CHECK(st == KUZZLE_ERR_INVALID_ARGUMENT && out && strstr(out, "\"error\""),
        "info on NULL");
  kuzzle_free_result(out);
  CHECK(kuzzle_client_info(c, NULL) == KUZZLE_ERR_INVALID_ARGUMENT, "info, NULL out");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_contract HOST PORT\n");
    return 2;
  }
  snprintf(config, sizeof config, "{\"host\":\"%s\",\"port\":%d}", argv[1],
           atoi(argv[2]));
  test_static_strings();
  test_connect_errors();
  kuzzle_client *c = connect_ok();
  if (c) {
    test_info(c);
    test_mwrite(c);
    test_tls_auth_forbidden(c);
  }
  kuzzle_disconnect(c);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
