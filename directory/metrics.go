package directory

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the authority's Prometheus metrics, namespace
// chive_directory.
type metrics struct {
	descriptorsHeld     prometheus.Gauge
	descriptorUploads   *prometheus.CounterVec // result: accepted, unchanged, refused
	votesReceived       *prometheus.CounterVec // result: accepted, duplicate, refused, fetched
	votesHeld           prometheus.Gauge       // votes held for the period being voted on
	consensusPublished  prometheus.Counter
	consensusFailures   *prometheus.CounterVec // reason: votes, signatures
	consensusSignatures prometheus.Gauge       // valid signatures on the served consensus
	consensusRelays     prometheus.Gauge
	consensusValidAfter prometheus.Gauge
	signaturesReceived  *prometheus.CounterVec // result: accepted, mismatch, refused, early
	reachability        *prometheus.CounterVec // result: reachable, unreachable, wrong_identity
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "chive_directory"
	m := &metrics{
		descriptorsHeld: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "descriptors_held",
			Help: "Relay descriptors this authority holds."}),
		descriptorUploads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "descriptor_uploads_total",
			Help: "Descriptor uploads by result (accepted, unchanged, refused)."}, []string{"result"}),
		votesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "votes_received_total",
			Help: "Other authorities' votes by result (accepted = pushed to us, fetched = pulled by us, duplicate, refused)."}, []string{"result"}),
		votesHeld: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "votes_held",
			Help: "Votes held for the most recent voting round, this authority's own included."}),
		consensusPublished: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "consensus_published_total",
			Help: "Consensuses published with signatures from a majority of the authorities."}),
		consensusFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "consensus_failures_total",
			Help: "Voting rounds that ended without a published consensus, by reason (votes, signatures)."}, []string{"reason"}),
		consensusSignatures: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consensus_signatures",
			Help: "Authority signatures on the consensus being served."}),
		consensusRelays: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consensus_relays",
			Help: "Relays listed in the consensus being served."}),
		consensusValidAfter: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consensus_valid_after_seconds",
			Help: "valid-after of the consensus being served, Unix seconds."}),
		signaturesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "signatures_received_total",
			Help: "Consensus signatures from other authorities by result (accepted, mismatch = over a different body, refused, early = held until our consensus is computed)."}, []string{"result"}),
		reachability: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reachability_tests_total",
			Help: "Relay reachability tests by result (reachable, unreachable, wrong_identity)."}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{
		m.descriptorsHeld, m.descriptorUploads, m.votesReceived, m.votesHeld, m.consensusPublished,
		m.consensusFailures, m.consensusSignatures, m.consensusRelays, m.consensusValidAfter,
		m.signaturesReceived, m.reachability,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Make every labelled series exist from the start.
	for _, r := range []string{"accepted", "unchanged", "refused"} {
		m.descriptorUploads.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "fetched", "duplicate", "refused"} {
		m.votesReceived.WithLabelValues(r)
	}
	for _, r := range []string{"votes", "signatures"} {
		m.consensusFailures.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "mismatch", "refused", "early"} {
		m.signaturesReceived.WithLabelValues(r)
	}
	for _, r := range []string{"reachable", "unreachable", "wrong_identity"} {
		m.reachability.WithLabelValues(r)
	}
	return m, nil
}
