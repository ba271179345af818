/* Smallest libkuzzle consumer, built by scripts/test-install.sh against an
 * installed libkuzzle (pkg-config and CMake, shared and static). Needs no
 * Kuzzle server: it only calls what works offline. Exit status 0 = all good. */
#include <kuzzle.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  int failures = 0;

  printf("kuzzle_version: %s\n", kuzzle_version());
  printf("KUZZLE_PARTIAL: %s\n", kuzzle_status_str(KUZZLE_PARTIAL));

  if (strcmp(KUZZLE_VERSION, kuzzle_version()) != 0) {
    fprintf(stderr, "header version %s != library version %s\n", KUZZLE_VERSION,
            kuzzle_version());
    failures++;
  }

  /* An unknown configuration key is refused before any network access. */
  kuzzle_client *client = NULL;
  char *err = NULL;
  kuzzle_status st = kuzzle_connect("{\"noSuchKey\":1}", &client, &err);
  printf("connect with an unknown key: %s: %s\n", kuzzle_status_str(st),
         err ? err : "(no error JSON)");
  if (st != KUZZLE_ERR_INVALID_ARGUMENT || client != NULL || err == NULL) {
    fprintf(stderr, "expected KUZZLE_ERR_INVALID_ARGUMENT, a NULL client and an error JSON\n");
    failures++;
  }
  kuzzle_free_result(err);
  kuzzle_disconnect(client); /* NULL: a no-op */

  printf("%s\n", failures == 0 ? "hello: ok" : "hello: FAILED");
  return failures == 0 ? 0 : 1;
}
