package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// MetricsNamespace prefixes the relay's own and the circuit layer's metrics
// (chive_relay_...); the mixing scheduler's are under chive_mix_.
const MetricsNamespace = "chive_relay"

// relayMetrics are the relay program's own collectors, beside those of the
// circuit layer (circuit.NewMetrics), the mix (mix.NewMetrics) and the Go
// process (obs.NewRegistry).
type relayMetrics struct {
	info          *prometheus.GaugeVec
	linksAccepted *prometheus.CounterVec
	linksInbound  prometheus.Gauge
	rotations     prometheus.Counter
	published     *prometheus.CounterVec
}

func newRelayMetrics(reg prometheus.Registerer) *relayMetrics {
	m := &relayMetrics{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: MetricsNamespace,
			Name: "info", Help: "Always 1; the labels describe the relay."},
			[]string{"version", "nickname", "id", "exit"}),
		linksAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: MetricsNamespace,
			Name: "links_accepted_total", Help: "Inbound links authenticated, by peer kind (relay or anonymous client)."},
			[]string{"peer"}),
		linksInbound: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: MetricsNamespace,
			Name: "inbound_links_open", Help: "Inbound links (from clients and relays) currently open."}),
		rotations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: MetricsNamespace,
			Name: "onion_key_rotations_total", Help: "Onion key changes (new current key or previous key erased)."}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: MetricsNamespace,
			Name: "descriptor_uploads_total", Help: "Descriptor uploads to authorities, by authority and result."},
			[]string{"authority", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.info, m.linksAccepted, m.linksInbound, m.rotations, m.published)
	}
	return m
}
