// Proves kuzzle.h is C++-clean: included as is, called from C++17 with RAII
// owners for the library's strings and handle. No server needed.
#include <kuzzle.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct ResultDeleter {
  void operator()(char *s) const { kuzzle_free_result(s); }
};
using Result = std::unique_ptr<char, ResultDeleter>;

struct ClientDeleter {
  void operator()(kuzzle_client *c) const { kuzzle_disconnect(c); }
};
using Client = std::unique_ptr<kuzzle_client, ClientDeleter>;

int failures = 0;
int checks = 0;

void check(bool ok, const std::string &what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

}  // namespace

int main() {
  check(std::string(kuzzle_version()) == KUZZLE_VERSION, "version");
  check(std::strcmp(kuzzle_status_str(KUZZLE_PARTIAL), "unknown status") != 0,
        "status string");

  kuzzle_client *raw = nullptr;
  char *err = nullptr;
  kuzzle_status st = kuzzle_connect("{\"port\":\"not a number\"}", &raw, &err);
  Result error(err);
  Client client(raw);
  check(st == KUZZLE_ERR_INVALID_ARGUMENT, "ill-typed port is rejected");
  check(!client, "no handle on failure");
  check(error && std::strstr(error.get(), "port") != nullptr,
        "error names the key");

  char *out = nullptr;
  st = kuzzle_mwrite(client.get(), "i", "c", "[]", nullptr, &out);
  Result result(out);
  check(st == KUZZLE_ERR_INVALID_ARGUMENT && result, "NULL client from C++");

  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
