// Package onionproxy is the chive client (cmd/onionproxy) as a library:
// SOCKS5, HTTP CONNECT and DNS front-ends whose every request travels
// through circuits, with the guards, path selection, circuit manager and
// stream isolation behind them (DESIGN.md section 8).
//
// # The promise
//
// Nothing a client asks for is resolved or connected to from this host. The
// only connections the proxy opens are links to its guards (TLS, at IP
// literals from the consensus) and HTTP to the configured authorities (at IP
// literals from the config); dialLiteral is the only dialer and refuses
// names. armon/go-socks5's defaults would leak, so its Resolver is replaced
// by one that resolves nothing (the name goes to the exit unresolved) and its
// Dial by one that opens a stream on a circuit. TestNoLocalLookupsOrDirectDials
// checks the source; TestRealClients runs curl and dig with a
// net.DefaultResolver that fails the test on any lookup.
//
// # Life
//
//	New: check config, bind every listener, open the data directory
//	Run: Bootstrapped 10%: loading cached state   (guards.json, cached consensus)
//	     Bootstrapped 40%: fetching consensus     (only without a valid cached one)
//	     Bootstrapped 80%: building circuits      (the first circuit)
//	     Bootstrapped 100%: done
//	     then: refresh the consensus in the first half of [fresh-until,
//	     valid-until], keep clean circuits ready, until ctx ends
//
// Progress is also the chive_onionproxy_bootstrap_percent gauge and the
// "bootstrap" object of GET /status. A fetch failure is logged with what to
// check (authority addresses, authority keys, the clock) and retried. While
// the proxy holds no usable consensus (none, an expired one, or one that
// lists fewer than three Running relays or no Running exit:
// netdoc.Consensus.Usable) it fetches again after 250ms, each wait half as
// long again as the last (within 20%, at random) up to 30s, and from
// 250ms again after every newer consensus, so that a proxy started with a
// new network, whose authorities publish a usable consensus a second or two
// after an unusable one, picks it up at once. A usable consensus is
// refreshed as above, retries starting at 10s and doubling. A stream that arrives during the first fetch waits for it;
// once that has failed, a stream without a consensus is refused at once
// (SOCKS reply 1, HTTP 502, with the reason in the log), not held.
//
// # Guards and paths
//
// The guard state (guards.json, 0600) is a sample of up to sample_size
// Guard-flagged relays drawn by bandwidth. Confirmed guards (one circuit
// built through them) come first, in confirmation order, then the others in
// sample order; the first `primary` of those listed are the primary guards.
// A circuit uses the first guard, in that order, that is not waiting out a
// failure and for which an exit and a middle fit. A guard whose link cannot
// be opened (or closes during a build) waits retry_initial, doubling per
// further failure up to retry_max; it stays sampled and primary. Guards are
// dropped after `lifetime`, or after remove_unlisted_after missing from the
// consensus. Reachability is not persisted: after a restart every guard is
// tried again.
//
// Paths are guard, middle, exit; exit and middle drawn by consensus
// bandwidth; all distinct, no two in one family (mutual declaration) or,
// with enforce_distinct_subnets, one IPv4 /16; the exit's policy summary
// allows the port (any exit for DNS); every hop serves the delay class
// (class 0 is served by all). A relay whose extend failed is avoided for
// circuits.relay_retry while another choice exists.
//
// # Circuits and isolation
//
// A stream goes on a circuit whose isolation key equals its own: an
// existing one, else a clean one (bound to the key from then on), else one
// being built for it, else a new build (at most build_attempts failures of
// its own). Circuits first used more than max_dirtiness ago, and circuits on
// which a stream timed out (as Tor does), take no new streams and close with
// their last stream. Clean circuits (circuits.preemptive per delay class in
// use) are kept ready so the first request does not wait for a build. A
// stream whose circuit fails before the exit answers, or whose exit does not
// answer within stream_timeout, is retried on another circuit up to
// stream_retries times; chive_onionproxy_stream_retries_total counts them.
//
// The isolation key is (Tor's defaults plus the delay class):
//
//	front-end kind and listener address | client IP | username and password | delay class
//
// so different listeners, client addresses or credentials never share a
// circuit. Keys hold client data and are never logged; /status shows a
// number per key instead. POST /newnym (and SIGHUP in cmd/onionproxy) makes
// every new stream use a new circuit.
//
// # Delay classes
//
// Each listener has a delay_class. A SOCKS username (or HTTP CONNECT
// Basic-auth username) "class=N" or "class=N:anything" asks for class N
// (decimal 0-255, no leading zeros) instead; the whole username and password still isolate. A
// username that starts with "class=" without a number is refused (SOCKS
// reply 2). The class goes to every hop in the ntor-v3 extension
// (circuit.BuildOptions.DelayClass).
//
// # SOCKS5
//
// CONNECT to names, IPv4 and IPv6 literals. Methods: username/password (RFC
// 1929, any values, preferred when offered, since they isolate) or none.
// The greeting is read here, then the library is handed one that offers the
// chosen method only. Reply codes:
//
//	0 succeeded             1 general failure (no consensus, no circuit)
//	2 not allowed (exit policy; no exit for the port or class; bad class prefix)
//	3 network unreachable   4 host unreachable (also: name does not resolve, invalid name, port 0)
//	5 connection refused    6 TTL expired (timed out)
//	7 command not supported (BIND, UDP ASSOCIATE)   8 address type not supported
//
// The library picks codes by matching words in the dial error's text; we
// record the code in the connection wrapper and rewrite the reply byte as it
// is written. The bound address in replies is 0.0.0.0:0.
//
// # HTTP CONNECT
//
// Only CONNECT host:port (405 otherwise, saying so). Proxy-Authorization,
// if sent, isolates (Basic credentials are decoded so that the username can
// carry a class). Failures: 504 on timeout, 502 otherwise, with a one-line
// reason; 400 for a malformed target or header; 431 for oversized headers.
//
// # DNS
//
// dnsproxy.Server on UDP and TCP; its Exchanger sends each query over a
// circuit of the DNS listener's class whose isolation key is dnsproxy's
// ("dns|listener|client IP") plus the class, to any exit.
//
// # Limits
//
// Each SOCKS and HTTP listener holds at most limits.max_connections client
// connections (beyond, closed at once, counted in
// chive_onionproxy_connections_rejected_total{reason="max_connections"});
// a SOCKS handshake and an HTTP request header must complete within
// limits.handshake_timeout; HTTP headers are bounded by max_header_bytes;
// at most circuits.max_circuits circuits are open.
//
// # Control listener
//
// /metrics (Prometheus), GET /status (JSON: bootstrap, consensus, guards,
// circuits, listeners), POST /newnym. Requests carrying an Origin header, or
// a Host that is not an IP literal (DNS rebinding), are refused.
package onionproxy
