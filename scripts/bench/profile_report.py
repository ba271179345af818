#!/usr/bin/env python3
"""Prints a callgrind profile of libkuzzle as instructions per document, by
part (the JSON scanner, the engine, HTTP, copies, gzip, allocator...).

    profile_report.py CALLGRIND_OUT N_DOCUMENTS
"""
import re
import subprocess
import sys

# First match wins: (part, pattern on "file:function [object]").
PARTS = [
    ("JSON scanner (src/json.rs)", r"src/json\.rs|kuzzle::json::"),
    ("serde_json", r"serde_json|serde_core|serde::|serde-"),
    ("gzip (flate2, zlib-rs)", r"flate2|zlib_rs|zlib-rs|crc32|adler"),
    ("HTTP (ureq, sockets)", r"ureq|http::|httparse|std::net|std::io|kuzzle::transport::"),
    ("copies (memcpy, memmove)", r"memcpy|memmove|mempcpy"),
    ("zeroing (memset)", r"memset"),
    ("byte searches (memchr, NUL check)", r"memchr|strlen"),
    ("allocator (malloc, free)", r"malloc|free|realloc|_int_|__rust_(alloc|dealloc|realloc)|__rdl_"),
    ("threads (spawn, join, locks)", r"pthread|clone|futex|std::thread|lifecycle|thread_start|Mutex|mmap|munmap|mprotect"),
    ("mWrite engine (src/mwrite/)", r"kuzzle::mwrite::"),
    ("UTF-8 checks", r"from_utf8|validations\.rs"),
    ("C boundary (src/ffi.rs)", r"kuzzle::ffi::|kuzzle_mwrite"),
]


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
                          check=True, capture_output=True, text=True).stdout
    total, parts, other = 0, {name: 0 for name, _ in PARTS}, []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.*)$", line)
        if not m or "PROGRAM TOTALS" in line or "=>" in line or ":" not in m.group(2):
            continue
        count, name = int(m.group(1).replace(",", "")), m.group(2)
        total += count
        for part, pattern in PARTS:
            if re.search(pattern, name):
                parts[part] += count
                break
        else:
            other.append((count, name))
    other_sum = sum(c for c, _ in other)
    print("libkuzzle, one kuzzle_mwrite of %d small documents: %.0f instructions per document"
          % (n, total / n))
    print()
    print("| part | instructions / doc | share |")
    print("|---|---:|---:|")
    for part, count in sorted(parts.items(), key=lambda kv: -kv[1]):
        if count:
            print("| %s | %.0f | %.0f%% |" % (part, count / n, 100.0 * count / total))
    print("| other | %.0f | %.0f%% |" % (other_sum / n, 100.0 * other_sum / max(total, 1)))
    print()
    print("largest 'other' entries:")
    for count, name in sorted(other, reverse=True)[:8]:
        print("  %8.0f /doc  %s" % (count / n, name[:110]))


if __name__ == "__main__":
    main()
