package dnsproxy

import (
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Query results (the queries metric's label).
const (
	resultNoError  = "noerror"   // the exit answered NOERROR
	resultNXDomain = "nxdomain"  // the exit answered NXDOMAIN
	resultServFail = "servfail"  // the exit answered SERVFAIL
	resultRefused  = "refused"   // refused here (limits, zone transfers, classes) or by the exit
	resultFormErr  = "formerr"   // malformed query, or the exit said FORMERR
	resultOther    = "other"     // any other rcode
	resultError    = "error"     // the network failed; the stub got SERVFAIL
	resultCacheHit = "cache_hit" // answered from the cache
)

// Latency paths (the duration metric's label).
const (
	pathCache   = "cache"
	pathNetwork = "network"
)

// Metrics are the DNS front-end's Prometheus metrics. One Metrics may be
// shared by several Servers.
type Metrics struct {
	// Queries counts answered queries by result: noerror, nxdomain,
	// servfail, refused, formerr, other, error (network failure, SERVFAIL
	// sent), cache_hit.
	Queries *prometheus.CounterVec
	// Rejected counts queries refused or dropped before the network, by
	// reason: malformed, response, oversized, opcode, zone_transfer, class,
	// meta_type, badvers, inflight, tcp_conns.
	Rejected *prometheus.CounterVec
	// Duration is the time from a parsed query to its reply, by path:
	// cache or network.
	Duration *prometheus.HistogramVec
	// Inflight is the number of queries waiting for the network.
	Inflight prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg, unless reg
// is nil.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chive", Subsystem: "dns", Name: "queries_total",
			Help: "DNS queries answered by the front-end, by result.",
		}, []string{"result"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "chive", Subsystem: "dns", Name: "rejected_total",
			Help: "DNS queries rejected or dropped before reaching the network, by reason.",
		}, []string{"reason"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "chive", Subsystem: "dns", Name: "query_duration_seconds",
			Help:    "Time from a DNS query to its reply, by path (cache or network).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14), // 50µs .. ~7.5 s
		}, []string{"path"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "chive", Subsystem: "dns", Name: "inflight_queries",
			Help: "DNS queries waiting for the network.",
		}),
	}
	// Pre-create the label values so that they show as 0 before they occur.
	for _, r := range []string{resultNoError, resultNXDomain, resultServFail, resultRefused,
		resultFormErr, resultOther, resultError, resultCacheHit} {
		m.Queries.WithLabelValues(r)
	}
	for _, r := range []string{reasonMalformed, reasonResponse, reasonOversized, reasonOpcode,
		reasonZoneTransfer, reasonClass, reasonMetaType, reasonBadVersion, reasonInflight, reasonTCPConns} {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Queries, m.Rejected, m.Duration, m.Inflight} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dnsproxy: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// resultOf names the result for an rcode.
func resultOf(rcode int) string {
	switch rcode {
	case dns.RcodeSuccess:
		return resultNoError
	case dns.RcodeNameError:
		return resultNXDomain
	case dns.RcodeServerFailure:
		return resultServFail
	case dns.RcodeRefused:
		return resultRefused
	case dns.RcodeFormatError:
		return resultFormErr
	default:
		return resultOther
	}
}
