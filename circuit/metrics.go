package circuit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the circuit layer's Prometheus collectors. One value serves a
// relay or a client; the collectors a role does not use stay at zero.
type Metrics struct {
	// Relay side.
	relayCircuits             prometheus.Gauge
	relayCircuitsCreated      prometheus.Counter
	circuitsRefused           *prometheus.CounterVec
	circuitsDestroyed         *prometheus.CounterVec
	handshakeFailures         prometheus.Counter
	extendFailures            *prometheus.CounterVec
	cellsForwarded            *prometheus.CounterVec
	dropCells                 prometheus.Counter
	exitStreams               *prometheus.CounterVec
	circuitsKilledOOM         prometheus.Counter
	circuitsKilledExitBuffers prometheus.Counter

	// Client side.
	clientCircuits prometheus.Gauge
	builds         *prometheus.CounterVec
	buildSeconds   prometheus.Histogram
	cellsOut       prometheus.Counter
	cellsIn        prometheus.Counter
}

// NewMetrics registers the collectors with reg under namespace (e.g.
// "chive_relay").
func NewMetrics(reg prometheus.Registerer, namespace string) *Metrics {
	m := &Metrics{
		relayCircuits: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "circuits_open", Help: "Circuits currently open through this relay."}),
		relayCircuitsCreated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuits_created_total", Help: "Circuits created (CREATE2 answered) at this relay."}),
		circuitsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuits_refused_total", Help: "CREATE2 refused, by reason."}, []string{"reason"}),
		circuitsDestroyed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuits_destroyed_total", Help: "Circuits destroyed, by DESTROY reason."}, []string{"reason"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "handshake_failures_total", Help: "ntor-v3 handshakes that failed at this relay."}),
		extendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "extend_failures_total", Help: "EXTEND2 requests that failed, by reason."}, []string{"reason"}),
		cellsForwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "cells_forwarded_total", Help: "RELAY cells passed on, by direction."}, []string{"direction"}),
		dropCells: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "drop_cells_total", Help: "DROP (long-range padding) cells received for this hop."}),
		exitStreams: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "exit_streams_total", Help: "Exit stream requests, by kind and status."}, []string{"kind", "status"}),
		circuitsKilledOOM: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuits_killed_mix_budget_total", Help: "Circuits destroyed because the relay's mix held more cells than its budget."}),
		circuitsKilledExitBuffers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuits_killed_exit_buffers_total", Help: "Exit circuits destroyed because the exit held more bytes for its destinations than its budget."}),
		clientCircuits: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
			Name: "client_circuits_open", Help: "Client circuits currently built."}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
			Name: "circuit_builds_total", Help: "Client circuit builds, by result."}, []string{"result"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace,
			Name: "circuit_build_seconds", Help: "Time to build a client circuit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		cellsOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "client_cells_sent_total", Help: "RELAY cells a client sent."}),
		cellsIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
			Name: "client_cells_received_total", Help: "RELAY cells a client received."}),
	}
	if reg != nil {
		reg.MustRegister(m.relayCircuits, m.relayCircuitsCreated, m.circuitsRefused, m.circuitsDestroyed,
			m.handshakeFailures, m.extendFailures, m.cellsForwarded, m.dropCells, m.exitStreams, m.circuitsKilledOOM, m.circuitsKilledExitBuffers,
			m.clientCircuits, m.builds, m.buildSeconds, m.cellsOut, m.cellsIn)
	}
	return m
}

func (m *Metrics) observeBuild(err error, d time.Duration) {
	if err != nil {
		m.builds.WithLabelValues("failed").Inc()
		return
	}
	m.builds.WithLabelValues("ok").Inc()
	m.buildSeconds.Observe(d.Seconds())
}
