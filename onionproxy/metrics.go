package onionproxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chive-net/chive/circuit"
	"github.com/chive-net/chive/dnsproxy"
)

// Namespace prefixes the onion proxy's metric names.
const Namespace = "chive_onionproxy"

// metrics are the onion proxy's own Prometheus collectors; circuit builds
// (count by result, build time histogram, cells) come from circuit.Metrics
// and DNS queries by result from dnsproxy.Metrics, registered with the same
// registry.
type metrics struct {
	bootstrap      prometheus.Gauge
	circuitsOpen   prometheus.Gauge
	circuitsClosed *prometheus.CounterVec // by reason
	buildFailures  *prometheus.CounterVec // by blamed position
	streams        *prometheus.CounterVec // by front-end and result
	streamRetries  prometheus.Counter
	bytes          *prometheus.CounterVec // by direction
	rejected       *prometheus.CounterVec // client connections refused, by front-end and reason
	guardsUsable   prometheus.Gauge
	dropCells      prometheus.Counter

	circuit *circuit.Metrics
	dns     *dnsproxy.Metrics
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bootstrap: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "bootstrap_percent", Help: "Bootstrap progress, 0 to 100."}),
		circuitsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "circuits_managed", Help: "Circuits the circuit manager holds (clean, in use or retiring)."}),
		circuitsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "circuits_closed_total", Help: "Circuits closed, by reason: failed (the network destroyed it), dirty, newnym, timeout, idle, shutdown."}, []string{"reason"}),
		buildFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "circuit_build_failures_total", Help: "Failed circuit builds, by the hop blamed: guard, relay (middle or exit), none (timeout or other)."}, []string{"blame"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "streams_total", Help: "Client stream requests, by front-end and result."}, []string{"frontend", "result"}),
		streamRetries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace,
			Name: "stream_retries_total", Help: "Stream attempts retried on another circuit after a circuit failed or timed out."}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "stream_bytes_total", Help: "Stream payload bytes, by direction (sent to the network, received from it)."}, []string{"direction"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace,
			Name: "connections_rejected_total", Help: "Client connections refused or dropped before a stream, by front-end and reason."}, []string{"frontend", "reason"}),
		guardsUsable: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace,
			Name: "guards_sampled", Help: "Entry guards in the sample that the consensus lists."}),
		dropCells: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace,
			Name: "drop_cells_sent_total", Help: "DROP cells (long-range padding) sent on idle circuits."}),
		circuit: circuit.NewMetrics(reg, Namespace),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bootstrap, m.circuitsOpen, m.circuitsClosed, m.buildFailures,
			m.streams, m.streamRetries, m.bytes, m.rejected, m.guardsUsable, m.dropCells} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	dm, err := dnsproxy.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	m.dns = dm
	return m, nil
}
