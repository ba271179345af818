"""The benchmark's documents, exactly as bench_mwrite.c and sdk_bench.js
generate them (checked by run.py through bench_mwrite's BENCH_DUMP).

small: ~80-byte sensor readings   {"_id":"gw1-%08d","body":{"sensor","temp","hum","ts"}}
big:   ~2 KB documents            {"_id":"gw1-%08d","body":{"sensor","seq","note"}}
       the note is words of WORDS picked by xorshift32, cut at 1900 + i % 50
       characters: it compresses like text (~4x with gzip).
"""

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green "
    "blue cyan magenta yellow black white north south east west up down left right zero one "
    "two three four five six seven eight nine sensor gateway battery signal voltage current "
    "pressure humidity temperature level status error"
).split()
assert len(WORDS) == 64


def big_note(i):
    want = 1900 + i % 50
    s = (i * 2654435761 + 1) & 0xFFFFFFFF or 1
    out = []
    n = 0
    while n < want:
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        w = WORDS[s % 64]
        out.append(w)
        n += len(w) + (1 if n else 0)
    return " ".join(out)[:want]


def body_json(i, shape):
    if shape == "big":
        return '{"sensor":"s%03d","seq":%d,"note":"%s"}' % (i % 500, i, big_note(i))
    return '{"sensor":"s%03d","temp":%.1f,"hum":%d,"ts":%d}' % (
        i % 500, 15.0 + (i % 200) / 10.0, 30 + i % 50, 1764000000 + i)


def doc_json(i, shape, ids=True):
    """One document as JSON text, with the client id "gw1-%08d" or without id."""
    if ids:
        return '{"_id":"gw1-%08d","body":%s}' % (i, body_json(i, shape))
    return '{"body":%s}' % body_json(i, shape)


def docs_json(n, shape, ids=True, start=0):
    return "[" + ",".join(doc_json(i, shape, ids) for i in range(start, start + n)) + "]"
