// Package dnsproxy is chive's DNS: the client's DNS front-end (Server) and the
// exit's resolver side (Resolver). See DESIGN.md sections 8 and 9.
//
// The promise: the client never does a local DNS lookup. The front-end hands
// every query, as a raw DNS message, to an Exchanger (implemented by the
// circuit layer), which carries it to an exit; the exit answers it with
// Resolver.Exchange using its configured upstream resolver. If the network
// fails, the client gets SERVFAIL; there is no fallback of any kind.
//
// # Message flow
//
// A query travels
//
//	stub (dig, libc) --UDP/TCP--> Server --Exchanger (circuit)--> exit: Resolver --UDP, TCP on TC--> upstream
//
// in these steps:
//
//  1. Server receives a query. miekg/dns parses it; the header is checked
//     first (acceptQuery): responses are ignored, opcodes other than QUERY get
//     NOTIMP, QDCOUNT != 1 or any answer/authority records get FORMERR.
//     Queries larger than MaxQuerySize are dropped (UDP) or end the
//     connection (TCP). Then checkQuery: class IN only (else REFUSED), no
//     zone transfers (AXFR/IXFR: REFUSED), no meta types as a question
//     (FORMERR), at most one OPT record, EDNS version 0 (else BADVERS).
//  2. The query is normalised (forwardQuery): ID 0, RD set, the question name
//     lower-cased, CD copied, AD set (we understand it), EDNS0 with UDP
//     size forwardUDPSize and the stub's DO bit, and nothing else: EDNS
//     options the stub sent (client subnet, cookies, padding) never leave
//     the host. These are the bytes the Exchanger carries, at most
//     MaxQuerySize long.
//  3. The answer (at most dns.MaxMsgSize bytes) must be a response to that
//     question (checkAnswer); otherwise it is treated as a network failure.
//  4. The reply to the stub (makeReply) takes the stub's ID and question
//     (case preserved), the answer's rcode and records with TTLs lowered by
//     the time spent in cache, and an OPT record only if the stub sent one.
//     Over UDP it is truncated (dns.Msg.Truncate, TC set) to the stub's
//     advertised size: 512 bytes without EDNS0, else the EDNS0 size capped
//     to maxUDPReplySize; the stub then retries over TCP and gets it whole.
//
// # Isolation and cache
//
// Each query carries a stream-isolation key; queries with different keys
// never share a circuit, and never share a cache. The key is
//
//	"dns|" + listener address + "|" + client IP
//
// for example "dns|127.0.0.1:9053|127.0.0.1" (see IsolationKey). UDP and TCP
// share the listener address, so a stub's TCP retry after truncation uses
// the same key as its UDP query.
//
// Answers are cached per isolation key in a bounded LRU
// (ServerConfig.CacheEntries per key, at most maxCacheKeys keys and
// maxCacheBytes in all). A positive answer is kept for the minimum TTL of its
// records; a negative one (NXDOMAIN, or NOERROR without answers) for
// min(SOA TTL, SOA MINIMUM) as RFC 2308 section 5 says, and not at all
// without a SOA. Nothing is kept longer than maxCacheTTL. SERVFAIL, REFUSED,
// other failures and truncated answers are never cached. Identical queries
// with the same key that arrive while one is on the network share its
// answer.
//
// # Limits
//
// At most ServerConfig.MaxInflight queries wait for the network at once;
// beyond that the stub gets REFUSED, counted as rejected{reason="inflight"}.
// At most ServerConfig.MaxTCPConns TCP connections are open; beyond that new
// connections are closed at once, counted as rejected{reason="tcp_conns"}. A
// TCP connection must deliver each query within ServerConfig.TCPIdleTimeout
// or it is closed, so half-open connections cost a bounded amount of memory
// for a bounded time.
//
// # Privacy
//
// Logs never contain query names, answers or client addresses unless
// ServerConfig.UnsafeLogging is set.
package dnsproxy
