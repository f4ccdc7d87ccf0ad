#!/usr/bin/env python3
"""Writes the seed corpus (tests/fuzz/corpus/): 16 control bytes, then what the clients send,
one client's bytes after another's with SEP between them (up to 4 clients on the one ring).
See the top of fuzz_conn.c for the control bytes; every seed here is printable text (latin-1
for the tag bytes 0xF0.. and the control byte with bit 7, the smaller slab)."""
import os

DEFAULT = "@" * 16  # recv completions, default limits, peer EOF, sent once, whole pieces, plain steps
H = "Host: a\r\n"
SEP = "~~~~"  # between clients
TAG = "\xf0"  # rewritten to the client's own tag byte: leaks between connections show


def ctrl(c0="@", limits="@@@@", bufs="@", sched="@" * 10):
    s = c0 + limits + bufs + sched
    assert len(s) == 16, s
    return s


SEEDS = {
    "get": (DEFAULT, f"GET / HTTP/1.1\r\n{H}\r\n"),
    "get_split_small": (ctrl(sched="ABCDEFGHIJ"),
                        f"GET /items/42?a=1&q=two HTTP/1.1\r\n{H}X-Echo: v\r\n\r\n"),
    "post_echo": (DEFAULT, f"POST /echo?q=1 HTTP/1.1\r\n{H}Content-Length: 11\r\n\r\nhello world"),
    "head_big": (DEFAULT, f"HEAD /big HTTP/1.1\r\n{H}\r\n"),
    "pipelined_feed": (ctrl("A", sched="PQRSTUVWXY"),
                       f"GET / HTTP/1.1\r\n{H}\r\nPOST /echo HTTP/1.1\r\n{H}Content-Length: 3\r\n\r\n"
                       f"oneGET /stream?abc HTTP/1.1\r\n{H}\r\nGET /big HTTP/1.1\r\n{H}\r\n"),
    "chunked_body": (ctrl(sched="CDEFGHIJKL"),
                     f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                     "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    "expect_continue": (ctrl(sched="@@@@@PPPPP"),
                        f"POST /echo HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 2\r\n\r\nok"),
    "http10_stream": (DEFAULT, "GET /stream?x HTTP/1.0\r\n\r\n"),
    "park_pipelined_small_bufs": (ctrl(bufs="K", sched="`Y`Y`Y`Y`Y"),
                                  f"GET /park HTTP/1.1\r\n{H}\r\n" * 3 + f"GET / HTTP/1.1\r\n{H}\r\n" * 8),
    "park_feed": (ctrl("A", sched="@@@@@`@@@@"),
                  f"POST /park HTTP/1.1\r\n{H}Content-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\n{H}\r\n"),
    "slow_stream": (ctrl(sched="@@@@@`@@@@"),
                    f"GET /slow HTTP/1.1\r\n{H}\r\nGET /stream HTTP/1.1\r\n{H}\r\n"),
    "slow_stream_close": (ctrl(sched="@0@0@`@@@@"), f"GET /slow HTTP/1.1\r\n{H}Connection: close\r\n\r\n"),
    "mw_defer_deny_lie": (ctrl(sched="`@`@`@`@`@"),
                          f"GET / HTTP/1.1\r\n{H}X-Defer: 1\r\n\r\nGET /park HTTP/1.1\r\n{H}X-Defer: 1\r\n\r\n"
                          f"GET / HTTP/1.1\r\n{H}X-Deny: 1\r\n\r\nGET / HTTP/1.1\r\n{H}X-Lie: 1\r\n\r\n"),
    "cl_and_te": (DEFAULT, f"POST /echo HTTP/1.1\r\n{H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    "double_cl": (DEFAULT, f"POST /echo HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    "obs_fold": (DEFAULT, f"GET /echo HTTP/1.1\r\n{H}X-Folded: a\r\n b\r\n\r\n"),
    "bare_cr": (DEFAULT, "GET / HTTP/1.1\rHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\rX: y\r\n\r\n"),
    "huge_header_small_limits": (ctrl("B", limits="!!0#", sched="@@@@@@@@@@"),
                                 f"GET /echo HTTP/1.1\r\n{H}X-Big: " + "v" * 1500 + "\r\n\r\n"),
    "many_headers_small_limits": (ctrl("B", limits="zzz'"),
                                  "GET / HTTP/1.1\r\n" + H + "".join(f"X-{i}: v\r\n" for i in range(12)) + "\r\n"),
    "long_uri_small_limits": (ctrl("B", limits="z%zz"), "GET /files/" + "u" * 300 + " HTTP/1.1\r\nHost: a\r\n\r\n"),
    "body_over_limit": (ctrl("B", limits="zz\"z"), f"POST /echo HTTP/1.1\r\n{H}Content-Length: 200\r\n\r\n" + "b" * 200),
    "nul_bytes": (DEFAULT, f"GET /items/a\x00b HTTP/1.1\r\n{H}X-Echo: a\x00b\r\n\r\nGET / HTTP/1.1\r\nHost: \x00\r\n\r\n"),
    "metrics_items_files": (ctrl("A", sched="ZYXWVUTSRQ"),
                            f"GET /metrics HTTP/1.1\r\n{H}\r\nGET /items/7/tags/t?q=1 HTTP/1.1\r\n{H}\r\n"
                            f"DELETE /files/a/b/c HTTP/1.1\r\n{H}\r\nPOST /items/7 HTTP/1.1\r\n{H}\r\n"
                            f"GET /nc HTTP/1.1\r\n{H}\r\nOPTIONS /nothing HTTP/1.1\r\n{H}\r\n"
                            f"GET /status?503 HTTP/1.1\r\n{H}\r\nGET /items/1?h=Bad{{Name HTTP/1.1\r\n{H}\r\n"),
    "reset_mid_request": (ctrl("D"), f"POST /echo HTTP/1.1\r\n{H}Content-Length: 50\r\n\r\npartial"),
    # 20 answers of 20 KB while every send stalls: past the 256 KiB high-water mark parsing
    # and reading stop, and go on once the sends drain (back-pressure).
    "pipelined_big_stalled_sends": (ctrl(sched="0000000000"), f"GET /big HTTP/1.1\r\n{H}\r\n" * 20),
    "server_closes_while_parked": (ctrl("H"), f"GET /park HTTP/1.1\r\n{H}\r\n"),
    "graceful_stop_draining": (ctrl("\\"), f"GET / HTTP/1.1\r\n{H}\r\nGET /slow HTTP/1.1\r\n{H}\r\n"),
    "short_writes_stalled_sends": (ctrl(sched="\t0\t1\t2\t3\t4"),
                                   f"GET /big HTTP/1.1\r\n{H}\r\nGET /stream?q HTTP/1.1\r\n{H}\r\n"
                                   f"GET /big HTTP/1.1\r\n{H}\r\n"),
    "park_then_flood_x8": (ctrl(bufs="0", sched="@@@@@@@@@`"),
                           f"GET /park HTTP/1.1\r\n{H}\r\n" + f"GET / HTTP/1.1\r\n{H}\r\n" * 100),
    "large_body_streams_x8": (ctrl(bufs="0"), f"POST /echo HTTP/1.1\r\n{H}Content-Length: 50000\r\n\r\n" + "x" * 3000),
    "bad_method": (DEFAULT, "BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n"),
    # ---- several clients at once on the one ring ----
    # Two clients, one piece each in turn: echoes of tagged bodies, pipelined.
    "two_clients_round_robin": (ctrl(sched="ABCDEFGHIJ"),
                                f"POST /echo HTTP/1.1\r\n{H}Content-Length: 8\r\n\r\n{TAG * 8}"
                                f"GET /items/{TAG}?q={TAG} HTTP/1.1\r\n{H}X-Echo: {TAG}\r\n\r\n" + SEP +
                                f"POST /echo?q={TAG} HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\n{TAG * 5}"
                                f"GET /stream?{TAG}{TAG} HTTP/1.1\r\n{H}\r\n"),
    # Four clients on four 64-byte buffers: two park with pipelined input held, two flood;
    # the buffer ring runs dry for all of them (-ENOBUFS, the starved list).
    "four_clients_park_tiny_bufs": (ctrl(bufs="K", sched="`Y`Y`Y`Y`Y"),
                                    f"GET /park HTTP/1.1\r\n{H}\r\n" + f"GET / HTTP/1.1\r\n{H}\r\n" * 4 + SEP +
                                    f"POST /echo HTTP/1.1\r\n{H}Content-Length: 40\r\n\r\n{TAG * 40}" * 3 + SEP +
                                    f"GET /slow HTTP/1.1\r\n{H}\r\n" + f"GET /big HTTP/1.1\r\n{H}\r\n" * 2 + SEP +
                                    f"GET /items/{TAG} HTTP/1.1\r\n{H}\r\n" * 6),
    # Four clients on four 4 KiB buffers, eight times over: two park with more than an input
    # block of pipelined requests behind (held buffers, the spill), two send large bodies;
    # bursts give every client a piece in one iteration, so the shared ring runs dry.
    "four_clients_hold_and_starve": (ctrl(bufs="8", sched="@\xc0@\xc0`\xc0@\xc0@\xc0"),
                                     f"GET /park HTTP/1.1\r\n{H}\r\n" + f"GET / HTTP/1.1\r\n{H}\r\n" * 100 + SEP +
                                     f"POST /park HTTP/1.1\r\n{H}Content-Length: 3\r\n\r\n{TAG * 3}"
                                     + f"GET /items/{TAG} HTTP/1.1\r\n{H}\r\n" * 80 + SEP +
                                     f"POST /echo HTTP/1.1\r\n{H}Content-Length: 3000\r\n\r\n" + TAG * 3000 + SEP +
                                     f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                                     + f"400\r\n{TAG * 1024}\r\n" * 3 + "0\r\n\r\n"),
    # Three clients, two slots: the third is refused until a slot frees (bit 7 of ctrl[0]).
    "slab_full_third_client": (ctrl("\xc0", sched="AAAAAAAAAA"),
                               f"GET / HTTP/1.1\r\n{H}\r\n" + SEP + f"GET /park HTTP/1.1\r\n{H}\r\n"
                               + SEP + f"GET /echo HTTP/1.1\r\n{H}X-{TAG}: {TAG}\r\n\r\n"),
    # Each client to its end in turn, the earlier ones reset or EOF while the next starts.
    "sequential_clients_end_early": (ctrl("d", sched="ab@cd@ef@g"),
                                     f"POST /echo HTTP/1.1\r\n{H}Content-Length: 30\r\n\r\n{TAG * 10}" + SEP +
                                     f"GET /slow HTTP/1.1\r\n{H}\r\nGET / HTTP/1.1\r\n{H}\r\n" + SEP +
                                     f"GET /park HTTP/1.1\r\n{H}Connection: close\r\n\r\n"),
    # The schedule picks the client; every send stalls for the one that asks for /big 20
    # times (back-pressure) while the other goes on.
    "big_stalled_beside_small": (ctrl("\x00", sched="0000000A0B"),
                                 f"GET /big HTTP/1.1\r\n{H}\r\n" * 20 + SEP +
                                 f"GET /items/{TAG} HTTP/1.1\r\n{H}\r\n" * 20),
    # Clients in runs of four pieces; the first is closed by a graceful stop mid-request.
    "runs_graceful_stop": (ctrl(",", sched="@@@`@@@@`@"),
                           f"GET /slow HTTP/1.1\r\n{H}\r\n" + SEP + f"GET / HTTP/1.1\r\n{H}\r\n" * 3
                           + SEP + f"POST /park HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\n{TAG}{TAG}"),
    # issue 10's smuggling and RFC 9112 cases (body.c reads chunked framing, parse.c's head_scan)
    "chunk_ext_valued_trailers": (ctrl(sched="BCDEFGHIJK"),
                                  f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                                  '3 ;a=b;c="d;e"\r\nabc\r\n0;z\r\nX-T: v\r\n\r\n'
                                  f"GET / HTTP/1.1\r\n{H}\r\n"),
    "chunk_bare_cr_smuggle": (ctrl(sched="ABABABABAB"),
                              f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                              f"5\rXhello\r\n0\r\n\rXGET /smuggled HTTP/1.1\r\n{H}\r\n"),
    "chunk_data_no_crlf": (DEFAULT, f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                           f"5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\n{H}\r\n"),
    "chunk_size_huge": (ctrl("B", limits="zzzz"), f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                        "ffffffffffffffff\r\n"),
    "obs_fold_framing": (DEFAULT, f"POST /echo HTTP/1.1\r\n{H}Content-Length:\r\n 3\r\n\r\nabc"
                         f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    "te_http10_close_wins": (ctrl("A"), "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
                             "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "bad_hosts": (DEFAULT, "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\nGET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    "half_close_pipelined": (ctrl(sched="@@@@@@@@@@"), f"GET /big HTTP/1.1\r\n{H}\r\nPOST /echo HTTP/1.1\r\n{H}"
                             "Content-Length: 2\r\n\r\nokGET /park HTTP/1.1\r\n" + H + "\r\nPOST /echo HTTP/1.1\r\n"),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)
for name, (c, body) in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write((c + body).encode("latin-1"))
print(f"{len(SEEDS)} seeds in {here}")
